//! [`TaskPool`]: a pool of workers for request processing, honouring the priorities work is
//! submitted with.
//!
//! Work is submitted with a kind (`"transcription"`) and a priority. It runs at once if the
//! pool and its kind have room, else waits in a bounded queue: higher priority first, first
//! come first served within a priority, skipping kinds at their own limit. A task that waits
//! longer than `queue_timeout` fails instead of running late; a full queue refuses at once
//! with [`SubmitError::QueueFull`] (a server answers 503). Dropping a [`TaskHandle`]
//! cancels: a queued task is removed, a running async task is aborted at its next await, and
//! blocking work sees its [`CancelToken`] set.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use perf_pool::task::{TaskPool, TaskPoolConfig};
//!
//! let pool = TaskPool::new(TaskPoolConfig::default()).unwrap();
//! let handle = pool.submit("transcription", 5, |_cancel| async { 6 * 7 }).unwrap();
//! assert_eq!(handle.await.unwrap(), 42);
//! assert_eq!(pool.stats().completed, 1);
//! # }
//! ```

use std::cmp::Ordering as Priority;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use perf_core::sync::lock;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};

use crate::BuildError;

/// Settings of a [`TaskPool`]; the defaults are the server's `request_pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TaskPoolConfig {
    /// Tasks running at once, all kinds together (default 1000).
    pub max_concurrent: usize,
    /// Tasks waiting at most (default 5000).
    pub queue_size: usize,
    /// Longest wait in the queue before a task fails (default 30 s).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub queue_timeout: Duration,
    /// Tasks of a kind running at once, for the kinds listed.
    pub kind_limits: HashMap<String, usize>,
    /// The `pool` label on the metrics (default `tasks`).
    pub name: String,
    /// Prefix of the metrics (default `task_pool`).
    pub metrics_prefix: String,
}

impl Default for TaskPoolConfig {
    fn default() -> Self {
        TaskPoolConfig {
            max_concurrent: 1000,
            queue_size: 5000,
            queue_timeout: Duration::from_secs(30),
            kind_limits: HashMap::new(),
            name: "tasks".to_owned(),
            metrics_prefix: "task_pool".to_owned(),
        }
    }
}

/// What a task pool reports through the `metrics` facade, published by every
/// [`TaskPool::stats`] call, each series labelled `pool` = its name.
///
/// | metric | kind |
/// |---|---|
/// | `{prefix}_queued`, `{prefix}_running` | gauges |
/// | `{prefix}_completed_total`, `_failed_total`, `_rejected_total`, `_timed_out_total`, `_cancelled_total` | counters |
/// | `{prefix}_wait_seconds` | histogram: each task's queue wait, recorded when it starts |
struct Telemetry {
    queued: metrics::Gauge,
    running: metrics::Gauge,
    completed: metrics::Counter,
    failed: metrics::Counter,
    rejected: metrics::Counter,
    timed_out: metrics::Counter,
    cancelled: metrics::Counter,
    wait: metrics::Histogram,
}

impl Telemetry {
    fn new(prefix: &str, name: &str) -> Result<Self, BuildError> {
        perf_core::metric_name::validate_prefix("metrics_prefix", prefix)?;
        for (what, help) in [
            ("completed", "Tasks that finished with a value"),
            ("failed", "Tasks that panicked"),
            ("rejected", "Submissions refused because the queue was full"),
            ("timed_out", "Tasks that waited past the queue timeout"),
            ("cancelled", "Tasks cancelled by their handle's owner"),
        ] {
            metrics::describe_counter!(format!("{prefix}_{what}_total"), help);
        }
        metrics::describe_gauge!(format!("{prefix}_queued"), "Tasks waiting");
        metrics::describe_gauge!(format!("{prefix}_running"), "Tasks running");
        metrics::describe_histogram!(
            format!("{prefix}_wait_seconds"),
            metrics::Unit::Seconds,
            "Time tasks waited in the queue before starting"
        );
        let labels = vec![metrics::Label::new("pool", name.to_owned())];
        let counter =
            |what: &str| metrics::counter!(format!("{prefix}_{what}_total"), labels.clone());
        let gauge = |what: &str| metrics::gauge!(format!("{prefix}_{what}"), labels.clone());
        Ok(Telemetry {
            queued: gauge("queued"),
            running: gauge("running"),
            completed: counter("completed"),
            failed: counter("failed"),
            rejected: counter("rejected"),
            timed_out: counter("timed_out"),
            cancelled: counter("cancelled"),
            wait: metrics::histogram!(format!("{prefix}_wait_seconds"), labels.clone()),
        })
    }

