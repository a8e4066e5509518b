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
    /// Memory (the guide's `gc`): purge allocator arenas, shrink buffers.
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

    /// `all`, `memory` (or the guide's `gc`), `cache`, `pools` or `db`.
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
    /// How long it took.
    pub took: Duration,
    /// What it did.
    pub outcome: Option<ActionOutcome>,
    /// Why it failed.
    pub error: Option<String>,
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
