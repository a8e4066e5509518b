use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use perf_core::per_thread::ThreadCounter;
use std::time::Duration;

/// A snapshot of a [`PgPool`](super::PgPool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgPoolStats {
    /// Connections open, idle and in use.
    pub open: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Connections checked out.
    pub in_use: usize,
    /// Callers waiting for a connection now.
    pub waiting: usize,
    /// Connections handed out.
    pub checkouts: u64,
    /// Checkouts that waited (took a millisecond or more: for a connection to be returned,
    /// or opened).
    pub waits: u64,
    /// Time spent in those waits, all together.
    pub wait_time: Duration,
    /// The longest single wait.
    pub max_wait: Duration,
    /// Checkouts that failed on a timeout.
    pub timeouts: u64,
    /// Connections closed for reaching `conn_max_lifetime`.
    pub closed_lifetime: u64,
    /// Connections closed for idling past `conn_max_idle_time`.
    pub closed_idle: u64,
    /// Idle connections closed because more than `max_idle_conns` were idle.
    pub closed_surplus: u64,
    /// Queries run through [`PgConn`](super::PgConn).
    pub queries: u64,
    /// Queries slower than `slow_query_threshold`.
    pub slow_queries: u64,
}

/// A checkout this slow waited.
const WAITED: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
pub(crate) struct PgCounters {
    /// Bumped on every checkout and query, so without a locked instruction.
    checkouts: ThreadCounter,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
    max_wait_nanos: AtomicU64,
    timeouts: AtomicU64,
    closed_lifetime: AtomicU64,
    closed_idle: AtomicU64,
    closed_surplus: AtomicU64,
    queries: ThreadCounter,
    slow_queries: AtomicU64,
}

impl PgCounters {
    /// A checkout that took `took`. One that took a millisecond or more waited for a
    /// connection to be returned (or opened): an idle one is handed out in microseconds.
    pub(crate) fn checkout(&self, took: Duration) {
        self.checkouts.increment();
        if took >= WAITED {
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.waits.fetch_add(1, Relaxed);
            self.wait_nanos.fetch_add(nanos, Relaxed);
            self.max_wait_nanos.fetch_max(nanos, Relaxed);
        }
    }

    pub(crate) fn timeout(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_lifetime(&self) {
        self.closed_lifetime.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_idle(&self) {
        self.closed_idle.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed_surplus(&self, count: u64) {
        self.closed_surplus.fetch_add(count, Relaxed);
    }

    pub(crate) fn query(&self, slow: bool) {
        self.queries.increment();
        if slow {
            self.slow_queries.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, status: deadpool::managed::Status) -> PgPoolStats {
        PgPoolStats {
            open: status.size,
            idle: status.available,
            in_use: status.size - status.available,
            waiting: status.waiting,
            checkouts: self.checkouts.sum(),
            waits: self.waits.load(Relaxed),
            wait_time: Duration::from_nanos(self.wait_nanos.load(Relaxed)),
            max_wait: Duration::from_nanos(self.max_wait_nanos.load(Relaxed)),
            timeouts: self.timeouts.load(Relaxed),
            closed_lifetime: self.closed_lifetime.load(Relaxed),
            closed_idle: self.closed_idle.load(Relaxed),
            closed_surplus: self.closed_surplus.load(Relaxed),
            queries: self.queries.sum(),
            slow_queries: self.slow_queries.load(Relaxed),
        }
    }
}

/// What a [`PgPool`](super::PgPool) reports through the `metrics` facade, published by every
/// `stats()` call, each series labelled `pool` = its name.
///
/// | metric | kind |
/// |---|---|
/// | `{prefix}_connections`, `_idle_connections`, `_in_use_connections`, `_waiting` | gauges |
/// | `{prefix}_checkouts_total`, `_waits_total`, `_timeouts_total`, `_queries_total`, `_slow_queries_total` | counters |
/// | `{prefix}_closed_total` | counter with `reason` = `lifetime`, `idle`, `surplus` |
/// | `{prefix}_wait_time_seconds` | gauge: time spent waiting for a connection so far (a float, which the `metrics` counters cannot hold) |
#[derive(Debug)]
pub(crate) struct PgTelemetry {
    gauges: [metrics::Gauge; 4],
    counters: [metrics::Counter; 5],
    closed: [metrics::Counter; 3],
    wait_seconds: metrics::Gauge,
}

impl PgTelemetry {
    pub(crate) fn new(prefix: &str, name: &str) -> Self {
        for (what, help) in [
            ("connections", "Connections open, idle and in use"),
            ("idle_connections", "Connections idle in the pool"),
            ("in_use_connections", "Connections checked out"),
            ("waiting", "Callers waiting for a connection"),
        ] {
            metrics::describe_gauge!(format!("{prefix}_{what}"), help);
        }
        for (what, help) in [
            ("checkouts", "Connections handed out"),
            ("waits", "Checkouts that waited for a connection"),
            ("timeouts", "Checkouts that failed on a timeout"),
            ("queries", "Queries run"),
            (
                "slow_queries",
                "Queries slower than the slow-query threshold",
            ),
            ("closed", "Connections closed, by reason"),
        ] {
            metrics::describe_counter!(format!("{prefix}_{what}_total"), help);
        }
        metrics::describe_gauge!(
            format!("{prefix}_wait_time_seconds"),
            metrics::Unit::Seconds,
            "Time spent waiting for connections, all together"
        );
        let labels = vec![metrics::Label::new("pool", name.to_owned())];
        let gauge = |what: &str| metrics::gauge!(format!("{prefix}_{what}"), labels.clone());
        let counter =
            |what: &str| metrics::counter!(format!("{prefix}_{what}_total"), labels.clone());
        let closed = |reason: &'static str| {
            let mut labels = labels.clone();
            labels.push(metrics::Label::new("reason", reason));
            metrics::counter!(format!("{prefix}_closed_total"), labels)
        };
        PgTelemetry {
            gauges: [
                gauge("connections"),
                gauge("idle_connections"),
                gauge("in_use_connections"),
                gauge("waiting"),
            ],
            counters: [
                counter("checkouts"),
                counter("waits"),
                counter("timeouts"),
                counter("queries"),
                counter("slow_queries"),
            ],
            closed: [closed("lifetime"), closed("idle"), closed("surplus")],
            // A gauge holding a running total: `metrics` counters are whole numbers.
            wait_seconds: gauge("wait_time_seconds"),
        }
    }

    pub(crate) fn publish(&self, stats: &PgPoolStats) {
        for (gauge, value) in
            self.gauges
                .iter()
                .zip([stats.open, stats.idle, stats.in_use, stats.waiting])
        {
            gauge.set(value as f64);
        }
        for (counter, value) in self.counters.iter().zip([
            stats.checkouts,
            stats.waits,
            stats.timeouts,
            stats.queries,
            stats.slow_queries,
        ]) {
            counter.absolute(value);
        }
        for (counter, value) in self.closed.iter().zip([
            stats.closed_lifetime,
            stats.closed_idle,
            stats.closed_surplus,
        ]) {
            counter.absolute(value);
        }
        self.wait_seconds.set(stats.wait_time.as_secs_f64());
    }
}
