//! The optimizer: actions the application registers by kind (purge allocator arenas, shrink
//! caches, trim idle pool connections, ANALYZE the database), run one kind or all, each
//! reporting what it did with before and after figures.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perf_core::sync::lock;
use serde::Serialize;

/// What an action works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Memory (also named `gc`, as Go servers call it): purge allocator arenas, shrink buffers.
    Memory,
    /// Caches: drop expired entries, shrink capacity.
    Cache,
    /// Pools: trim idle connections and objects.
    Pools,
    /// The database: `ANALYZE`, vacuum.
    Db,
}

/// Which actions to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every registered action, each once.
    All,
    /// The actions of one kind.
    Kind(ActionKind),
}

impl FromStr for Target {
    type Err = UnknownTarget;

    /// `all`, `memory` (or `gc`), `cache`, `pools` or `db`.
    fn from_str(value: &str) -> Result<Self, UnknownTarget> {
        Ok(match value {
            "all" => Target::All,
            "memory" | "gc" => Target::Kind(ActionKind::Memory),
            "cache" => Target::Kind(ActionKind::Cache),
            "pools" => Target::Kind(ActionKind::Pools),
            "db" => Target::Kind(ActionKind::Db),
            _ => return Err(UnknownTarget(value.to_owned())),
        })
    }
}

/// A target name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTarget(pub String);

impl fmt::Display for UnknownTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown optimization type `{}` (expected all, memory, gc, cache, pools or db)",
            self.0
        )
    }
}

impl Error for UnknownTarget {}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionOutcome {
    /// In words.
    pub summary: String,
    /// Figures before.
    pub before: BTreeMap<String, f64>,
    /// Figures after.
    pub after: BTreeMap<String, f64>,
}

/// One action's run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionReport {
    /// Its kind.
    pub kind: ActionKind,
    /// Its name.
    pub name: String,
    /// How long it took (serialized as `took_ms`, milliseconds).
    #[serde(rename = "took_ms", serialize_with = "as_millis")]
    pub took: Duration,
    /// What it did.
    pub outcome: Option<ActionOutcome>,
    /// Why it failed.
    pub error: Option<String>,
}

fn as_millis<S: serde::Serializer>(took: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(took.as_secs_f64() * 1000.0)
}

/// An action's error.
pub type ActionError = Box<dyn Error + Send + Sync>;

type ActionFuture = Pin<Box<dyn Future<Output = Result<ActionOutcome, ActionError>> + Send>>;
type Action = Arc<dyn Fn() -> ActionFuture + Send + Sync>;

/// Registered actions; `Clone` shares them.
#[derive(Clone, Default)]
pub struct Optimizer {
    actions: Arc<Mutex<Vec<(ActionKind, String, Action)>>>,
}

impl Optimizer {
    /// An optimizer with no actions.
    pub fn new() -> Self {
        Optimizer::default()
    }

