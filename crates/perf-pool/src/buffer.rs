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
//! Each class is striped by thread (as many stripes as cores): a thread takes and returns
//! through its own stripe, so threads do not wait on one another, and a get or a put takes
//! one uncontended lock. A thread whose stripe is empty takes from another's before
//! allocating.
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

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
// parking_lot's lock (object-pool's too), not std's: no poison flag to check on every get
// and put, and the stripe state is valid after every single update anyway.
use parking_lot::Mutex;

use crate::BuildError;
use crate::stats::{PoolStats, PoolTelemetry};

/// Settings of a [`BufferPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
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

struct Inner {
    classes: Box<[Class]>,
    telemetry: PoolTelemetry,
}

/// One size class, striped: each thread takes and returns through its own stripe, so two
/// threads never wait on one lock, and a single thread's get and put each take one
/// uncontended lock, as object-pool's do.
struct Class {
    size: usize,
    stripes: Box<[Stripe]>,
}

/// A share of a class's free buffers, with its counters kept under the lock it takes
/// anyway: counting costs no shared atomic.
#[repr(align(64))]
struct Stripe(Mutex<StripeState>);

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

/// This thread's stripe, handed out round-robin on first use.
#[inline]
fn my_stripe(stripes: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    let mine = MINE.with(|mine| {
        let mut index = mine.get();
        if index == usize::MAX {
            index = NEXT.fetch_add(1, Relaxed);
            mine.set(index);
        }
        index
    });
    mine & (stripes - 1)
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new(BufferPoolConfig::default()).expect("the defaults are valid")
    }
}

impl BufferPool {
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
        let stripes = stripe_count();
        let pool = BufferPool {
            inner: Arc::new(Inner {
                classes: config
                    .classes
                    .iter()
                    .map(|&size| Class {
                        size,
                        stripes: (0..stripes).map(|_| Stripe(Mutex::default())).collect(),
                    })
                    .collect(),
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
        let (buffer, class) = self.take(capacity);
        PooledBuf {
            buffer: Some(buffer),
            class,
            pool: self,
        }
    }

    /// Like [`get`](Self::get), with a guard that owns a handle to the pool, for buffers
    /// that move into spawned tasks.
    pub fn get_owned(&self, capacity: usize) -> OwnedPooledBuf {
        let (buffer, class) = self.take(capacity);
        OwnedPooledBuf {
            buffer: Some(buffer),
            class,
            pool: self.clone(),
        }
    }

    #[inline]
    fn take(&self, capacity: usize) -> (BytesMut, Option<usize>) {
        let classes = &self.inner.classes;
        let Some(index) = classes.iter().position(|class| class.size >= capacity) else {
            // Larger than every class: counted against the last class's stripe.
            let last = &classes[classes.len() - 1];
            last.stripes[my_stripe(last.stripes.len())].0.lock().misses += 1;
            return (BytesMut::with_capacity(capacity), None);
        };
        let class = &classes[index];
        let mine = my_stripe(class.stripes.len());
        {
            let mut stripe = class.stripes[mine].0.lock();
            if let Some(buffer) = stripe.free.pop() {
                stripe.hits += 1;
                return (buffer, Some(index));
            }
        }
        // Our stripe is empty: another thread may have returned what we need to its own.
        for (n, other) in class.stripes.iter().enumerate() {
            if n == mine {
                continue;
            }
            if let Some(mut stripe) = other.0.try_lock()
                && let Some(buffer) = stripe.free.pop()
            {
                stripe.hits += 1;
                return (buffer, Some(index));
            }
        }
        class.stripes[mine].0.lock().misses += 1;
        (BytesMut::with_capacity(class.size), Some(index))
    }

    /// Drops free buffers, largest classes first, until at most `bytes` are kept; returns
    /// the bytes released.
    pub fn shrink_to(&self, bytes: u64) -> u64 {
        let mut kept = self.stats().retained_bytes;
        let mut released = 0;
        for class in self.inner.classes.iter().rev() {
            for stripe in class.stripes.iter() {
                let mut stripe = stripe.0.lock();
                while kept > bytes {
                    let Some(buffer) = stripe.free.pop() else {
                        break;
                    };
                    let size = buffer.capacity() as u64;
                    kept -= size;
                    released += size;
                }
            }
        }
        released
    }

    /// Changes the cap on kept bytes (shared equally by the classes, and within a class by
    /// its stripes), shrinking at once if needed.
    pub fn set_max_retained_bytes(&self, bytes: u64) {
        let classes = &self.inner.classes;
        let share = bytes / classes.len() as u64;
        for class in classes.iter() {
            let buffers = usize::try_from(share / class.size as u64).unwrap_or(usize::MAX);
            let stripes = class.stripes.len();
            for (n, stripe) in class.stripes.iter().enumerate() {
                let mut stripe = stripe.0.lock();
                stripe.max_free = buffers / stripes + usize::from(n < buffers % stripes);
                let max = stripe.max_free;
                stripe.free.truncate(max);
            }
        }
    }

    /// A snapshot of the counters, also published through the `metrics` facade.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        for class in self.inner.classes.iter() {
            for stripe in class.stripes.iter() {
                let stripe = stripe.0.lock();
                stats.hits += stripe.hits;
                stats.misses += stripe.misses;
                stats.returns += stripe.returns;
                stats.dropped += stripe.dropped;
                stats.retained += stripe.free.len() as u64;
                stats.retained_bytes +=
                    stripe.free.iter().map(BytesMut::capacity).sum::<usize>() as u64;
            }
        }
        stats.gets = stats.hits + stats.misses;
        self.inner.telemetry.publish(&stats);
        stats
    }

    #[inline]
    fn give_back(&self, mut buffer: BytesMut, class: Option<usize>) {
        let classes = &self.inner.classes;
        let Some(index) = class else {
            // Larger than every class: never kept.
            let last = &classes[classes.len() - 1];
            last.stripes[my_stripe(last.stripes.len())].0.lock().dropped += 1;
            return;
        };
        let class = &classes[index];
        let stripes = &class.stripes;
        let mine = my_stripe(stripes.len());
        // Kept only at its class's size: one that grew far past it would make the class lie
        // about its size, and one whose capacity shrank (after `split`) could not hold what
        // `get` promises.
        let fits = (class.size..=class.size * 2).contains(&buffer.capacity());
        if !fits {
            stripes[mine].0.lock().dropped += 1;
            return;
        }
        // Our stripe first; a full one passes the buffer to a stripe with room, so the class
        // keeps its whole share whichever threads return.
        for n in 0..stripes.len() {
            let mut stripe = stripes[(mine + n) & (stripes.len() - 1)].0.lock();
            if stripe.free.len() < stripe.max_free {
                buffer.clear();
                stripe.free.push(buffer);
                stripe.returns += 1;
                return;
            }
        }
        stripes[mine].0.lock().dropped += 1;
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
    class: Option<usize>,
    pool: &'a BufferPool,
}

/// A buffer from [`BufferPool::get_owned`]; goes back to the pool when dropped.
pub struct OwnedPooledBuf {
    buffer: Option<BytesMut>,
    class: Option<usize>,
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
                if let Some(buffer) = self.buffer.take() {
                    self.pool.give_back(buffer, self.class);
                }
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
