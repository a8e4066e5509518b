//! The clock every time-based layer reads per request: perf-core's `FastClock` (quanta's
//! time-stamp counter) beside `std::time::Instant`, which it replaces on those paths, and
//! quanta's own `Clock::now`, which it wraps.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench clock`

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use perf_middleware::clock::{Clock, FastClock};

fn now(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock/now");
    let fast = FastClock::new();
    group.bench_function("perf-core FastClock", |b| {
        b.iter(|| black_box(&fast).now_nanos())
    });
    let epoch = Instant::now();
    group.bench_function("std Instant", |b| {
        b.iter(|| black_box(epoch).elapsed().as_nanos() as u64)
    });
    let quanta = quanta::Clock::new();
    group.bench_function("quanta Clock::now", |b| b.iter(|| black_box(&quanta).now()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = now
}
criterion_main!(benches);