    /// Adds an action of `kind`.
    pub fn register<F, Fut>(&self, kind: ActionKind, name: impl Into<String>, action: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ActionOutcome, ActionError>> + Send + 'static,
    {
        let action: Action = Arc::new(move || Box::pin(action()));
        lock(&self.actions).push((kind, name.into(), action));
    }

    /// Runs the actions `target` selects, one after another in registration order (they
    /// work on shared resources, so never at once); a failing action does not stop the
    /// others.
    pub async fn run(&self, target: Target) -> Vec<ActionReport> {
        let actions: Vec<_> = lock(&self.actions)
            .iter()
            .filter(|(kind, _, _)| target == Target::All || target == Target::Kind(*kind))
            .cloned()
            .collect();
        let mut reports = Vec::with_capacity(actions.len());
        for (kind, name, action) in actions {
            let started = Instant::now();
            let result = action().await;
            let (outcome, error) = match result {
                Ok(outcome) => (Some(outcome), None),
                Err(error) => (None, Some(error.to_string())),
            };
            reports.push(ActionReport {
                kind,
                name,
                took: started.elapsed(),
                outcome,
                error,
            });
        }
        reports
    }
}

impl fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions = lock(&self.actions);
        f.debug_struct("Optimizer")
            .field(
                "actions",
                &actions
                    .iter()
                    .map(|(kind, name, _)| (kind, name))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;

    /// A real resource an action works on: a cache of byte buffers whose size is measured,
    /// not reported by the action.
    #[derive(Clone, Default)]
    struct Buffers(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Buffers {
        fn filled(count: usize, size: usize) -> Self {
            let buffers = Buffers::default();
            lock(&buffers.0).extend((0..count).map(|_| vec![0; size]));
            buffers
        }

        fn bytes(&self) -> f64 {
            lock(&self.0).iter().map(Vec::len).sum::<usize>() as f64
        }

        /// Drops buffers until at most `keep` remain; reports measured before and after.
        fn action(&self, keep: usize) -> impl Fn() -> ActionFuture + Send + Sync + 'static {
            let buffers = self.clone();
            move || {
                let buffers = buffers.clone();
                Box::pin(async move {
                    let before = buffers.bytes();
                    lock(&buffers.0).truncate(keep);
                    Ok(ActionOutcome {
                        summary: format!("kept {keep} buffers"),
                        before: [("bytes".to_owned(), before)].into(),
                        after: [("bytes".to_owned(), buffers.bytes())].into(),
                    })
                })
            }
        }
    }

    #[tokio::test]
    async fn all_runs_each_action_once_in_order_with_measured_figures() {
        let cache = Buffers::filled(10, 1000);
        let arenas = Buffers::filled(4, 4096);
        let optimizer = Optimizer::new();
        optimizer.register(ActionKind::Cache, "shrink cache", cache.action(2));
        optimizer.register(ActionKind::Memory, "free arenas", arenas.action(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&failures);
        optimizer.register(ActionKind::Pools, "trim pool", move || {
            counted.fetch_add(1, SeqCst);
            async { Err::<ActionOutcome, ActionError>("pool is closed".into()) }
        });

        let reports = optimizer.run(Target::All).await;
        let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["shrink cache", "free arenas", "trim pool"]);
        let cache_outcome = reports[0].outcome.as_ref().unwrap();
        assert_eq!(cache_outcome.before["bytes"], 10_000.0);
        assert_eq!(cache_outcome.after["bytes"], cache.bytes());
        assert_eq!(cache.bytes(), 2_000.0);
        assert_eq!(arenas.bytes(), 0.0);
        assert_eq!(reports[2].error.as_deref(), Some("pool is closed"));
        assert_eq!(
            failures.load(SeqCst),
            1,
            "once, and the failure stops nothing"
        );

        // A second run finds nothing left to free: the figures say so.
        let again = optimizer.run(Target::Kind(ActionKind::Cache)).await;
        assert_eq!(again.len(), 1);
        let outcome = again[0].outcome.as_ref().unwrap();
        assert_eq!(outcome.before["bytes"], outcome.after["bytes"]);
    }

    #[tokio::test]
    async fn a_kind_runs_only_its_actions_and_gc_means_memory() {
        let cache = Buffers::filled(3, 10);
        let memory = Buffers::filled(3, 10);
        let optimizer = Optimizer::new();
        optimizer.register(ActionKind::Cache, "cache", cache.action(0));
        optimizer.register(ActionKind::Memory, "memory", memory.action(0));
        let reports = optimizer.run("gc".parse().unwrap()).await;
        assert_eq!(reports.len(), 1);
        assert_eq!((cache.bytes(), memory.bytes()), (30.0, 0.0));
        assert!(optimizer.run(Target::Kind(ActionKind::Db)).await.is_empty());
        for (name, target) in [
            ("all", Target::All),
            ("memory", Target::Kind(ActionKind::Memory)),
            ("cache", Target::Kind(ActionKind::Cache)),
            ("pools", Target::Kind(ActionKind::Pools)),
            ("db", Target::Kind(ActionKind::Db)),
        ] {
            assert_eq!(name.parse::<Target>().unwrap(), target);
        }
        let unknown = "everything".parse::<Target>().unwrap_err();
        assert!(unknown.to_string().contains("`everything`"));
    }
}
