//! [`ObjectPool<T>`]: reusable objects on the `object-pool` crate, with what it lacks: a
//! reset hook run on every return, a cap on kept objects (its own pool grows without
//! bound), and stats.
//!
//! ```
//! use perf_pool::object::ObjectPool;
//!
//! // Request contexts, reused instead of allocated per request.
//! let pool = ObjectPool::builder(|| Vec::<String>::with_capacity(16))
//!     .reset(|scratch| scratch.clear())
//!     .max_idle(64)
//!     .build()
//!     .unwrap();
//! let mut scratch = pool.get();
//! scratch.push("speaker left".to_owned());
//! drop(scratch);
//! assert!(pool.get().is_empty(), "reset on return");
//! assert_eq!(pool.stats().hits, 1);
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use object_pool::{Pool, ReusableOwned};

use crate::BuildError;
use crate::stats::{Counters, PoolStats, PoolTelemetry};

/// Settings of an [`ObjectPool`]; the functions that make and reset objects are given to
/// its builder.
///
/// | field | default |
/// |---|---|
/// | `max_idle` | 1024 idle objects kept; more are dropped on return |
/// | `prefill` | 0 objects made up front |
/// | `name`, `metrics_prefix` | `objects`, `pool`: the `pool` label and prefix of the metrics |
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ObjectPoolConfig {
    /// Idle objects kept at most.
    pub max_idle: usize,
    /// Objects made up front.
    pub prefill: usize,
    /// The `pool` label on the metrics.
    pub name: String,
    /// Prefix of the metrics.
    pub metrics_prefix: String,
}

impl Default for ObjectPoolConfig {
    fn default() -> Self {
        ObjectPoolConfig {
            max_idle: 1024,
            prefill: 0,
            name: "objects".to_owned(),
            metrics_prefix: "pool".to_owned(),
        }
    }
}

type Init<T> = Arc<dyn Fn() -> T + Send + Sync>;
type Reset<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// A pool of `T`; `Clone` shares it.
pub struct ObjectPool<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    pool: Arc<Pool<T>>,
    init: Init<T>,
    reset: Option<Reset<T>>,
    max_idle: usize,
    counters: Counters,
    telemetry: PoolTelemetry,
}

impl<T> Clone for ObjectPool<T> {
    fn clone(&self) -> Self {
        ObjectPool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Send + 'static> ObjectPool<T> {
    /// A builder for a pool whose new objects come from `init`.
    pub fn builder<F>(init: F) -> ObjectPoolBuilder<T>
    where
        F: Fn() -> T + Send + Sync + 'static,
    {
        ObjectPoolBuilder::from_config(init, ObjectPoolConfig::default())
    }

    /// An object, reused if one is idle.
    #[inline]
    pub fn get(&self) -> Pooled<T> {
        let inner = &*self.inner;
        let object = match inner.pool.try_pull_owned() {
            Some(object) => {
                Counters::add(&inner.counters.hits);
                object
            }
            None => {
                Counters::add(&inner.counters.misses);
                ReusableOwned::new(Arc::clone(&inner.pool), (inner.init)())
            }
        };
        Pooled {
            object: Some(object),
            pool: self.clone(),
        }
    }

    /// Drops idle objects until at most `idle` remain; returns how many were dropped.
    pub fn trim_to(&self, idle: usize) -> usize {
        let mut dropped = 0;
        while self.inner.pool.len() > idle {
            match self.inner.pool.try_pull() {
                Some(object) => {
                    drop(object.detach());
                    dropped += 1;
                }
                None => break,
            }
        }
        dropped
    }

    /// A snapshot of the counters, also published through the `metrics` facade.
    pub fn stats(&self) -> PoolStats {
        let stats = self
            .inner
            .counters
            .snapshot(self.inner.pool.len() as u64, 0);
        self.inner.telemetry.publish(&stats);
        stats
    }
}

impl<T> fmt::Debug for ObjectPool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPool")
            .field("idle", &self.inner.pool.len())
            .field("max_idle", &self.inner.max_idle)
            .finish_non_exhaustive()
    }
}

/// An object from an [`ObjectPool`]; reset and returned when dropped.
pub struct Pooled<T> {
    object: Option<ReusableOwned<T>>,
    pool: ObjectPool<T>,
}

impl<T> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.object.as_ref().expect("present until dropped")
    }
}

impl<T> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.object.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        let Some(mut object) = self.object.take() else {
            return;
        };
        let inner = &*self.pool.inner;
        if inner.pool.len() >= inner.max_idle {
            // Full: the object is dropped rather than returned.
            drop(object.detach());
            Counters::add(&inner.counters.dropped);
            return;
        }
        if let Some(reset) = &inner.reset {
            reset(&mut object);
        }
        Counters::add(&inner.counters.returns);
        // Dropping the reusable returns the object to the pool.
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&**self).finish()
    }
}

/// Builds an [`ObjectPool`].
#[must_use = "builder does nothing itself, call build()"]
pub struct ObjectPoolBuilder<T> {
    init: Init<T>,
    reset: Option<Reset<T>>,
    config: ObjectPoolConfig,
}

impl<T: Send + 'static> ObjectPoolBuilder<T> {
    /// A builder for a pool whose new objects come from `init`, starting from `config`.
    pub fn from_config<F>(init: F, config: ObjectPoolConfig) -> Self
    where
        F: Fn() -> T + Send + Sync + 'static,
    {
        ObjectPoolBuilder {
            init: Arc::new(init),
            reset: None,
            config,
        }
    }

    /// See [`ObjectPoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`ObjectPoolConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Runs `reset` on every object given back, before it is reused.
    pub fn reset<F>(mut self, reset: F) -> Self
    where
        F: Fn(&mut T) + Send + Sync + 'static,
    {
        self.reset = Some(Arc::new(reset));
        self
    }

    /// See [`ObjectPoolConfig::max_idle`].
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.config.max_idle = max_idle;
        self
    }

    /// See [`ObjectPoolConfig::prefill`].
    pub fn prefill(mut self, count: usize) -> Self {
        self.config.prefill = count;
        self
    }

    /// Builds the pool.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] when `prefill` exceeds `max_idle`, or for an invalid metrics
    /// prefix.
    pub fn build(self) -> Result<ObjectPool<T>, BuildError> {
        let config = self.config;
        if config.prefill > config.max_idle {
            return Err(BuildError::new("prefill", "must not exceed max_idle"));
        }
        let telemetry = PoolTelemetry::new(&config.metrics_prefix, &config.name)?;
        let init = Arc::clone(&self.init);
        Ok(ObjectPool {
            inner: Arc::new(Inner {
                pool: Arc::new(Pool::new(config.prefill, move || init())),
                init: self.init,
                reset: self.reset,
                max_idle: config.max_idle,
                counters: Counters::default(),
                telemetry,
            }),
        })
    }
}

impl<T> fmt::Debug for ObjectPoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectPoolBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
