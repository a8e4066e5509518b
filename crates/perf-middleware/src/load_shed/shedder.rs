use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::Priority;
use super::adaptive::{AdaptiveConfig, Aimd};
use crate::clock::{Clock, FastClock};
use crate::error::BuildError;

/// The admission state shared by every clone of a load-shedding layer: requests in flight,
/// the limit (fixed, or adapted to observed latency), and the priority thresholds.
///
/// ```
/// use perf_middleware::load_shed::{LoadShedder, Priority};
///
/// let shedder = LoadShedder::fixed(2).high_priority_reserve(1).build().unwrap();
/// let a = shedder.try_acquire(Priority::Normal).unwrap();
/// let b = shedder.try_acquire(Priority::Normal).unwrap();
/// assert!(shedder.try_acquire(Priority::Normal).is_none());
/// let c = shedder.try_acquire(Priority::High).expect("the reserve");
/// assert!(shedder.try_acquire(Priority::Exempt).is_some());
/// drop((a, b, c));
/// assert_eq!(shedder.stats().in_flight, 0);
/// ```
pub struct LoadShedder<C = FastClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    in_flight: AtomicU32,
    limit: AtomicU32,
    low_priority_share: f64,
    high_priority_reserve: u32,
    retry_after: Duration,
    adaptive: Option<Aimd>,
    shed: AtomicU64,
    clock: C,
}

impl<C> Clone for LoadShedder<C> {
    fn clone(&self) -> Self {
        LoadShedder {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// A snapshot of a [`LoadShedder`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadShedStats {
    /// The current limit.
    pub limit: u32,
    /// Counted requests in flight (exempt ones are not counted).
    pub in_flight: u32,
    /// Requests refused since the shedder was built.
    pub shed: u64,
    /// The adaptive limit's no-load latency estimate.
    pub baseline_latency: Option<Duration>,
}

impl LoadShedder {
    /// A builder for a fixed limit of `max_in_flight` requests.
    pub fn fixed(max_in_flight: u32) -> LoadShedderBuilder {
        LoadShedderBuilder::new(max_in_flight, None)
    }

    /// A builder for a limit that adapts to the latency the inner service shows.
    pub fn adaptive(config: AdaptiveConfig) -> LoadShedderBuilder {
        LoadShedderBuilder::new(config.initial_limit, Some(config))
    }
}

impl<C: Clock> LoadShedder<C> {
    /// Admits one request of `priority`, or refuses it (`None`) at once. The permit counts
    /// the request until it drops.
    #[inline]
    pub fn try_acquire(&self, priority: Priority) -> Option<ShedPermit<C>> {
        let inner = &*self.inner;
        if priority == Priority::Exempt {
            return Some(ShedPermit {
                shedder: self.clone(),
                started_ns: None,
            });
        }
        let limit = inner.limit.load(Relaxed);
        let capacity = match priority {
            Priority::Low => ((f64::from(limit) * inner.low_priority_share) as u32).max(1),
            Priority::Normal => limit,
            _ => limit.saturating_add(inner.high_priority_reserve),
        };
        let mut current = inner.in_flight.load(Relaxed);
        loop {
            if current >= capacity {
                inner.shed.fetch_add(1, Relaxed);
                return None;
            }
            match inner
                .in_flight
                .compare_exchange_weak(current, current + 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        Some(ShedPermit {
            shedder: self.clone(),
            started_ns: Some(inner.clock.now_nanos()),
        })
    }

    /// How long a refused client should wait: the `Retry-After` of the 503.
    pub fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }

    /// A snapshot of the state.
    pub fn stats(&self) -> LoadShedStats {
        let inner = &*self.inner;
        LoadShedStats {
            limit: inner.limit.load(Relaxed),
            in_flight: inner.in_flight.load(Relaxed),
            shed: inner.shed.load(Relaxed),
            baseline_latency: inner
                .adaptive
                .as_ref()
                .and_then(Aimd::baseline_ns)
                .map(Duration::from_nanos),
        }
    }
}

impl<C> fmt::Debug for LoadShedder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedder")
            .field("limit", &self.inner.limit.load(Relaxed))
            .field("in_flight", &self.inner.in_flight.load(Relaxed))
            .field("adaptive", &self.inner.adaptive.is_some())
            .finish_non_exhaustive()
    }
}

/// One admitted request; releases its slot (and, with an adaptive limit, reports its
/// latency) when dropped.
#[must_use = "the request counts as in flight until the permit drops"]
pub struct ShedPermit<C: Clock = FastClock> {
    shedder: LoadShedder<C>,
    /// None for exempt requests, which are not counted.
    started_ns: Option<u64>,
}

impl<C: Clock> fmt::Debug for ShedPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShedPermit")
            .field("counted", &self.started_ns.is_some())
            .finish()
    }
}