    fn publish(&self, stats: &TaskPoolStats) {
        self.queued.set(stats.queued as f64);
        self.running.set(stats.running as f64);
        self.completed.absolute(stats.completed);
        self.failed.absolute(stats.failed);
        self.rejected.absolute(stats.rejected);
        self.timed_out.absolute(stats.timed_out);
        self.cancelled.absolute(stats.cancelled);
    }
}

/// Why a task could not be submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue holds `queue_size` tasks already.
    QueueFull,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task queue is full")
    }
}

impl Error for SubmitError {}

/// Why a submitted task produced no value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// It waited longer than `queue_timeout` and did not run.
    QueueTimeout,
    /// It panicked.
    Panicked,
    /// It was cancelled (its handle's owner gave up, or the runtime shut down).
    Cancelled,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskError::QueueTimeout => "task waited too long in the queue",
            TaskError::Panicked => "task panicked",
            TaskError::Cancelled => "task was cancelled",
        })
    }
}

impl Error for TaskError {}

/// Set when a task's handle is dropped: blocking work checks it to stop early.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Whether the task should stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Acquire)
    }
}

/// A snapshot of a [`TaskPool`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskPoolStats {
    /// Tasks waiting.
    pub queued: usize,
    /// Tasks running.
    pub running: usize,
    /// Tasks that finished with a value.
    pub completed: u64,
    /// Tasks that panicked.
    pub failed: u64,
    /// Submissions refused because the queue was full.
    pub rejected: u64,
    /// Tasks that waited past the queue timeout.
    pub timed_out: u64,
    /// Tasks cancelled by their handle's owner.
    pub cancelled: u64,
    /// Queue wait of recently started tasks: 50th, 95th and 99th percentile.
    pub wait_p50: Duration,
    /// See `wait_p50`.
    pub wait_p95: Duration,
    /// See `wait_p50`.
    pub wait_p99: Duration,
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const GONE: u8 = 2;

/// What a task's handle and the pool share about it.
#[derive(Debug)]
struct Slot {
    state: AtomicU8,
    cancel: CancelToken,
    abort: Mutex<Option<AbortHandle>>,
}

type Launch = Box<dyn FnOnce(TaskPool) -> AbortHandle + Send>;

