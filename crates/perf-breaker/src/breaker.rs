//! The circuit breaker: admission, outcome recording and the state machine.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{AcqRel, Acquire, Relaxed},
};
use std::time::Duration;

use perf_core::clock::{AnyClock, Clock};

use crate::backoff;
use crate::builder::Builder;
use crate::clock;
use crate::config::Config;
use crate::error::{CallError, CircuitOpen};
use crate::permit::{OwnedPermit, Permit, Ticket};
use crate::state::{MAX_DEADLINE_MS, State, Word};
use crate::stats::{Counters, Stats};
use crate::telemetry::Telemetry;
use crate::transition::{Listener, Reason, Transition};
use crate::window::Window;

/// How long a caller rejected by a half-open breaker (all probe slots taken) should wait.
const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A circuit breaker: a cheap handle (`Clone` shares the same state) to read state and
/// stats, force or reset it, and run calls through it.
///
/// Build one with [`CircuitBreaker::builder`] or [`CircuitBreaker::new`]; see the
/// [crate docs](crate) for the state machine.
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    word: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Trips since the circuit last closed; drives the backoff.
    trips: AtomicU32,
    window: Option<Window>,
    counters: Counters,
    transitions: AtomicU64,
    state_since_ms: AtomicU64,
    /// Last use on the breaker clock, kept only for keyed breakers' idle eviction.
    pub(crate) last_used_ms: AtomicU64,
    clock: AnyClock,
    config: Config,
    name: Arc<str>,
    listeners: Box<[Listener]>,
    telemetry: Telemetry,
}

impl CircuitBreaker {
    /// A builder with the defaults of [`Config`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A breaker with this configuration and no listeners.
    ///
    /// # Errors
    ///
    /// A [`BuildError`](crate::BuildError) when a field is invalid.
    pub fn new(config: Config) -> Result<Self, crate::BuildError> {
        Builder::from_config(config).build()
    }

    pub(crate) fn from_parts(
        config: Config,
        listeners: Box<[Listener]>,
        telemetry: Telemetry,
        clock: AnyClock,
    ) -> Self {
        CircuitBreaker {
            inner: Arc::new(Inner {
                word: AtomicU64::new(Word::new(State::Closed, 0, 0).0),
                consecutive_failures: AtomicU32::new(0),
                trips: AtomicU32::new(0),
                window: config
                    .failure_rate
                    .as_ref()
                    .map(|rate| Window::new(rate.window)),
                counters: Counters::new(),
                transitions: AtomicU64::new(0),
                state_since_ms: AtomicU64::new(0),
                last_used_ms: AtomicU64::new(0),
                clock,
                name: config.name.as_str().into(),
                config,
                listeners,
                telemetry,
            }),
        }
    }

    /// Asks to make one call. The returned permit records the call's outcome; dropping it
    /// without recording counts the call as cancelled and gives a half-open probe slot back.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        self.inner
            .admit()
            .map(|ticket| Permit::new(&self.inner, ticket))
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to the
    /// breaker and so can move into a `'static` future.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker rejects the call.
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, CircuitOpen> {
        self.clone().into_owned_permit()
    }

    /// [`try_acquire_owned`](Self::try_acquire_owned) for a handle the caller no longer
    /// needs, saving a reference-count round trip.
    #[inline]
    pub(crate) fn into_owned_permit(self) -> Result<OwnedPermit, CircuitOpen> {
        let ticket = self.inner.admit()?;
        Ok(OwnedPermit::new(self, ticket))
    }

