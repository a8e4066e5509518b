//! In-process caches side by side: `TtlCache` against raw quick_cache (what it is built on)
//! and moka (the TTL cache people use today).
//!
//! * `cache/hit`: 10,000 entries, keys taken in turn, every lookup a hit. `TtlCache` checks
//!   the entry's expiry on every hit; quick_cache has no TTL to check; moka is configured
//!   with a TTL like ours.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench cache`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perf_cache::ttl::TtlCache;

const ENTRIES: u64 = 10_000;

fn hits(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache/hit");
    group.throughput(Throughput::Elements(1));

    let ours: TtlCache<u64, u64> = TtlCache::builder()
        .capacity(ENTRIES * 2)
        .ttl(Duration::from_secs(3600))
        .build()
        .expect("valid config");
    for key in 0..ENTRIES {
        ours.insert(key, key);
    }
    let mut key = 0;
    group.bench_function("perf-cache", |b| {
        b.iter(|| {
            key = (key + 1) % ENTRIES;
            black_box(ours.get(&key))
        })
    });

    let quick: quick_cache::sync::Cache<u64, u64> =
        quick_cache::sync::Cache::new(ENTRIES as usize * 2);
    for key in 0..ENTRIES {
        quick.insert(key, key);
    }
    let mut key = 0;
    group.bench_function("quick_cache", |b| {
        b.iter(|| {
            key = (key + 1) % ENTRIES;
            black_box(quick.get(&key))
        })
    });

    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::builder()
        .max_capacity(ENTRIES * 2)
        .time_to_live(Duration::from_secs(3600))
        .build();
    for key in 0..ENTRIES {
        moka.insert(key, key);
    }
    let mut key = 0;
    group.bench_function("moka", |b| {
        b.iter(|| {
            key = (key + 1) % ENTRIES;
            black_box(moka.get(&key))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hits
}
criterion_main!(benches);
