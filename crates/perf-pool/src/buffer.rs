//! [`BufferPool`]: reusable `BytesMut` buffers in size classes.
//!
//! `get(n)` hands out a buffer of the smallest class that holds `n` bytes, from the pool
//! when one is free. The [`PooledBuf`] guard gives it back when dropped, cleared (length 0,
//! capacity kept); [`PooledBuf::freeze`] turns it into `Bytes` instead, for a buffer whose
//! contents leave with a response. The pool keeps at most `max_retained_bytes`, shared
//! equally by the classes: buffers returned beyond a class's share, grown far past their
//! class or shrunk below it, are dropped, and [`BufferPool::shrink_to`] gives memory back
//! on demand (under memory pressure).
//!
//! Each class is striped by thread (as many stripes as cores): a thread takes from its own
//! stripe and the buffer goes back to the stripe it came from, so threads do not wait on one
//! another, and a get or a put takes one uncontended lock. A thread whose stripe is empty
//! takes from another's before allocating.
//!
//! ```
//! use perf_pool::buffer::BufferPool;
//!
//! let pool = BufferPool::default();
//! let mut buffer = pool.get(1000);
//! buffer.extend_from_slice(b"RIFF....WAVEfmt ");
//! assert!(buffer.capacity() >= 4096);
//! drop(buffer);
//! let again = pool.get(2000);
//! assert!(again.is_empty());
//! assert_eq!(pool.stats().hits, 1);
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
// parking_lot's lock (object-pool's too), not std's: no poison flag to check on every get
// and put, and the stripe state is valid after every single update anyway.
use parking_lot::Mutex;
use perf_core::per_thread::thread_number;

use crate::BuildError;
use crate::stats::{PoolStats, PoolTelemetry};

/// Settings of a [`BufferPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BufferPoolConfig {
    /// Buffer sizes handed out, ascending (default 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB).
    pub classes: Vec<usize>,
    /// Bytes of free buffers kept at most (default 64 MiB), shared equally by the classes.
    pub max_retained_bytes: u64,
    /// The `pool` label on the metrics (default `buffers`).
    pub name: String,
    /// Prefix of the metrics (default `pool`).
    pub metrics_prefix: String,
}

impl Default for BufferPoolConfig {
    fn default() -> Self {
        BufferPoolConfig {
            classes: vec![4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20],
            max_retained_bytes: 64 << 20,
            name: "buffers".to_owned(),
            metrics_prefix: "pool".to_owned(),
        }
    }
}

/// Buffers in size classes; `Clone` shares the pool.
#[derive(Clone)]
pub struct BufferPool {
    inner: Arc<Inner>,
}

/// The classes' stripes in one flat array, class after class, so that a get or a put goes
/// from the pool to its stripe in one indexing step.
struct Inner {
    sizes: Box<[usize]>,
    stripes: Box<[Stripe]>,
    /// Stripes per class, a power of two.
    per_class: usize,
    telemetry: PoolTelemetry,
}

/// A share of one class's free buffers. Each thread takes from its own stripe (and a buffer
/// goes back to the stripe it came from), so two threads never wait on one lock, and a get
/// or a put takes one uncontended lock, as object-pool's do. Its counters are kept under
/// that lock: counting costs no shared atomic.
#[repr(align(64))]
struct Stripe {
    /// The class's buffer size.
    size: usize,
    state: Mutex<StripeState>,
}

#[derive(Default)]
struct StripeState {
    free: Vec<BytesMut>,
    /// How many buffers this stripe may keep: its share of the class's cap.
    max_free: usize,
    hits: u64,
    misses: u64,
    returns: u64,
    dropped: u64,
}

/// The stripe count: the machine's parallelism as a power of two, at most 16.
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16)
            .next_power_of_two()
    })
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(BufferPoolConfig::default()).expect("the defaults are valid")
    }
}

/// Builds a [`BufferPool`].
#[derive(Debug, Clone)]
#[must_use = "builder does nothing itself, call build()"]
pub struct BufferPoolBuilder {
    config: BufferPoolConfig,
}

impl BufferPoolBuilder {
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: BufferPoolConfig) -> Self {
        BufferPoolBuilder { config }
    }

    /// See [`BufferPoolConfig::classes`].
    pub fn classes(mut self, classes: impl Into<Vec<usize>>) -> Self {
        self.config.classes = classes.into();
        self
    }

    /// See [`BufferPoolConfig::max_retained_bytes`].
    pub fn max_retained_bytes(mut self, bytes: u64) -> Self {
        self.config.max_retained_bytes = bytes;
        self
    }

    /// See [`BufferPoolConfig::name`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// See [`BufferPoolConfig::metrics_prefix`].
    pub fn metrics_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.metrics_prefix = prefix.into();
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// As [`BufferPool::new`].
    pub fn build(self) -> Result<BufferPool, BuildError> {
        BufferPool::new(self.config)
    }
}