struct Waiting {
    priority: i32,
    seq: u64,
    enqueued: Instant,
    slot: Arc<Slot>,
    launch: Launch,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Priority::Equal
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Priority> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    /// Higher priority first, then earlier submission first.
    fn cmp(&self, other: &Self) -> Priority {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The tasks of one kind: waiting, in priority order, and running.
#[derive(Default)]
struct KindQueue {
    waiting: BinaryHeap<Waiting>,
    running: usize,
}

#[derive(Default)]
struct State {
    /// Waiting tasks by kind, so that a kind at its limit is passed over without touching
    /// its tasks: dispatch compares the head of each kind with room.
    kinds: HashMap<Arc<str>, KindQueue>,
    /// Entries in the queues, including those whose handle gave up (`dead`).
    queued: usize,
    /// Entries whose handle gave up while they waited; they leave when popped, or all at
    /// once when the queue is full.
    dead: usize,
    running: usize,
    next_seq: u64,
    waits: VecDeque<Duration>,
    completed: u64,
    failed: u64,
    rejected: u64,
    timed_out: u64,
    cancelled: u64,
}

impl State {
    /// Drops the entries whose handle gave up, and the kinds left with nothing.
    fn purge_dead(&mut self) {
        for queue in self.kinds.values_mut() {
            queue
                .waiting
                .retain(|waiting| waiting.slot.state.load(Acquire) == QUEUED);
        }
        self.kinds
            .retain(|_, queue| !queue.waiting.is_empty() || queue.running > 0);
        self.queued = self.kinds.values().map(|queue| queue.waiting.len()).sum();
        self.dead = 0;
    }

    /// The kind whose next task runs next: the best head among kinds below their limit.
    fn next_kind(&self, config: &TaskPoolConfig) -> Option<Arc<str>> {
        self.kinds
            .iter()
            .filter(|(kind, queue)| {
                let limit = config
                    .kind_limits
                    .get(&***kind)
                    .copied()
                    .unwrap_or(usize::MAX);
                queue.running < limit
            })
            .filter_map(|(kind, queue)| queue.waiting.peek().map(|head| (kind, head)))
            .max_by(|(_, a), (_, b)| a.cmp(b))
            .map(|(kind, _)| Arc::clone(kind))
    }
}

/// How a started task ended.
enum Ended {
    Completed,
    Panicked,
    Cancelled,
}

/// Queue waits kept for the percentiles.
const WAIT_SAMPLES: usize = 1024;

/// A bounded priority pool of async and blocking tasks; `Clone` shares it.
#[derive(Clone)]
pub struct TaskPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: TaskPoolConfig,
    state: Mutex<State>,
    telemetry: Telemetry,
}

/// Builds a [`TaskPool`].
#[derive(Debug, Clone)]
#[must_use = "builder does nothing itself, call build()"]
pub struct TaskPoolBuilder {
    config: TaskPoolConfig,
}

impl TaskPoolBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: TaskPoolConfig) -> Self {
        TaskPoolBuilder { config }
    }

    /// See [`TaskPoolConfig::max_concurrent`].
    pub fn max_concurrent(mut self, tasks: usize) -> Self {
        self.config.max_concurrent = tasks;
        self
    }

    /// See [`TaskPoolConfig::queue_size`].
    pub fn queue_size(mut self, tasks: usize) -> Self {
        self.config.queue_size = tasks;
        self
    }

    /// See [`TaskPoolConfig::queue_timeout`].
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.config.queue_timeout = timeout;
        self
    }

    /// Runs at most `limit` tasks of `kind` at once (see [`TaskPoolConfig::kind_limits`]).
    pub fn kind_limit(mut self, kind: impl Into<String>, limit: usize) -> Self {
        self.config.kind_limits.insert(kind.into(), limit);
        self
    }

    /// See [`TaskPoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`TaskPoolConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// As [`TaskPool::new`].
    pub fn build(self) -> Result<TaskPool, BuildError> {
        TaskPool::new(self.config)
    }
}

impl TaskPool {
    /// A builder starting from the defaults of [`TaskPoolConfig`].
    pub fn builder() -> TaskPoolBuilder {
        TaskPoolBuilder::from_config(TaskPoolConfig::default())
    }

    /// A pool with `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for a zero `max_concurrent` or kind limit, or an invalid metrics
    /// prefix.
    pub fn new(config: TaskPoolConfig) -> Result<Self, BuildError> {
        if config.max_concurrent == 0 {
            return Err(BuildError::new("max_concurrent", "must be at least 1"));
        }
        if config.kind_limits.values().any(|&limit| limit == 0) {
            return Err(BuildError::new("kind_limits", "a limit must be at least 1"));
        }
        let telemetry = Telemetry::new(&config.metrics_prefix, &config.name)?;
        Ok(TaskPool {
            inner: Arc::new(Inner {
                config,
                state: Mutex::default(),
                telemetry,
            }),
        })
    }

