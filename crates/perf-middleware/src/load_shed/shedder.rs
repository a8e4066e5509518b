use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use metrics::{Counter, Gauge};

use super::adaptive::{AdaptiveConfig, Aimd};
use super::{LoadShedConfig, Priority};
use crate::BuildError;
use crate::clock::{Clock, FastClock};

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
    queue: Option<Queue>,
    shed: AtomicU64,
    telemetry: Telemetry,
    clock: C,
}

/// What a shedder reports through the `metrics` facade: refusals as they happen (a rare
/// path), the gauges whenever [`LoadShedder::stats`] runs, so admissions write no shared
/// metric.
///
/// | metric | kind |
/// |---|---|
/// | `{prefix}_shed_total` | counter: requests refused, queue timeouts included |
/// | `{prefix}_in_flight` | gauge |
/// | `{prefix}_limit` | gauge: the current limit |
/// | `{prefix}_queued` | gauge |
struct Telemetry {
    shed: Counter,
    in_flight: Gauge,
    limit: Gauge,
    queued: Gauge,
}

impl Telemetry {
    fn new(prefix: &str) -> Self {
        metrics::describe_counter!(
            format!("{prefix}_shed_total"),
            "Requests refused by load shedding, queue timeouts included"
        );
        metrics::describe_gauge!(
            format!("{prefix}_in_flight"),
            "Requests counted against the load-shedding limit"
        );
        metrics::describe_gauge!(format!("{prefix}_limit"), "The current load-shedding limit");
        metrics::describe_gauge!(
            format!("{prefix}_queued"),
            "Requests waiting for a load-shedding slot"
        );
        Telemetry {
            shed: metrics::counter!(format!("{prefix}_shed_total")),
            in_flight: metrics::gauge!(format!("{prefix}_in_flight")),
            limit: metrics::gauge!(format!("{prefix}_limit")),
            queued: metrics::gauge!(format!("{prefix}_queued")),
        }
    }

    fn publish(&self, stats: &LoadShedStats) {
        self.in_flight.set(f64::from(stats.in_flight));
        self.limit.set(f64::from(stats.limit));
        self.queued.set(f64::from(stats.queued));
    }
}

/// Requests waiting for a slot, at most `size`, each for at most `timeout`.
struct Queue {
    size: u32,
    timeout: Duration,
    waiting: AtomicU32,
    released: Arc<Notify>,
}

/// What happens to a request: it runs, it waits in the queue, or it is refused.
pub(crate) enum Admission<C: Clock> {
    Admitted(ShedPermit<C>),
    Queued(QueueTicket<C>),
    Shed,
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
    /// Requests waiting in the queue.
    pub queued: u32,
    /// Requests refused since the shedder was built, including queue timeouts.
    pub shed: u64,
    /// The adaptive limit's no-load latency estimate.
    pub baseline_latency: Option<Duration>,
}

impl LoadShedder {
    /// A shedder with `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid setting.
    pub fn new(config: LoadShedConfig) -> Result<Self, BuildError> {
        LoadShedderBuilder::from_config(config).build()
    }

    /// A builder starting from the defaults of [`LoadShedConfig`].
    pub fn builder() -> LoadShedderBuilder {
        LoadShedderBuilder::from_config(LoadShedConfig::default())
    }

    /// A builder for a fixed limit of `max_in_flight` requests.
    pub fn fixed(max_in_flight: u32) -> LoadShedderBuilder {
        LoadShedder::builder().max_in_flight(max_in_flight)
    }

    /// A builder for a limit that adapts to the latency the inner service shows.
    pub fn adaptive(config: AdaptiveConfig) -> LoadShedderBuilder {
        LoadShedder::builder().adaptive(config)
    }
}

impl<C: Clock> LoadShedder<C> {
    /// Admits one request of `priority`, or refuses it (`None`) at once, whether or not a
    /// queue is configured. The permit counts the request until it drops.
    #[inline]
    pub fn try_acquire(&self, priority: Priority) -> Option<ShedPermit<C>> {
        let acquired = self.acquire_now(priority);
        if acquired.is_none() {
            self.count_shed();
        }
        acquired
    }