impl BufferPool {
    /// A builder starting from the defaults of [`BufferPoolConfig`].
    pub fn builder() -> BufferPoolBuilder {
        BufferPoolBuilder::from_config(BufferPoolConfig::default())
    }

    /// A pool with `config`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for no classes, a zero class, classes out of order, or an invalid
    /// metrics prefix.
    pub fn new(config: BufferPoolConfig) -> Result<Self, BuildError> {
        if config.classes.is_empty() || config.classes.contains(&0) {
            return Err(BuildError::new(
                "classes",
                "needs at least one non-zero size",
            ));
        }
        if !config.classes.windows(2).all(|pair| pair[0] < pair[1]) {
            return Err(BuildError::new("classes", "must be strictly ascending"));
        }
        let telemetry = PoolTelemetry::new(&config.metrics_prefix, &config.name)?;
        let per_class = stripe_count();
        let pool = BufferPool {
            inner: Arc::new(Inner {
                stripes: config
                    .classes
                    .iter()
                    .flat_map(|&size| {
                        (0..per_class).map(move |_| Stripe {
                            size,
                            state: Mutex::default(),
                        })
                    })
                    .collect(),
                sizes: config.classes.into_boxed_slice(),
                per_class,
                telemetry,
            }),
        };
        pool.set_max_retained_bytes(config.max_retained_bytes);
        Ok(pool)
    }

