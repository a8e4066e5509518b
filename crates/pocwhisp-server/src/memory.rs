//! The memory guard: above `memory.limit`, purge the allocator's free pages, shrink the
//! caches and pools, and refuse new uploads (503) until resident memory is back under the
//! limit by a margin, so the process sheds load before the kernel kills it. Jobs also count
//! the audio they decode against the limit as it grows ([`Reservation`]), because a small
//! compressed file can decode to hundreds of megabytes between two looks at resident memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Relaxed};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::MemoryLimit;

/// What the guard does when memory crosses the limit, and undoes when it is back under.
pub trait Relief: Send + Sync {
    /// Frees what can be freed now (purge arenas, shrink caches and pools).
    fn shed(&self);
    /// Back under the limit: restore capacities.
    fn restore(&self);
}

/// The guard's state, shared with the routes that refuse uploads under pressure.
#[derive(Clone)]
pub struct MemoryGuard {
    inner: Arc<Inner>,
}

struct Inner {
    limit: Option<u64>,
    over: AtomicBool,
    resident: AtomicU64,
    /// Bytes held by every live [`Reservation`].
    reserved: AtomicU64,
    /// `reserved` when `resident` was read: what resident memory already includes.
    reserved_at_look: AtomicU64,
}

/// Back under the limit means under this share of it: no flapping at the edge.
const RESUME_SHARE: f64 = 0.9;

impl MemoryGuard {
    /// A guard for `limit` (`auto`: 90 % of the cgroup's limit, none outside a cgroup).
    pub fn new(limit: MemoryLimit) -> Self {
        let limit = match limit {
            MemoryLimit::Unset => None,
            MemoryLimit::Bytes(bytes) => Some(bytes.0),
            MemoryLimit::Auto => cgroup_limit().map(|bytes| bytes / 10 * 9),
        };
        MemoryGuard {
            inner: Arc::new(Inner {
                limit,
                over: AtomicBool::new(false),
                resident: AtomicU64::new(0),
                reserved: AtomicU64::new(0),
                reserved_at_look: AtomicU64::new(0),
            }),
        }
    }

    /// The limit in bytes, if any.
    pub fn limit(&self) -> Option<u64> {
        self.inner.limit
    }

    /// Whether memory is over the limit now (uploads are refused).
    pub fn is_over(&self) -> bool {
        self.inner.over.load(Relaxed)
    }

    /// Resident bytes at the last check.
    pub fn resident(&self) -> u64 {
        self.inner.resident.load(Relaxed)
    }

    /// Checks `resident` against the limit: crossing it sheds, coming back under restores.
    pub fn observe(&self, resident: u64, relief: &dyn Relief) {
        self.inner.resident.store(resident, Relaxed);
        self.inner
            .reserved_at_look
            .store(self.inner.reserved.load(Relaxed), Relaxed);
        let Some(limit) = self.inner.limit else {
            return;
        };
        let over = self.is_over();
        if !over && resident > limit {
            tracing::warn!(
                resident,
                limit,
                "memory above the limit: shedding caches and refusing uploads"
            );
            self.inner.over.store(true, Relaxed);
            relief.shed();
        } else if over && (resident as f64) < limit as f64 * RESUME_SHARE {
            tracing::info!(
                resident,
                limit,
                "memory back under the limit: accepting uploads"
            );
            self.inner.over.store(false, Relaxed);
            relief.restore();
        }
    }

    /// An empty reservation, grown as a job decodes.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            guard: self.clone(),
            bytes: 0,
        }
    }

    /// Bytes held by every live reservation.
    pub fn reserved(&self) -> u64 {
        self.inner.reserved.load(Relaxed)
    }

    /// Checks every `interval` on the current runtime until the handle is dropped.
    pub fn spawn(&self, interval: Duration, relief: Arc<dyn Relief>) -> JoinHandle<()> {
        let guard = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                if let Some(resident) = resident_bytes() {
                    guard.observe(resident, relief.as_ref());
                }
            }
        })
    }
}

impl std::fmt::Debug for MemoryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGuard")
            .field("limit", &self.inner.limit)
            .field("over", &self.is_over())
            .finish()
    }
}

/// Memory a job holds for its decoded audio and the engine's copy of it, counted against
/// `memory.limit` before it is taken: the estimate is resident memory at the last look plus
/// what reservations grew since. Given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    guard: MemoryGuard,
    bytes: u64,
}

/// A reservation that would take the process over `memory.limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryShort {
    /// Bytes asked for.
    pub wanted: u64,
    /// Whether this reservation was the only one: then waiting for others frees nothing.
    pub alone: bool,
    /// The limit.
    pub limit: u64,
}

impl std::fmt::Display for MemoryShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: u64 = 1 << 20;
        write!(
            f,
            "decoding needs {} MiB more than memory.limit ({} MiB) leaves",
            self.wanted.div_ceil(MIB),
            self.limit / MIB
        )
    }
}

