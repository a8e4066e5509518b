//! Allocator figures from jemalloc: the guide's heap figures.
//!
//! jemalloc refreshes its statistics when its epoch advances, so each collection advances
//! it first. The figures describe the process's heap only when jemalloc is the global
//! allocator (`#[global_allocator] static A: tikv_jemallocator::Jemalloc = ...`).

use crate::snapshot::Snapshot;

/// Bytes allocated by the application (the guide's `heap_alloc_bytes`).
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
