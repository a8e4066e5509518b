//! Retries with jittered exponential backoff, for what a breaker guards: a bounded number of
//! tries, only for errors the caller says are worth another try, and never past an open
//! circuit (the breaker's rejection is not retryable unless the caller says so).
//!
//! ```
//! # async fn demo() {
//! use std::time::Duration;
//! use perf_breaker::retry::Retry;
//!
//! // A database's retries: 3 tries, 0.5 s then doubling up to 5 s, ±25 %.
//! let retry = Retry::new(3, Duration::from_millis(500), Duration::from_secs(5));
//! let mut calls = 0;
//! let result: Result<u32, &str> = retry
//!     .run(
//!         |_attempt| {
//!             calls += 1;
//!             let answer = if calls < 2 { Err("connection reset") } else { Ok(42) };
//!             async move { answer }
//!         },
//!         |error| *error == "connection reset",
//!     )
//!     .await;
//! assert_eq!(result, Ok(42));
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

/// A retry policy: `tries` attempts in all, waiting `first` after the first failure, twice
/// as long after each further one up to `max`, each wait spread by ±`jitter` so that
/// clients that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Retry {
    /// Attempts in all, the first included (1: no retry).
    pub tries: u32,
    /// The wait after the first failure.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub first: Duration,
    /// The longest wait.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max: Duration,
    /// The share by which each wait is spread either way (0.25: ±25 %).
    pub jitter: f64,
}

impl Retry {
    /// `tries` attempts with waits from `first` doubling up to `max`, jittered ±25 %.
    pub fn new(tries: u32, first: Duration, max: Duration) -> Self {
        Retry {
            tries: tries.max(1),
            first,
            max: max.max(first),
            jitter: 0.25,
        }
    }

    /// The wait after failed attempt number `attempt` (1 for the first), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait after failed attempt `attempt`, jittered and never above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let spread = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * fastrand::f64() - 1.0);
        self.base_delay(attempt).mul_f64(spread).min(self.max)
    }

    /// Runs `operation` (given the attempt number, from 1) until it succeeds, fails with an
    /// error `retryable` refuses, or has run `tries` times; returns its last result.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut operation: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match operation(attempt).await {
                Err(error) if attempt < self.tries && retryable(&error) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use tokio::time::Instant;

    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_stay_within_the_jitter() {
        let retry = Retry::new(5, Duration::from_secs(1), Duration::from_secs(30));
        let bases: Vec<u64> = (1..=7).map(|n| retry.base_delay(n).as_secs()).collect();
        assert_eq!(bases, [1, 2, 4, 8, 16, 30, 30]);
        for attempt in 1..=7 {
            let base = retry.base_delay(attempt).as_secs_f64();
            for _ in 0..200 {
                let wait = retry.delay(attempt).as_secs_f64();
                assert!(wait >= base * 0.75 - 1e-9 && wait <= (base * 1.25).min(30.0) + 1e-9);
            }
        }
        assert_eq!(Retry::new(0, Duration::ZERO, Duration::ZERO).tries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_what_is_retryable_with_the_waits_between() {
        let retry = Retry {
            jitter: 0.0,
            ..Retry::new(3, Duration::from_millis(500), Duration::from_secs(5))
        };
        let started = Instant::now();
        let attempts = Cell::new(Vec::new());
        let result: Result<(), &str> = retry
            .run(
                |attempt| {
                    let mut seen = attempts.take();
                    seen.push((attempt, started.elapsed().as_millis()));
                    attempts.set(seen);
                    async { Err("unavailable") }
                },
                |_| true,
            )
            .await;
        assert_eq!(result, Err("unavailable"));
        assert_eq!(attempts.take(), [(1, 0), (2, 500), (3, 1500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_an_error_that_is_not_retryable_or_at_success() {
        let retry = Retry::new(5, Duration::from_secs(1), Duration::from_secs(30));
        let calls = Cell::new(0);
        let result: Result<(), &str> = retry
            .run(
                |_| {
                    calls.set(calls.get() + 1);
                    async { Err("bad request") }
                },
                |error| *error != "bad request",
            )
            .await;
        assert_eq!((result, calls.get()), (Err("bad request"), 1));

        let calls = Cell::new(0);
        let result: Result<u32, &str> = retry
            .run(
                |attempt| {
                    calls.set(calls.get() + 1);
                    async move {
                        if attempt == 3 {
                            Ok(attempt)
                        } else {
                            Err("busy")
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!((result, calls.get()), (Ok(3), 3));
    }
}