impl std::error::Error for MemoryShort {}

impl Reservation {
    /// Adds `bytes`, or refuses them when the estimate would pass the limit.
    ///
    /// # Errors
    ///
    /// [`MemoryShort`], with nothing added.
    pub fn grow(&mut self, bytes: u64) -> Result<(), MemoryShort> {
        let inner = &self.guard.inner;
        let before = inner.reserved.fetch_add(bytes, AcqRel);
        if let Some(limit) = inner.limit {
            let grown = (before + bytes).saturating_sub(inner.reserved_at_look.load(Relaxed));
            if inner.resident.load(Relaxed) + grown > limit {
                inner.reserved.fetch_sub(bytes, AcqRel);
                return Err(MemoryShort {
                    wanted: bytes,
                    alone: before == self.bytes,
                    limit,
                });
            }
        }
        self.bytes += bytes;
        metrics::gauge!("pocwhisp_decoding_reserved_bytes").increment(bytes as f64);
        Ok(())
    }

    /// Gives back `bytes` (at most what is held).
    pub fn shrink(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.guard.inner.reserved.fetch_sub(bytes, AcqRel);
        metrics::gauge!("pocwhisp_decoding_reserved_bytes").decrement(bytes as f64);
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

/// This process's resident memory, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The memory limit of this process's cgroup (v2, then v1), if it has one.
fn cgroup_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(Path::new(path)).ok();
    let v2 = read("/proc/self/cgroup")
        .and_then(|groups| {
            groups
                .lines()
                .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        })
        .and_then(|group| {
            read(&format!(
                "/sys/fs/cgroup{}/memory.max",
                group.trim_end_matches('/')
            ))
        })
        .or_else(|| read("/sys/fs/cgroup/memory.max"));
    let text = v2.or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?;
    let text = text.trim();
    // "max", or v1's "no limit" value of nearly 2^63.
    text.parse::<u64>().ok().filter(|bytes| *bytes < 1 << 60)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::config::ByteSize;

    #[derive(Default)]
    struct Counted {
        shed: AtomicUsize,
        restored: AtomicUsize,
    }

    impl Relief for Counted {
        fn shed(&self) {
            self.shed.fetch_add(1, Relaxed);
        }
        fn restore(&self) {
            self.restored.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn the_guard_sheds_once_over_and_restores_well_under() {
        let guard = MemoryGuard::new(MemoryLimit::Bytes(ByteSize(1000)));
        let relief = Counted::default();
        guard.observe(900, &relief);
        assert!(!guard.is_over());
        guard.observe(1001, &relief);
        guard.observe(1200, &relief);
        assert!(guard.is_over());
        assert_eq!(relief.shed.load(Relaxed), 1, "once per crossing");
        guard.observe(950, &relief);
        assert!(guard.is_over(), "under the limit but not by the margin");
        guard.observe(850, &relief);
        assert!(!guard.is_over());
        assert_eq!(relief.restored.load(Relaxed), 1);
    }

    #[test]
    fn reservations_count_what_grew_since_the_last_look_and_give_it_back() {
        let guard = MemoryGuard::new(MemoryLimit::Bytes(ByteSize(1000)));
        let relief = Counted::default();
        guard.observe(600, &relief);
        let mut first = guard.reservation();
        first.grow(300).unwrap();
        let mut second = guard.reservation();
        let short = second.grow(200).unwrap_err();
        assert_eq!(
            (short.wanted, short.alone, guard.reserved()),
            (200, false, 300)
        );
        // Resident memory now includes the first reservation: counted once, not twice.
        guard.observe(900, &relief);
        second.grow(50).unwrap();
        assert!(second.grow(100).is_err());
        drop(first);
        assert_eq!(guard.reserved(), 50);
        guard.observe(650, &relief);
        second.grow(300).unwrap();
        let alone = second.grow(100).unwrap_err();
        assert!(alone.alone, "no other reservation to wait for");
        second.shrink(1000);
        assert_eq!((second.bytes(), guard.reserved()), (0, 0));
    }

    #[test]
    fn without_a_limit_reservations_are_counted_and_never_refused() {
        let guard = MemoryGuard::new(MemoryLimit::Unset);
        let mut reservation = guard.reservation();
        reservation.grow(u64::MAX / 2).unwrap();
        assert_eq!(guard.reserved(), u64::MAX / 2);
        drop(reservation);
        assert_eq!(guard.reserved(), 0);
    }

    #[test]
    fn no_limit_never_sheds_and_resident_memory_is_read() {
        let guard = MemoryGuard::new(MemoryLimit::Unset);
        let relief = Counted::default();
        guard.observe(u64::MAX, &relief);
        assert!(!guard.is_over());
        assert!(resident_bytes().unwrap() > 1 << 20);
    }
}
