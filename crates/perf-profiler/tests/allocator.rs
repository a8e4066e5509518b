//! Allocator figures with jemalloc as this test binary's global allocator.
#![cfg(feature = "jemalloc")]

use perf_profiler::collect::{
    HEAP_ALLOC_BYTES, HEAP_RESIDENT_BYTES, HEAP_SYS_BYTES, collect_allocator,
};
use perf_profiler::snapshot::Snapshot;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn heap() -> Snapshot {
    let mut snapshot = Snapshot::at(std::time::SystemTime::now());
    collect_allocator(&mut snapshot);
    snapshot
}

#[test]
fn allocations_show_in_the_heap_figures() {
    let before = heap().get(HEAP_ALLOC_BYTES).unwrap();
    let block = vec![1u8; 32 << 20];
    let during = heap();
    let allocated = during.get(HEAP_ALLOC_BYTES).unwrap();
    assert!(
        allocated - before >= (32 << 20) as f64,
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