    /// Admits, queues or refuses one request.
    #[inline]
    pub(crate) fn admit(&self, priority: Priority) -> Admission<C> {
        if let Some(permit) = self.acquire_now(priority) {
            return Admission::Admitted(permit);
        }
        // Low priority is shed rather than queued: it is what the queue makes room for.
        if let Some(queue) = self
            .inner
            .queue
            .as_ref()
            .filter(|_| priority > Priority::Low)
        {
            let mut waiting = queue.waiting.load(Relaxed);
            while waiting < queue.size {
                match queue
                    .waiting
                    .compare_exchange_weak(waiting, waiting + 1, Relaxed, Relaxed)
                {
                    Ok(_) => {
                        return Admission::Queued(QueueTicket {
                            shedder: self.clone(),
                            priority,
                        });
                    }
                    Err(actual) => waiting = actual,
                }
            }
        }
        self.count_shed();
        Admission::Shed
    }

    #[inline]
    fn acquire_now(&self, priority: Priority) -> Option<ShedPermit<C>> {
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

    fn count_shed(&self) {
        self.inner.shed.fetch_add(1, Relaxed);
        self.inner.telemetry.shed.increment(1);
    }

    /// How long a refused client should wait: the `Retry-After` of the 503.
    pub fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }

    /// A snapshot of the state, also published as gauges.
    pub fn stats(&self) -> LoadShedStats {
        let inner = &*self.inner;
        let stats = LoadShedStats {
            limit: inner.limit.load(Relaxed),
            in_flight: inner.in_flight.load(Relaxed),
            queued: inner
                .queue
                .as_ref()
                .map_or(0, |queue| queue.waiting.load(Relaxed)),
            shed: inner.shed.load(Relaxed),
            baseline_latency: inner
                .adaptive
                .as_ref()
                .and_then(Aimd::baseline_ns)
                .map(Duration::from_nanos),
        };
        inner.telemetry.publish(&stats);
        stats
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
        if let Some(queue) = inner.queue.as_ref().filter(|q| q.waiting.load(Relaxed) > 0) {
            queue.released.notify_one();
        }
        if let Some(aimd) = &inner.adaptive {
            let now = inner.clock.now_nanos();
            aimd.observe(now.saturating_sub(started), now, &inner.limit);
        }
    }
}

/// A request's place in the queue; leaving the queue (admitted, timed out or dropped)
/// gives the place back.
pub(crate) struct QueueTicket<C: Clock> {
    shedder: LoadShedder<C>,
    priority: Priority,
}

impl<C: Clock> QueueTicket<C> {
    fn queue(&self) -> &Queue {
        self.shedder
            .inner
            .queue
            .as_ref()
            .expect("a ticket implies a queue")
    }

    /// A future that completes when a slot is released.
    pub(crate) fn released(&self) -> OwnedNotified {
        Arc::clone(&self.queue().released).notified_owned()
    }

    /// How long the request may wait.
    pub(crate) fn timeout(&self) -> Duration {
        self.queue().timeout
    }

    /// A slot, if one is free now.
    pub(crate) fn try_acquire(&self) -> Option<ShedPermit<C>> {
        self.shedder.acquire_now(self.priority)
    }

    /// The wait timed out: the request is shed.
    pub(crate) fn expire(self) -> Duration {
        self.shedder.count_shed();
        self.shedder.retry_after()
    }
}

impl<C: Clock> Drop for QueueTicket<C> {
    fn drop(&mut self) {
        let queue = self.queue();
        queue.waiting.fetch_sub(1, Relaxed);
    }
}

