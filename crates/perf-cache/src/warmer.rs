//! [`CacheWarmer`]: registered warm-up functions, run on a schedule (default every five
//! minutes by default) and on demand, each run reported: what was warmed, what failed,
//! how long it took.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use perf_cache::warmer::CacheWarmer;
//!
//! let warmer = CacheWarmer::default();
//! warmer.register("recent transcripts", || async {
//!     // Load the latest sessions into the cache; report how many entries were warmed.
//!     Ok(25)
//! });
//! let report = warmer.run().await;
//! assert_eq!((report.warmed, report.failures), (25, 0));
//! # }
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use perf_core::sync::lock;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::BuildError;

/// A warm-up function's error.
pub type WarmupError = Box<dyn Error + Send + Sync>;

type WarmupFuture = Pin<Box<dyn Future<Output = Result<usize, WarmupError>> + Send>>;
type Warmup = Arc<dyn Fn() -> WarmupFuture + Send + Sync>;

/// The outcome of one warm-up function in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskReport {
    /// The name it was registered under.
    pub name: String,
    /// Entries it warmed (0 on failure).
    pub warmed: usize,
    /// Why it failed, if it did (its error, or that it panicked).
    pub error: Option<String>,
    /// How long it ran.
    pub took: Duration,
}

/// The outcome of one run of every warm-up function.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmupReport {
    /// When the run started (wall clock, for display).
    pub started_at: SystemTime,
    /// How long the whole run took; the functions run concurrently.
    pub took: Duration,
    /// Entries warmed by all functions.
    pub warmed: usize,
    /// Functions that failed.
    pub failures: usize,
    /// Each function's outcome, in registration order.
    pub tasks: Vec<TaskReport>,
}

/// Runs registered warm-up functions; `Clone` shares them.
#[derive(Clone)]
pub struct CacheWarmer {
    inner: Arc<Inner>,
}

struct Inner {
    interval: Duration,
    tasks: Mutex<Vec<(String, Warmup)>>,
    last: Mutex<Option<WarmupReport>>,
}

/// Settings of a [`CacheWarmer`].
///
/// | field | default |
/// |---|---|
/// | `interval` | 5 min between scheduled runs, at least 1 s |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct CacheWarmerConfig {
    /// Time between the runs [`CacheWarmer::spawn`] schedules.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub interval: Duration,
}

impl Default for CacheWarmerConfig {
    fn default() -> Self {
        CacheWarmerConfig {
            interval: Duration::from_secs(300),
        }
    }
}

impl Default for CacheWarmer {
    /// Every five minutes: entries cached for 5 to 15 minutes are renewed before they go.
    fn default() -> Self {
        CacheWarmer::new(CacheWarmerConfig::default()).expect("the defaults are valid")
    }
}

impl CacheWarmer {
    /// A warmer with `config` and no functions yet.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an interval under a second.
    pub fn new(config: CacheWarmerConfig) -> Result<Self, BuildError> {
        if config.interval < Duration::from_secs(1) {
            return Err(BuildError::new("interval", "must be at least 1s"));
        }
        Ok(CacheWarmer {
            inner: Arc::new(Inner {
                interval: config.interval,
                tasks: Mutex::new(Vec::new()),
                last: Mutex::new(None),
            }),
        })
    }

    /// Adds a warm-up function; it returns how many entries it warmed.
    pub fn register<F, Fut>(&self, name: impl Into<String>, warm: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, WarmupError>> + Send + 'static,
    {
        let warm: Warmup = Arc::new(move || Box::pin(warm()));
        lock(&self.inner.tasks).push((name.into(), warm));
    }

    /// Runs every function now, concurrently, and reports. A function that fails or panics
    /// is reported; the others are not affected.
    pub async fn run(&self) -> WarmupReport {
        let started_at = SystemTime::now();
        let started = Instant::now();
        let tasks = lock(&self.inner.tasks).clone();
        let mut running = JoinSet::new();
        let mut indices = HashMap::new();
        for (index, (_, warm)) in tasks.iter().enumerate() {
            let future = warm();
            let task = running.spawn(async move {
                let began = Instant::now();
                (future.await, began.elapsed())
            });
            indices.insert(task.id(), index);
        }
        let mut reports: Vec<TaskReport> = tasks
            .iter()
            .map(|(name, _)| TaskReport {
                name: name.clone(),
                warmed: 0,
                error: None,
                took: Duration::ZERO,
            })
            .collect();
        while let Some(joined) = running.join_next_with_id().await {
            match joined {
                Ok((id, (result, took))) => {
                    let report = &mut reports[indices[&id]];
                    report.took = took;
                    match result {
                        Ok(warmed) => {
                            report.warmed = warmed;
                            report.error = None;
                        }
                        Err(error) => report.error = Some(error.to_string()),
                    }
                }
                Err(error) => {
                    let reason = if error.is_panic() {
                        "panicked"
                    } else {
                        "was cancelled"
                    };
                    reports[indices[&error.id()]].error = Some(reason.to_owned());
                }
            }
        }
        let report = WarmupReport {
            started_at,
            took: started.elapsed(),
            warmed: reports.iter().map(|r| r.warmed).sum(),
            failures: reports.iter().filter(|r| r.error.is_some()).count(),
            tasks: reports,
        };
        *lock(&self.inner.last) = Some(report.clone());
        report
    }

    /// The report of the last run, scheduled or on demand.
    pub fn last_report(&self) -> Option<WarmupReport> {
        lock(&self.inner.last).clone()
    }

    /// Runs now and then every interval on the current tokio runtime, until the returned
    /// handle is dropped. A run that overlaps the next tick delays it rather than stacking.
    pub fn spawn(&self) -> WarmerHandle {
        let warmer = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(warmer.inner.interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                warmer.run().await;
            }
        });
        WarmerHandle { task }
    }
}

impl fmt::Debug for CacheWarmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheWarmer")
            .field("interval", &self.inner.interval)
            .field("functions", &lock(&self.inner.tasks).len())
            .finish()
    }
}

/// Stops the schedule of [`CacheWarmer::spawn`] when dropped.
#[derive(Debug)]
#[must_use = "the schedule stops when the handle is dropped"]
pub struct WarmerHandle {
    task: JoinHandle<()>,
}

impl Drop for WarmerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
