//! Allocator figures with jemalloc as this test binary's global allocator.
#![cfg(feature = "jemalloc")]

use perf_profiler::collect::{
    HEAP_ALLOC_BYTES, HEAP_RESIDENT_BYTES, HEAP_SYS_BYTES, collect_allocator, purge_arenas,
};
use perf_profiler::snapshot::Snapshot;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The heap figures are the whole process's: the tests take turns so that one's
/// allocations do not show in the other's measurements.
static HEAP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heap() -> Snapshot {
    let mut snapshot = Snapshot::at(std::time::SystemTime::now());
    collect_allocator(&mut snapshot);
    snapshot
}

#[test]
fn allocations_show_in_the_heap_figures() {
    let _turn = HEAP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = heap().get(HEAP_ALLOC_BYTES).unwrap();
    let block = vec![1u8; 32 << 20];
    let during = heap();
    let allocated = during.get(HEAP_ALLOC_BYTES).unwrap();
    // jemalloc's figures are approximate by its thread caches' contents (a few hundred KB).
    assert!(
        allocated - before >= (30 << 20) as f64,
        "{before} -> {allocated}"
    );
    assert!(during.get(HEAP_SYS_BYTES).unwrap() >= allocated);
    assert!(during.get(HEAP_RESIDENT_BYTES).unwrap() > 0.0);
    drop(std::hint::black_box(block));
    let after = heap().get(HEAP_ALLOC_BYTES).unwrap();
    assert!(
        after < allocated - (16 << 20) as f64,
        "freed: {allocated} -> {after}"
    );
}

#[test]
fn purging_returns_freed_pages_to_the_os() {
    let _turn = HEAP
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Many small blocks, freed: their pages stay dirty in the arenas until purged or decayed.
    let baseline = heap().get(HEAP_RESIDENT_BYTES).unwrap();
    let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 << 10]).collect();
    let resident_full = heap().get(HEAP_RESIDENT_BYTES).unwrap();
    let added = resident_full - baseline;
    assert!(added >= (48 << 20) as f64, "64 MiB of blocks added {added}");
    drop(std::hint::black_box(blocks));
    purge_arenas().unwrap();
    let resident_purged = heap().get(HEAP_RESIDENT_BYTES).unwrap();
    // Measured against what the blocks added, not a fixed figure: at least half of it is
    // back with the OS (jemalloc keeps some pages for its own metadata and thread caches).
    assert!(
        resident_purged <= baseline + added / 2.0,
        "resident {baseline} -> {resident_full} -> {resident_purged}"
    );
}