impl<C: Clock> fmt::Debug for QueueTicket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueTicket")
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LoadShedder`].
#[derive(Debug)]
#[must_use = "builder does nothing itself, call build()"]
pub struct LoadShedderBuilder<C = FastClock> {
    config: LoadShedConfig,
    clock: C,
}

impl LoadShedderBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: LoadShedConfig) -> Self {
        LoadShedderBuilder {
            config,
            clock: FastClock::new(),
        }
    }
}

impl<C: Clock> LoadShedderBuilder<C> {
    /// A fixed limit of `max_in_flight` requests (ignored when [`adaptive`](Self::adaptive)
    /// is set: the adaptive limit starts at its `initial_limit`).
    pub fn max_in_flight(mut self, max_in_flight: u32) -> Self {
        self.config.max_in_flight = max_in_flight;
        self
    }

    /// A limit that adapts to the latency the inner service shows, starting at
    /// `config.initial_limit`.
    pub fn adaptive(mut self, config: AdaptiveConfig) -> Self {
        self.config.adaptive = Some(config);
        self
    }

    /// Low-priority requests are refused once this share of the limit is in flight
    /// (default 0.8).
    pub fn low_priority_share(mut self, share: f64) -> Self {
        self.config.low_priority_share = share;
        self
    }

    /// High-priority requests may exceed the limit by this many (default: a tenth of the
    /// limit, at least 1).
    pub fn high_priority_reserve(mut self, reserve: u32) -> Self {
        self.config.high_priority_reserve = Some(reserve);
        self
    }

    /// The `Retry-After` of a refusal (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.config.retry_after = retry_after;
        self
    }

    /// Lets up to `size` requests wait up to `timeout` for a slot instead of being refused
    /// at once (low-priority requests are never queued). A queued request is handed to the
    /// inner service at once and its response future is not polled until a slot frees: with
    /// services that work in their future, as async handlers and clients do, nothing runs
    /// while it waits. Keep the queue small: it exists to absorb a burst, not to hide
    /// overload.
    pub fn queue(mut self, size: u32, timeout: Duration) -> Self {
        self.config.queue = Some(super::QueueConfig { size, timeout });
        self
    }

    /// Prefix of the metrics (default `load_shed`).
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Reads time from `clock` ([`TokioClock`](crate::clock::TokioClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> LoadShedderBuilder<C2> {
        LoadShedderBuilder {
            config: self.config,
            clock,
        }
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero limit, a share outside `(0, 1]`, adaptive bounds that
    /// contradict each other, an empty queue or an invalid metrics prefix.
    pub fn build(self) -> Result<LoadShedder<C>, BuildError> {
        let config = self.config;
        let limit = config
            .adaptive
            .map_or(config.max_in_flight, |adaptive| adaptive.initial_limit);
        if config.max_in_flight == 0 {
            return Err(BuildError::new("max_in_flight", "must be at least 1"));
        }
        if !(config.low_priority_share > 0.0 && config.low_priority_share <= 1.0) {
            return Err(BuildError::new("low_priority_share", "must be in (0, 1]"));
        }
        if let Some(adaptive) = &config.adaptive {
            if adaptive.min_limit == 0 || adaptive.min_limit > adaptive.max_limit {
                return Err(BuildError::new(
                    "adaptive.min_limit",
                    "must be at least 1 and at most max_limit",
                ));
            }
            if !(adaptive.min_limit..=adaptive.max_limit).contains(&limit) {
                return Err(BuildError::new(
                    "adaptive.initial_limit",
                    "must be between min_limit and max_limit",
                ));
            }
            if !(adaptive.tolerance.is_finite() && adaptive.tolerance > 1.0) {
                return Err(BuildError::new("adaptive.tolerance", "must be above 1.0"));
            }
            if !(adaptive.backoff > 0.0 && adaptive.backoff < 1.0) {
                return Err(BuildError::new("adaptive.backoff", "must be in (0, 1)"));
            }
        }
        if let Some(queue) = config.queue
            && (queue.size == 0 || queue.timeout.is_zero())
        {
            return Err(BuildError::new(
                "queue",
                "needs a size of at least 1 and a timeout longer than zero",
            ));
        }
        perf_core::metric_name::validate_prefix("metrics_prefix", &config.metrics_prefix)?;
        let reserve = config
            .high_priority_reserve
            .unwrap_or_else(|| (limit / 10).max(1));
        Ok(LoadShedder {
            inner: Arc::new(Inner {
                in_flight: AtomicU32::new(0),
                limit: AtomicU32::new(limit),
                low_priority_share: config.low_priority_share,
                high_priority_reserve: reserve,
                retry_after: config.retry_after,
                adaptive: config.adaptive.map(Aimd::new),
                queue: config.queue.map(|queue| Queue {
                    size: queue.size,
                    timeout: queue.timeout,
                    waiting: AtomicU32::new(0),
                    released: Arc::new(Notify::new()),
                }),
                shed: AtomicU64::new(0),
                telemetry: Telemetry::new(&config.metrics_prefix),
                clock: self.clock,
            }),
        })
    }
}
