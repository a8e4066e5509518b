//! Allocator figures from jemalloc: the heap figures of a snapshot.
//!
//! jemalloc refreshes its statistics when its epoch advances, so each collection advances
//! it first. The figures describe the process's heap only when jemalloc is the global
//! allocator (`#[global_allocator] static A: tikv_jemallocator::Jemalloc = ...`).

use crate::snapshot::Snapshot;

/// Bytes allocated by the application (`heap_alloc_bytes`).
pub const HEAP_ALLOC_BYTES: &str = "heap_alloc_bytes";
/// Bytes in active pages (`heap_inuse_bytes`).
pub const HEAP_INUSE_BYTES: &str = "heap_inuse_bytes";
/// Bytes mapped from the OS (`heap_sys_bytes`).
pub const HEAP_SYS_BYTES: &str = "heap_sys_bytes";
/// Bytes in resident pages.
pub const HEAP_RESIDENT_BYTES: &str = "heap_resident_bytes";
/// Bytes kept mapped for reuse rather than returned to the OS.
pub const HEAP_RETAINED_BYTES: &str = "heap_retained_bytes";

/// Adds jemalloc's figures to `snapshot`; nothing if its statistics cannot be read.
pub fn collect_allocator(snapshot: &mut Snapshot) {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return;
    }
    let figures = [
        (HEAP_ALLOC_BYTES, stats::allocated::read()),
        (HEAP_INUSE_BYTES, stats::active::read()),
        (HEAP_SYS_BYTES, stats::mapped::read()),
        (HEAP_RESIDENT_BYTES, stats::resident::read()),
        (HEAP_RETAINED_BYTES, stats::retained::read()),
    ];
    for (name, value) in figures {
        if let Ok(value) = value {
            snapshot.set(name, value as f64);
        }
    }
}

/// jemalloc could not purge; its error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeError(pub i32);

impl std::fmt::Display for PurgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "jemalloc refused to purge its arenas (error {})", self.0)
    }
}

impl std::error::Error for PurgeError {}

/// Returns the unused dirty pages of every jemalloc arena to the OS now, rather than when
/// their decay time passes: the `memory` optimizer action.
///
/// # Errors
///
/// jemalloc's error number, if it refuses (jemalloc is not the allocator in use, say).
#[allow(unsafe_code)]
pub fn purge_arenas() -> Result<(), PurgeError> {
    // 4096 is MALLCTL_ARENAS_ALL: every arena at once.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: `PURGE_ALL` is a NUL-terminated mallctl name that outlives the call. Purging
    // reads and writes nothing, and jemalloc requires exactly that: null old/new pointers
    // and a zero new length (it answers EPERM otherwise). No Rust memory is touched.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(PurgeError(status))
    }
}
