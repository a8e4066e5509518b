//! [`BufferPool`]: reusable `BytesMut` buffers in size classes.
//!
//! `get(n)` hands out a buffer of the smallest class that holds `n` bytes, from the pool
//! when one is free. The [`PooledBuf`] guard gives it back when dropped, cleared (length 0,
//! capacity kept); [`PooledBuf::freeze`] turns it into `Bytes` instead, for a buffer whose
//! contents leave with a response. The pool keeps at most `max_retained_bytes`: buffers
//! returned beyond that, or grown far past their class, are dropped, and
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::error::BuildError;
use crate::stats::{Counters, PoolStats};

/// Settings of a [`BufferPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BufferPoolConfig {
    /// Buffer sizes handed out, ascending (default 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB).
    pub classes: Vec<usize>,
    /// Bytes of free buffers kept at most (default 64 MiB).
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
    max_retained: AtomicU64,
    retained: AtomicU64,
    counters: Counters,
}

struct Class {
    size: usize,
    free: Mutex<Vec<BytesMut>>,
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
        Ok(BufferPool {
            inner: Arc::new(Inner {
                classes: config
                    .classes
                    .iter()
                    .map(|&size| Class {
                        size,
                        free: Mutex::new(Vec::new()),
                    })
                    .collect(),
                max_retained: AtomicU64::new(config.max_retained_bytes),
                retained: AtomicU64::new(0),
                counters: Counters::default(),
            }),
        })
    }

    /// A cleared buffer of at least `capacity` bytes. Larger than the largest class, it is
    /// allocated and not kept on return.
    #[inline]
    pub fn get(&self, capacity: usize) -> PooledBuf {
        let inner = &*self.inner;
        Counters::add(&inner.counters.gets);
        let class = inner
            .classes
            .iter()
            .position(|class| class.size >= capacity);
        let reused = class.and_then(|index| lock(&inner.classes[index].free).pop());
        let buffer = match reused {
            Some(buffer) => {
                Counters::add(&inner.counters.hits);
                inner.retained.fetch_sub(buffer.capacity() as u64, Relaxed);
                buffer
            }
            None => {
                Counters::add(&inner.counters.misses);
                let size = class.map_or(capacity, |index| inner.classes[index].size);
                BytesMut::with_capacity(size)
            }
        };
        PooledBuf {
            buffer: Some(buffer),
            class,
            pool: self.clone(),
        }
    }

    /// Drops free buffers, largest classes first, until at most `bytes` are kept; returns
    /// the bytes released.
    pub fn shrink_to(&self, bytes: u64) -> u64 {
        let inner = &*self.inner;
        let mut released = 0;
        for class in inner.classes.iter().rev() {
            let mut free = lock(&class.free);
            while inner.retained.load(Relaxed) > bytes {
                let Some(buffer) = free.pop() else { break };
                let size = buffer.capacity() as u64;
                inner.retained.fetch_sub(size, Relaxed);
                released += size;
            }
        }
        released
    }

    /// Changes the cap on kept bytes, shrinking at once if needed.
    pub fn set_max_retained_bytes(&self, bytes: u64) {
        self.inner.max_retained.store(bytes, Relaxed);
        self.shrink_to(bytes);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        let inner = &*self.inner;
        let retained: usize = inner
            .classes
            .iter()
            .map(|class| lock(&class.free).len())
            .sum();
        inner
            .counters
            .snapshot(retained as u64, inner.retained.load(Relaxed))
    }

    fn give_back(&self, mut buffer: BytesMut, class: Option<usize>) {
        let inner = &*self.inner;
        let size = buffer.capacity() as u64;
        // A buffer that grew far past its class would make the class lie about its size.
        let fits = class.filter(|&index| buffer.capacity() <= inner.classes[index].size * 2);
        let room = inner.retained.load(Relaxed) + size <= inner.max_retained.load(Relaxed);
        match fits {
            Some(index) if room => {
                buffer.clear();
                inner.retained.fetch_add(size, Relaxed);
                lock(&inner.classes[index].free).push(buffer);
                Counters::add(&inner.counters.returns);
            }
            _ => Counters::add(&inner.counters.dropped),
        }
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A buffer from a [`BufferPool`]; goes back to it when dropped.
pub struct PooledBuf {
    buffer: Option<BytesMut>,
    class: Option<usize>,
    pool: BufferPool,
}

impl PooledBuf {
    /// The contents as `Bytes`; the buffer leaves the pool with them.
    pub fn freeze(mut self) -> Bytes {
        self.buffer.take().map(BytesMut::freeze).unwrap_or_default()
    }
}

impl Deref for PooledBuf {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        self.buffer.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut BytesMut {
        self.buffer.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer, self.class);
        }
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
