//! tokio runtime figures, from the stable metrics API.

use crate::snapshot::{Snapshot, names};

/// Adds the current runtime's figures to `snapshot`; nothing outside a runtime.
pub fn collect_runtime(snapshot: &mut Snapshot) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let metrics = handle.metrics();
    snapshot.set(names::TOKIO_WORKERS, metrics.num_workers() as f64);
    snapshot.set(names::TOKIO_ALIVE_TASKS, metrics.num_alive_tasks() as f64);
    snapshot.set(
        names::TOKIO_GLOBAL_QUEUE_DEPTH,
        metrics.global_queue_depth() as f64,
    );
}