    /// Runs `task` (an async function of its [`CancelToken`]) when the pool has room.
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] when it would have to wait and the queue is full.
    pub fn submit<F, Fut, T>(
        &self,
        kind: &str,
        priority: i32,
        task: F,
    ) -> Result<TaskHandle<T>, SubmitError>
    where
        F: FnOnce(CancelToken) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(kind, priority, move |cancel, done| {
            tokio::spawn(async move {
                let _ = done.send(task(cancel).await);
            })
            .abort_handle()
        })
    }

    /// Runs CPU-heavy `work` on tokio's blocking threads when the pool has room; it should
    /// check its [`CancelToken`] now and then, since blocking work cannot be aborted.
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] when it would have to wait and the queue is full.
    pub fn submit_blocking<F, T>(
        &self,
        kind: &str,
        priority: i32,
        work: F,
    ) -> Result<TaskHandle<T>, SubmitError>
    where
        F: FnOnce(CancelToken) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.enqueue(kind, priority, move |cancel, done| {
            tokio::task::spawn_blocking(move || {
                let _ = done.send(work(cancel));
            })
            .abort_handle()
        })
    }

    fn enqueue<T, S>(
        &self,
        kind: &str,
        priority: i32,
        spawn: S,
    ) -> Result<TaskHandle<T>, SubmitError>
    where
        S: FnOnce(CancelToken, oneshot::Sender<T>) -> AbortHandle + Send + 'static,
        T: Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let slot = Arc::new(Slot {
            state: AtomicU8::new(QUEUED),
            cancel: CancelToken::default(),
            abort: Mutex::new(None),
        });
        let kind: Arc<str> = Arc::from(kind);
        let launch_slot = Arc::clone(&slot);
        let launch_kind = Arc::clone(&kind);
        let launch: Launch = Box::new(move |pool: TaskPool| {
            let cancel = launch_slot.cancel.clone();
            let (finished, outcome) = oneshot::channel::<T>();
            let task = spawn(cancel, finished);
            // Forward the value and free the slot when the task ends, however it ends.
            let cancel = launch_slot.cancel.clone();
            tokio::spawn(async move {
                let ended = match outcome.await {
                    Ok(value) => {
                        let _ = done.send(value);
                        Ended::Completed
                    }
                    // The handle's drop already counted it.
                    Err(_) if cancel.is_cancelled() => Ended::Cancelled,
                    Err(_) => Ended::Panicked,
                };
                pool.finished(&launch_kind, ended);
            });
            task
        });
        let mut state = self.lock();
        if state.queued >= self.inner.config.queue_size && state.dead > 0 {
            // Entries whose handle gave up (cancelled, timed out) must not hold places a
            // live task could use. Counted, so a queue full of live tasks refuses at once.
            state.purge_dead();
        }
        if state.queued >= self.inner.config.queue_size {
            state.rejected += 1;
            return Err(SubmitError::QueueFull);
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.queued += 1;
        state
            .kinds
            .entry(Arc::clone(&kind))
            .or_default()
            .waiting
            .push(Waiting {
                priority,
                seq,
                enqueued: Instant::now(),
                slot: Arc::clone(&slot),
                launch,
            });
        self.dispatch(state);
        Ok(TaskHandle {
            result,
            slot,
            deadline: Box::pin(tokio::time::sleep(self.inner.config.queue_timeout)),
            pool: self.clone(),
        })
    }

    /// Starts every queued task that has room, highest priority first, passing over kinds
    /// at their limit without touching their tasks.
    fn dispatch(&self, mut state: MutexGuard<'_, State>) {
        let config = &self.inner.config;
        while state.running < config.max_concurrent {
            let Some(kind) = state.next_kind(config) else {
                break;
            };
            let queue = state.kinds.get_mut(&kind).expect("next_kind names a kind");
            let next = queue.waiting.pop().expect("next_kind has a head");
            state.queued -= 1;
            if next
                .slot
                .state
                .compare_exchange(QUEUED, RUNNING, AcqRel, Acquire)
                .is_err()
            {
                // Its handle gave up while it waited.
                state.dead -= 1;
                continue;
            }
            state.kinds.get_mut(&kind).expect("present").running += 1;
            state.running += 1;
            if state.waits.len() == WAIT_SAMPLES {
                state.waits.pop_front();
            }
            let waited = next.enqueued.elapsed();
            state.waits.push_back(waited);
            self.inner.telemetry.wait.record(waited.as_secs_f64());
            // The abort handle is in place before the pool lock is released, and a handle's
            // drop gives up under that lock: it sees either a queued task or a running one it
            // can abort, never one in between.
            let abort = (next.launch)(self.clone());
            *lock(&next.slot.abort) = Some(abort);
        }
    }

    fn finished(&self, kind: &Arc<str>, ended: Ended) {
        let mut state = self.lock();
        state.running -= 1;
        if let Some(queue) = state.kinds.get_mut(kind) {
            queue.running -= 1;
            if queue.running == 0 && queue.waiting.is_empty() {
                state.kinds.remove(kind);
            }
        }
        match ended {
            Ended::Completed => state.completed += 1,
            Ended::Panicked => state.failed += 1,
            Ended::Cancelled => {}
        }
        self.dispatch(state);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// A snapshot of the queue, the running tasks and the outcomes so far, also published
    /// through the `metrics` facade.
    pub fn stats(&self) -> TaskPoolStats {
        let state = self.lock();
        let mut waits: Vec<Duration> = state.waits.iter().copied().collect();
        waits.sort_unstable();
        let percentile = |p: f64| {
            if waits.is_empty() {
                return Duration::ZERO;
            }
            let rank = ((p * waits.len() as f64).ceil() as usize).clamp(1, waits.len());
            waits[rank - 1]
        };
        let stats = TaskPoolStats {
            queued: state.queued - state.dead,
            running: state.running,
            completed: state.completed,
            failed: state.failed,
            rejected: state.rejected,
            timed_out: state.timed_out,
            cancelled: state.cancelled,
            wait_p50: percentile(0.50),
            wait_p95: percentile(0.95),
            wait_p99: percentile(0.99),
        };
        drop(state);
        self.inner.telemetry.publish(&stats);
        stats
    }
}