    /// A cleared buffer of at least `capacity` bytes, returned to the pool when the guard
    /// drops. Larger than the largest class, it is allocated and not kept.
    #[inline]
    pub fn get(&self, capacity: usize) -> PooledBuf<'_> {
        let (buffer, home) = self.take(capacity);
        PooledBuf {
            buffer: Some(buffer),
            home,
            pool: self,
        }
    }

    /// Like [`get`](Self::get), with a guard that owns a handle to the pool, for buffers
    /// that move into spawned tasks.
    pub fn get_owned(&self, capacity: usize) -> OwnedPooledBuf {
        let (buffer, home) = self.take(capacity);
        OwnedPooledBuf {
            buffer: Some(buffer),
            home,
            pool: self.clone(),
        }
    }

    /// The stripes of `class`.
    fn class(&self, class: usize) -> &[Stripe] {
        let per_class = self.inner.per_class;
        &self.inner.stripes[class * per_class..(class + 1) * per_class]
    }

    /// A buffer and the stripe it goes back to (`None`: larger than every class).
    #[inline]
    fn take(&self, capacity: usize) -> (BytesMut, Option<usize>) {
        let inner = &*self.inner;
        let Some(class) = inner.sizes.iter().position(|&size| size >= capacity) else {
            // Counted against the largest class, never kept.
            let largest = inner.sizes.len() - 1;
            self.class(largest)[0].state.lock().misses += 1;
            return (BytesMut::with_capacity(capacity), None);
        };
        let mine = thread_number() & (inner.per_class - 1);
        let home = class * inner.per_class + mine;
        let stripe = &inner.stripes[home];
        {
            let mut state = stripe.state.lock();
            if let Some(buffer) = state.free.pop() {
                state.hits += 1;
                return (buffer, Some(home));
            }
        }
        // Our stripe is empty: another thread may have returned what we need to its own.
        for (n, other) in self.class(class).iter().enumerate() {
            if n == mine {
                continue;
            }
            if let Some(mut state) = other.state.try_lock()
                && let Some(buffer) = state.free.pop()
            {
                state.hits += 1;
                return (buffer, Some(home));
            }
        }
        stripe.state.lock().misses += 1;
        (BytesMut::with_capacity(stripe.size), Some(home))
    }

    /// Drops free buffers, largest classes first, until at most `bytes` are kept; returns
    /// the bytes released.
    pub fn shrink_to(&self, bytes: u64) -> u64 {
        let mut kept = self.stats().retained_bytes;
        let mut released = 0;
        for stripe in self.inner.stripes.iter().rev() {
            let mut state = stripe.state.lock();
            while kept > bytes {
                let Some(buffer) = state.free.pop() else {
                    break;
                };
                let size = buffer.capacity() as u64;
                kept -= size;
                released += size;
            }
        }
        released
    }

    /// Changes the cap on kept bytes (shared equally by the classes, and within a class by
    /// its stripes), shrinking at once if needed.
    pub fn set_max_retained_bytes(&self, bytes: u64) {
        let share = bytes / self.inner.sizes.len() as u64;
        for (class, &size) in self.inner.sizes.iter().enumerate() {
            let buffers = usize::try_from(share / size as u64).unwrap_or(usize::MAX);
            let stripes = self.class(class);
            for (n, stripe) in stripes.iter().enumerate() {
                let mut state = stripe.state.lock();
                state.max_free = buffers / stripes.len() + usize::from(n < buffers % stripes.len());
                let max = state.max_free;
                state.free.truncate(max);
            }
        }
    }

    /// A snapshot of the counters, also published through the `metrics` facade.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        for stripe in self.inner.stripes.iter() {
            let state = stripe.state.lock();
            stats.hits += state.hits;
            stats.misses += state.misses;
            stats.returns += state.returns;
            stats.dropped += state.dropped;
            stats.retained += state.free.len() as u64;
            stats.retained_bytes += state.free.iter().map(BytesMut::capacity).sum::<usize>() as u64;
        }
        stats.gets = stats.hits + stats.misses;
        self.inner.telemetry.publish(&stats);
        stats
    }

    /// Returns the buffer in `slot` to its stripe, or drops it. It is cleared and moved
    /// where it lands, straight from the guard: each move of a `BytesMut` through the stack
    /// on this path showed up in the bench as a store-forwarding stall.
    #[inline]
    fn give_back(&self, slot: &mut Option<BytesMut>, home: Option<usize>) {
        let inner = &*self.inner;
        let Some(capacity) = slot.as_ref().map(BytesMut::capacity) else {
            return;
        };
        let Some(home) = home else {
            self.class(inner.sizes.len() - 1)[0].state.lock().dropped += 1;
            return;
        };
        let stripe = &inner.stripes[home];
        // Kept only at its class's size: one that grew far past it would make the class lie
        // about its size, and one whose capacity shrank (after `split`) could not hold what
        // `get` promises.
        if (stripe.size..=stripe.size * 2).contains(&capacity) {
            if let Some(buffer) = slot.as_mut() {
                buffer.clear();
            }
            let mut state = stripe.state.lock();
            if state.free.len() < state.max_free {
                state.free.extend(slot.take());
                state.returns += 1;
                return;
            }
            drop(state);
            // A full stripe passes the buffer to one of its class with room, so the class
            // keeps its whole share whichever threads return.
            let class = home / inner.per_class;
            for other in self.class(class) {
                let mut state = other.state.lock();
                if state.free.len() < state.max_free {
                    state.free.extend(slot.take());
                    state.returns += 1;
                    return;
                }
            }
        }
        stripe.state.lock().dropped += 1;
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A buffer borrowed from a [`BufferPool`]; goes back to it when dropped.
pub struct PooledBuf<'a> {
    buffer: Option<BytesMut>,
    /// The stripe it goes back to.
    home: Option<usize>,
    pool: &'a BufferPool,
}

/// A buffer from [`BufferPool::get_owned`]; goes back to the pool when dropped.
pub struct OwnedPooledBuf {
    buffer: Option<BytesMut>,
    /// The stripe it goes back to.
    home: Option<usize>,
    pool: BufferPool,
}

/// Access, `freeze` and return-on-drop, the same for both guards.
macro_rules! pooled_buffer {
    ($guard:ty) => {
        impl $guard {
            /// The contents as `Bytes`; the buffer leaves the pool with them.
            pub fn freeze(mut self) -> Bytes {
                self.buffer.take().map(BytesMut::freeze).unwrap_or_default()
            }
        }

        impl Deref for $guard {
            type Target = BytesMut;

            #[inline]
            fn deref(&self) -> &BytesMut {
                self.buffer.as_ref().expect("present until dropped")
            }
        }

        impl DerefMut for $guard {
            #[inline]
            fn deref_mut(&mut self) -> &mut BytesMut {
                self.buffer.as_mut().expect("present until dropped")
            }
        }

        impl Drop for $guard {
            #[inline]
            fn drop(&mut self) {
                self.pool.give_back(&mut self.buffer, self.home);
            }
        }

        impl fmt::Debug for $guard {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($guard))
                    .field("len", &self.len())
                    .field("capacity", &self.capacity())
                    .finish()
            }
        }
    };
}

pooled_buffer!(PooledBuf<'_>);
pooled_buffer!(OwnedPooledBuf);