    /// Runs `operation` through the breaker; an `Err` counts as a failure.
    ///
    /// If the returned future is dropped before `operation` finishes, the call counts as
    /// cancelled, neither success nor failure.
    ///
    /// # Errors
    ///
    /// [`CallError::Rejected`] without running `operation` when the breaker rejects the call,
    /// [`CallError::Inner`] with the operation's error otherwise.
    ///
    /// ```
    /// # async fn demo() {
    /// use perf_breaker::{CallError, CircuitBreaker};
    ///
    /// let breaker = CircuitBreaker::builder().failure_threshold(1).build().unwrap();
    /// let failed = breaker.call(|| async { Err::<(), _>("boom") }).await;
    /// assert_eq!(failed, Err(CallError::Inner("boom")));
    /// let rejected = breaker.call(|| async { Ok::<_, &str>(()) }).await;
    /// assert!(matches!(rejected, Err(CallError::Rejected(_))));
    /// # }
    /// ```
    pub async fn call<F, Fut, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(Result::is_err, operation).await
    }

    /// Runs `operation` through the breaker, with `is_failure` deciding which results count
    /// as failures (for example: a "not found" error is an answer, not a fault).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_with<C, F, Fut, T, E>(
        &self,
        is_failure: C,
        operation: F,
    ) -> Result<T, CallError<E>>
    where
        C: FnOnce(&Result<T, E>) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = operation().await;
        permit.record(is_failure(&result));
        result.map_err(CallError::Inner)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.load().state()
    }

    /// The configured name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The configuration the breaker was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let inner = &*self.inner;
        let totals = inner.counters.totals();
        Stats {
            state: self.state(),
            calls: totals.successes + totals.failures + totals.cancelled,
            successes: totals.successes,
            failures: totals.failures,
            slow_calls: totals.slow_calls,
            cancelled: totals.cancelled,
            rejections: totals.rejections,
            transitions: inner.transitions.load(Relaxed),
            time_in_state: Duration::from_millis(
                inner
                    .now_ms()
                    .saturating_sub(inner.state_since_ms.load(Relaxed)),
            ),
            consecutive_failures: inner.consecutive_failures.load(Relaxed),
            consecutive_trips: inner.trips.load(Relaxed),
        }
    }

    /// Opens the circuit until [`reset`](Self::reset) or [`force_closed`](Self::force_closed),
    /// whatever the outcomes (maintenance, a dependency known to be down).
    pub fn force_open(&self) {
        self.inner.force(State::ForcedOpen, Reason::Forced);
    }

    /// Closes the circuit until [`reset`](Self::reset) or [`force_open`](Self::force_open);
    /// outcomes are still counted but never trip it.
    pub fn force_closed(&self) {
        self.inner.force(State::ForcedClosed, Reason::Forced);
    }

    /// Back to closed with every trip condition and the backoff cleared.
    pub fn reset(&self) {
        self.inner.force(State::Closed, Reason::Reset);
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Inner {
    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Acquire))
    }

    /// Milliseconds since the breaker was built.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        clock::millis(&self.clock)
    }

    #[inline]
    fn ticket(&self, word: Word, probe: bool) -> Ticket {
        Ticket {
            generation: word.generation(),
            probe,
            started: self
                .config
                .slow_call_threshold
                .map(|_| self.clock.now_nanos()),
        }
    }

    /// Decides whether one call may run.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, CircuitOpen> {
        let mut word = self.load();
        loop {
            match word.state() {
                State::Closed | State::ForcedClosed => return Ok(self.ticket(word, false)),
                State::Open => {
                    let now = self.now_ms();
                    let deadline = word.deadline_ms();
                    if now < deadline {
                        return Err(self.reject(
                            State::Open,
                            Duration::from_millis(deadline - now),
                            now,
                        ));
                    }
                    // The open period is over: whoever swaps the word takes the first probe.
                    let next = word.next(State::HalfOpen, 0).with_probes(1, 0);
                    match self.swap(word, next) {
                        Ok(()) => {
                            self.transitioned(word, next, Reason::OpenPeriodElapsed);
                            return Ok(self.ticket(next, true));
                        }
                        Err(actual) => word = actual,
                    }
                }
                State::HalfOpen => {
                    let in_flight = word.probes_in_flight();
                    if in_flight >= self.config.half_open_max_probes {
                        return Err(self.reject(
                            State::HalfOpen,
                            HALF_OPEN_RETRY_AFTER,
                            self.now_ms(),
                        ));
                    }
                    let next = word.with_probes(in_flight + 1, word.probe_successes());
                    match self.swap(word, next) {
                        Ok(()) => return Ok(self.ticket(next, true)),
                        Err(actual) => word = actual,
                    }
                }
                State::ForcedOpen => {
                    return Err(self.reject(
                        State::ForcedOpen,
                        self.config.open_duration,
                        self.now_ms(),
                    ));
                }
            }
        }
    }

    #[cold]
    fn reject(&self, state: State, retry_after: Duration, now_ms: u64) -> CircuitOpen {
        self.counters.rejection();
        self.telemetry
            .rejection(now_ms, || self.counters.totals().rejections);
        CircuitOpen::new(state, retry_after)
    }

    /// Records the outcome of a call admitted with `ticket`.
    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, failed: bool) {
        let slow = !failed
            && ticket
                .started
                .zip(self.config.slow_call_threshold)
                .is_some_and(|(started, threshold)| {
                    u128::from(self.clock.now_nanos().saturating_sub(started))
                        >= threshold.as_nanos()
                });
        if failed {
            self.counters.failure();
        } else {
            self.counters.success(slow);
        }
        let failed = failed || slow;

        let word = self.load();
        if word.generation() != ticket.generation {
            // The call began before the last transition; its outcome says nothing about the
            // state the breaker is in now.
            return;
        }
        match word.state() {
            State::Closed if failed => self.closed_failure(word),
            State::Closed => self.closed_success(),
            State::HalfOpen if ticket.probe => self.probe_finished(word, Some(failed)),
            _ => {}
        }
    }

    /// A call admitted with `ticket` was dropped before it finished.
    pub(crate) fn cancel(&self, ticket: Ticket) {
        self.counters.cancelled();
        if ticket.probe {
            let word = self.load();
            if word.generation() == ticket.generation && word.state() == State::HalfOpen {
                self.probe_finished(word, None);
            }
        }
    }

    #[inline]
    fn closed_success(&self) {
        // Load first: in the steady state the counter is already zero and the cache line
        // stays shared between cores instead of bouncing on every call.
        if self.consecutive_failures.load(Relaxed) != 0 {
            self.consecutive_failures.store(0, Relaxed);
        }
        if let Some(window) = &self.window {
            window.record(false, self.now_ms());
        }
    }

    fn closed_failure(&self, word: Word) {
        let in_a_row = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
        let threshold = self.config.failure_threshold;
        if threshold != 0 && in_a_row >= threshold {
            self.trip(word, Reason::ConsecutiveFailures);
            return;
        }
        if let (Some(window), Some(rate)) = (&self.window, &self.config.failure_rate) {
            let now = self.now_ms();
            window.record(true, now);
            if window
                .tally(now)
                .exceeds(rate.threshold, rate.minimum_calls)
            {
                self.trip(word, Reason::FailureRate);
            }
        }
    }

    /// A probe ended: `Some(failed)` with an outcome, `None` when cancelled. Retries on
    /// contention for as long as the word stays in the probe's generation.
    fn probe_finished(&self, mut word: Word, outcome: Option<bool>) {
        loop {
            let in_flight = word.probes_in_flight().saturating_sub(1);
            let successes = word.probe_successes();
            let result = match outcome {
                Some(true) => {
                    if self.trip(word, Reason::ProbeFailed) {
                        return;
                    }
                    Err(self.load())
                }
                Some(false) if successes + 1 >= self.config.half_open_success_threshold => {
                    let next = word.next(State::Closed, 0);
                    self.swap(word, next).map(|()| {
                        self.trips.store(0, Relaxed);
                        self.clear_trip_conditions();
                        self.transitioned(word, next, Reason::ProbesSucceeded);
                    })
                }
                Some(false) => self.swap(word, word.with_probes(in_flight, successes + 1)),
                None => self.swap(word, word.with_probes(in_flight, successes)),
            };
            match result {
                Ok(()) => return,
                Err(actual)
                    if actual.generation() == word.generation()
                        && actual.state() == State::HalfOpen =>
                {
                    word = actual;
                }
                Err(_) => return,
            }
        }
    }

    /// Opens the circuit from `from`; false if another thread changed the word first.
    fn trip(&self, from: Word, reason: Reason) -> bool {
        let trip = if from.state() == State::Closed {
            1
        } else {
            self.trips.load(Relaxed).saturating_add(1)
        };
        let period = backoff::open_period(&self.config, trip);
        let period_ms = u64::try_from(period.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
        let deadline = self.now_ms().saturating_add(period_ms).min(MAX_DEADLINE_MS);
        let to = from.next(State::Open, deadline);
        if self.swap(from, to).is_err() {
            return false;
        }
        self.trips.store(trip, Relaxed);
        self.clear_trip_conditions();
        self.transitioned(from, to, reason);
        true
    }

    fn force(&self, state: State, reason: Reason) {
        let mut word = self.load();
        loop {
            let next = word.next(state, 0);
            match self.swap(word, next) {
                Ok(()) => {
                    if state == State::Closed {
                        self.trips.store(0, Relaxed);
                    }
                    self.clear_trip_conditions();
                    self.transitioned(word, next, reason);
                    return;
                }
                Err(actual) => word = actual,
            }
        }
    }

    fn clear_trip_conditions(&self) {
        self.consecutive_failures.store(0, Relaxed);
        if let Some(window) = &self.window {
            window.reset();
        }
    }

    #[inline]
    fn swap(&self, from: Word, to: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(from.0, to.0, AcqRel, Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    fn transitioned(&self, from: Word, to: Word, reason: Reason) {
        self.transitions.fetch_add(1, Relaxed);
        self.state_since_ms.store(self.now_ms(), Relaxed);
        let transition = Transition {
            name: Arc::clone(&self.name),
            from: from.state(),
            to: to.state(),
            reason,
        };
        self.telemetry
            .publish_rejections(self.counters.totals().rejections);
        self.telemetry.transition(&transition);
        for listener in self.listeners.iter() {
            listener(&transition);
        }
    }
}
