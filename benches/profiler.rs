//! The profiler's own cost: what it adds to every request (a latency record, or a timer
//! started and finished as `LatencyLayer` does) and to every sampling interval (a snapshot of the process, the runtime and the latency window).
//! Goals: a record under 100 ns, a snapshot under 1 ms.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench profiler`

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use perf_profiler::collect::LatencyRecorder;
use perf_profiler::{Profiler, ProfilerConfig};

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("profiler/overhead");

    let recorder = LatencyRecorder::new(Duration::from_secs(60));
    let mut micros = 0u64;
    group.bench_function("latency_record", |b| {
        b.iter(|| {
            micros = (micros + 7919) % 500_000;
            recorder.record(Duration::from_micros(micros), micros.is_multiple_of(50));
        })
    });
    // What `LatencyLayer` does per request: start a timer, finish it.
    group.bench_function("request_timer", |b| {
        b.iter(|| recorder.start().finish(false))
    });
    // Two threads timing requests into one recorder at once, the time per request as each
    // thread sees it: the stripes keep them off each other's lock.
    group.bench_function("request_timer/2_threads", |b| {
        b.iter_custom(|iters| {
            let start_line = Barrier::new(3);
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        start_line.wait();
                        for _ in 0..iters {
                            recorder.start().finish(false);
                        }
                    });
                }
                start_line.wait();
                Instant::now()
            })
            .elapsed()
        })
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let profiler = Profiler::new(ProfilerConfig::default()).expect("valid config");
    for i in 0..10_000u64 {
        profiler
            .latency()
            .record(Duration::from_micros(i * 13 % 400_000), false);
    }
    let _entered = runtime.enter();
    group.bench_function("snapshot", |b| b.iter(|| black_box(profiler.snapshot())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = overhead
}
criterion_main!(benches);