impl fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPool")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A submitted task's result. Dropping it cancels the task.
#[must_use = "dropping the handle cancels the task"]
pub struct TaskHandle<T> {
    result: oneshot::Receiver<T>,
    slot: Arc<Slot>,
    deadline: Pin<Box<Sleep>>,
    pool: TaskPool,
}

impl<T> TaskHandle<T> {
    /// Whether the task has started.
    pub fn started(&self) -> bool {
        self.slot.state.load(Acquire) != QUEUED
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(result) = Pin::new(&mut self.result).poll(cx) {
            self.slot.state.store(GONE, Relaxed);
            return Poll::Ready(result.map_err(|_| TaskError::Panicked));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let mut state = self.pool.lock();
            if self
                .slot
                .state
                .compare_exchange(QUEUED, GONE, AcqRel, Acquire)
                .is_ok()
            {
                state.timed_out += 1;
                state.dead += 1;
                return Poll::Ready(Err(TaskError::QueueTimeout));
            }
        }
        Poll::Pending
    }
}

impl<T> Drop for TaskHandle<T> {
    fn drop(&mut self) {
        if self.slot.state.load(Acquire) == GONE {
            return;
        }
        // Under the pool lock, which dispatch holds from the switch to RUNNING until the
        // abort handle is stored.
        let mut state = self.pool.lock();
        match self.slot.state.swap(GONE, AcqRel) {
            QUEUED => {
                state.cancelled += 1;
                state.dead += 1;
            }
            RUNNING => {
                self.slot.cancel.0.store(true, Relaxed);
                if let Some(abort) = lock(&self.slot.abort).take() {
                    abort.abort();
                }
                state.cancelled += 1;
            }
            _ => {}
        }
    }
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("started", &self.started())
            .finish_non_exhaustive()
    }
}
