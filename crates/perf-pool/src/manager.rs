//! [`PoolManager`]: pools registered by name, reported in one snapshot (a
//! buffer or a request context is taken from the pools it holds).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use perf_core::sync::lock;

use crate::buffer::{BufferPool, PooledBuf};
use crate::object::ObjectPool;
use crate::stats::PoolStats;

type StatsFn = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// A registry of named pools, with a default buffer pool.
///
/// ```
/// use perf_pool::manager::PoolManager;
/// use perf_pool::object::ObjectPool;
///
/// let pools = PoolManager::default();
/// let contexts = ObjectPool::builder(String::new).reset(|s| s.clear()).build().unwrap();
/// pools.register_objects("request_contexts", &contexts);
/// drop(pools.get_buffer(512));
/// let snapshot = pools.snapshot();
/// assert_eq!(snapshot["buffers"].gets, 1);
/// assert!(snapshot.contains_key("request_contexts"));
/// ```
#[derive(Clone)]
pub struct PoolManager {
    buffers: BufferPool,
    pools: Arc<Mutex<BTreeMap<String, StatsFn>>>,
}

impl Default for PoolManager {
    fn default() -> Self {
        PoolManager::new(BufferPool::default())
    }
}

impl PoolManager {
    /// A registry whose buffers come from `buffers` (registered as `buffers`).
    pub fn new(buffers: BufferPool) -> Self {
        let manager = PoolManager {
            buffers: buffers.clone(),
            pools: Arc::default(),
        };
        manager.register("buffers", move || buffers.stats());
        manager
    }

    /// A buffer of at least `capacity` bytes from the default buffer pool; it goes back
    /// when dropped.
    pub fn get_buffer(&self, capacity: usize) -> PooledBuf<'_> {
        self.buffers.get(capacity)
    }

    /// The default buffer pool.
    pub fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Lists `pool` under `name` (replacing any pool of that name).
    pub fn register_objects<T: Send + 'static>(
        &self,
        name: impl Into<String>,
        pool: &ObjectPool<T>,
    ) {
        let pool = pool.clone();
        self.register(name, move || pool.stats());
    }

    /// Lists any pool that can report [`PoolStats`] under `name`.
    pub fn register<F>(&self, name: impl Into<String>, stats: F)
    where
        F: Fn() -> PoolStats + Send + Sync + 'static,
    {
        lock(&self.pools).insert(name.into(), Arc::new(stats));
    }

    /// Every registered pool's stats, by name.
    pub fn snapshot(&self) -> BTreeMap<String, PoolStats> {
        let pools = lock(&self.pools).clone();
        pools
            .into_iter()
            .map(|(name, stats)| (name, stats()))
            .collect()
    }
}

impl fmt::Debug for PoolManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolManager")
            .field("pools", &lock(&self.pools).keys().collect::<Vec<_>>())
            .finish()
    }
}
