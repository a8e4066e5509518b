//! Figures the application adds to each snapshot: cache hit rate, pool and database
//! figures, breaker state, jobs. The profiler does not depend on the crates that own
//! them; the application implements a probe that reads them.

use crate::snapshot::Snapshot;

/// Adds the application's own figures to a snapshot.
///
/// Implemented for closures `Fn(&mut Snapshot) + Send + Sync`.
pub trait Probe: Send + Sync {
    /// Adds figures to `snapshot`.
    fn collect(&self, snapshot: &mut Snapshot);
}

impl<F> Probe for F
where
    F: Fn(&mut Snapshot) + Send + Sync,
{
    fn collect(&self, snapshot: &mut Snapshot) {
        self(snapshot);
    }
}
