//! [`BufferPool`]: reusable `BytesMut` buffers in size classes.
//!
//! `get(n)` hands out a buffer of the smallest class that holds `n` bytes, from the pool
//! when one is free. The [`PooledBuf`] guard gives it back when dropped, cleared (length 0,
//! capacity kept); [`PooledBuf::freeze`] turns it into `Bytes` instead, for a buffer whose
//! contents leave with a response. The pool keeps at most `max_retained_bytes`, shared
//! equally by the classes: buffers returned beyond a class's share, or grown far past their
//! class, are dropped, and
//! [`BufferPool::shrink_to`] gives memory back on demand (under memory pressure).
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
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use perf_core::sync::lock;

use crate::BuildError;
use crate::stats::{Counters, PoolStats};

/// Settings of a [`BufferPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BufferPoolConfig {
    /// Buffer sizes handed out, ascending (default 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB).
    pub classes: Vec<usize>,
    /// Bytes of free buffers kept at most (default 64 MiB), shared equally by the classes.
    pub max_retained_bytes: u64,
}

impl Default for BufferPoolConfig {
    fn default() -> Self {
        BufferPoolConfig {
            classes: vec![4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20],
            max_retained_bytes: 64 << 20,
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
    counters: Counters,
}

/// One size class: its free buffers, and how many it may keep. The cap is checked under the
/// lock a return takes anyway, so enforcing it costs no shared counter.
struct Class {
    size: usize,
    free: Mutex<Vec<BytesMut>>,
    max_free: AtomicUsize,
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
    /// A [`BuildError`] for no classes, a zero class, or classes out of order.
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
        let pool = BufferPool {
            inner: Arc::new(Inner {
                classes: config
                    .classes
                    .iter()
                    .map(|&size| Class {
                        size,
                        free: Mutex::new(Vec::new()),
                        max_free: AtomicUsize::new(0),
                    })
                    .collect(),
                counters: Counters::default(),
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
        let inner = &*self.inner;
        let class = inner
            .classes
            .iter()
            .position(|class| class.size >= capacity);
        let reused = class.and_then(|index| lock(&inner.classes[index].free).pop());
        match reused {
            Some(buffer) => {
                Counters::add(&inner.counters.hits);
                (buffer, class)
            }
            None => {
                Counters::add(&inner.counters.misses);
                let size = class.map_or(capacity, |index| inner.classes[index].size);
                (BytesMut::with_capacity(size), class)
            }
        }
    }

    /// Drops free buffers, largest classes first, until at most `bytes` are kept; returns
    /// the bytes released.
    pub fn shrink_to(&self, bytes: u64) -> u64 {
        let mut kept = self.stats().retained_bytes;
        let mut released = 0;
        for class in self.inner.classes.iter().rev() {
            let mut free = lock(&class.free);
            while kept > bytes {
                let Some(buffer) = free.pop() else { break };
                let size = buffer.capacity() as u64;
                kept -= size;
                released += size;
            }
        }
        released
    }

    /// Changes the cap on kept bytes (shared equally by the classes), shrinking at once if
    /// needed.
    pub fn set_max_retained_bytes(&self, bytes: u64) {
        let classes = &self.inner.classes;
        let share = bytes / classes.len() as u64;
        for class in classes.iter() {
            class
                .max_free
                .store((share / class.size as u64) as usize, Relaxed);
        }
        for class in classes.iter() {
            let mut free = lock(&class.free);
            let max = class.max_free.load(Relaxed);
            if free.len() > max {
                free.truncate(max);
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        let (retained, bytes) = self
            .inner
            .classes
            .iter()
            .fold((0, 0), |(count, bytes), class| {
                let free = lock(&class.free);
                let held: usize = free.iter().map(BytesMut::capacity).sum();
                (count + free.len() as u64, bytes + held as u64)
            });
        self.inner.counters.snapshot(retained, bytes)
    }

    #[inline]
    fn give_back(&self, mut buffer: BytesMut, class: Option<usize>) {
        let inner = &*self.inner;
        // A buffer that grew far past its class would make the class lie about its size.
        if let Some(class) = class
            .map(|index| &inner.classes[index])
            .filter(|class| buffer.capacity() <= class.size * 2)
        {
            let mut free = lock(&class.free);
            if free.len() < class.max_free.load(Relaxed) {
                buffer.clear();
                free.push(buffer);
                drop(free);
                Counters::add(&inner.counters.returns);
                return;
            }
        }
        Counters::add(&inner.counters.dropped);
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