impl<C: Clock> Drop for ShedPermit<C> {
    fn drop(&mut self) {
        let Some(started) = self.started_ns else {
            return;
        };
        let inner = &*self.shedder.inner;
        inner.in_flight.fetch_sub(1, Relaxed);
        if let Some(aimd) = &inner.adaptive {
            let now = inner.clock.now_nanos();
            aimd.observe(now.saturating_sub(started), now, &inner.limit);
        }
    }
}

/// Builds a [`LoadShedder`].
#[derive(Debug)]
#[must_use = "builder does nothing itself, call build()"]
pub struct LoadShedderBuilder<C = FastClock> {
    limit: u32,
    adaptive: Option<AdaptiveConfig>,
    low_priority_share: f64,
    high_priority_reserve: Option<u32>,
    retry_after: Duration,
    clock: C,
}

impl LoadShedderBuilder {
    fn new(limit: u32, adaptive: Option<AdaptiveConfig>) -> Self {
        LoadShedderBuilder {
            limit,
            adaptive,
            low_priority_share: 0.8,
            high_priority_reserve: None,
            retry_after: Duration::from_secs(1),
            clock: FastClock::new(),
        }
    }
}

impl<C: Clock> LoadShedderBuilder<C> {
    /// Low-priority requests are refused once this share of the limit is in flight
    /// (default 0.8).
    pub fn low_priority_share(mut self, share: f64) -> Self {
        self.low_priority_share = share;
        self
    }

    /// High-priority requests may exceed the limit by this many (default: a tenth of the
    /// limit, at least 1).
    pub fn high_priority_reserve(mut self, reserve: u32) -> Self {
        self.high_priority_reserve = Some(reserve);
        self
    }

    /// The `Retry-After` of a refusal (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Reads time from `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> LoadShedderBuilder<C2> {
        LoadShedderBuilder {
            limit: self.limit,
            adaptive: self.adaptive,
            low_priority_share: self.low_priority_share,
            high_priority_reserve: self.high_priority_reserve,
            retry_after: self.retry_after,
            clock,
        }
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero limit, a share outside `(0, 1]`, or adaptive bounds that
    /// contradict each other.
    pub fn build(self) -> Result<LoadShedder<C>, BuildError> {
        if self.limit == 0 {
            return Err(BuildError::new("max_in_flight", "must be at least 1"));
        }
        if !(self.low_priority_share > 0.0 && self.low_priority_share <= 1.0) {
            return Err(BuildError::new("low_priority_share", "must be in (0, 1]"));
        }
        if let Some(config) = &self.adaptive {
            if config.min_limit == 0 || config.min_limit > config.max_limit {
                return Err(BuildError::new(
                    "adaptive.min_limit",
                    "must be at least 1 and at most max_limit",
                ));
            }
            if !(config.min_limit..=config.max_limit).contains(&config.initial_limit) {
                return Err(BuildError::new(
                    "adaptive.initial_limit",
                    "must be between min_limit and max_limit",
                ));
            }
            if !(config.tolerance.is_finite() && config.tolerance > 1.0) {
                return Err(BuildError::new("adaptive.tolerance", "must be above 1.0"));
            }
            if !(config.backoff > 0.0 && config.backoff < 1.0) {
                return Err(BuildError::new("adaptive.backoff", "must be in (0, 1)"));
            }
        }
        let reserve = self
            .high_priority_reserve
            .unwrap_or_else(|| (self.limit / 10).max(1));
        Ok(LoadShedder {
            inner: Arc::new(Inner {
                in_flight: AtomicU32::new(0),
                limit: AtomicU32::new(self.limit),
                low_priority_share: self.low_priority_share,
                high_priority_reserve: reserve,
                retry_after: self.retry_after,
                adaptive: self.adaptive.map(Aimd::new),
                shed: AtomicU64::new(0),
                clock: self.clock,
            }),
        })
    }
}
