//! What sharing through Redis costs, beside what it replaces.
//!
//! * `redis_rate_limit/check`: one allowed check of one key. `in_memory` is perf-middleware's
//!   `RateLimiter` (no round trip); `redis_gcra` is its `RedisRateLimiter` (one `EVALSHA` round
//!   trip running the GCRA script atomically on Redis's clock); `incr_expire_window` is the
//!   plain fixed window people write first (`INCR`, then `EXPIRE` when the count is 1: one round
//!   trip a check plus one per window, and a window edge that lets twice the quota through).
//! * `tiered_cache/l1_hit`: a lookup that L1 answers, through `TieredCache` (L2 on Redis)
//!   against a bare `TtlCache` hit: the tier must cost nothing when L1 hits.
//!
//! Redis is the one at 127.0.0.1:6379 (`REDIS_URL` to change), under a prefix of the run's
//! own; its rows are skipped with a message when none answers.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench redis`

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perf_cache::l2::redis::{Client, RedisCache};
use perf_cache::l2::{TieredCache, TieredConfig};
use perf_cache::ttl::TtlCache;
use perf_middleware::rate_limit::redis::RedisRateLimiter;
use perf_middleware::rate_limit::{Quota, RateLimiter};
use tokio::runtime::Runtime;

const ENTRIES: u64 = 10_000;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn prefix() -> String {
    format!("bench:{}", fastrand::u64(..))
}

/// A quota no bench run can spend: every check is the allowed path.
fn unspendable() -> Quota {
    Quota::per_second(1_000_000).burst(1_000_000_000)
}

fn rate_limit_checks(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let _inside = runtime.enter();
    let mut group = c.benchmark_group("redis_rate_limit/check");
    group.throughput(Throughput::Elements(1));

    let local = RateLimiter::builder(unspendable()).build().unwrap();
    group.bench_function("in_memory", |b| {
        b.iter(|| black_box(local.check(black_box(&"client"))))
    });

    let Ok(client) = Client::open(redis_url()) else {
        return;
    };
    let redis = RedisRateLimiter::builder(unspendable())
        .prefix(prefix())
        .timeout(Duration::from_secs(1))
        .build::<&str>(client.clone())
        .unwrap();
    if !runtime.block_on(async {
        redis.check(&"client").await;
        !redis.is_degraded() && redis.fallback().stats().keys == 0
    }) {
        eprintln!(
            "redis_rate_limit: no Redis at {}; its rows skipped",
            redis_url()
        );
        return;
    }
    group.bench_function("redis_gcra", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(redis.check(&"client").await) })
    });

    let window =
        runtime.block_on(async { client.get_multiplexed_async_connection().await.unwrap() });
    let key = format!("{}:window", prefix());
    group.bench_function("incr_expire_window", |b| {
        b.to_async(&runtime).iter(|| {
            let mut connection = window.clone();
            let key = key.clone();
            async move {
                let count: u64 = redis::cmd("INCR")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                if count == 1 {
                    let _: () = redis::cmd("EXPIRE")
                        .arg(&key)
                        .arg(1)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                }
                black_box(count <= 1_000_000_000)
            }
        })
    });
    group.finish();
}

fn tiered_l1_hits(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let _inside = runtime.enter();
    let mut group = c.benchmark_group("tiered_cache/l1_hit");
    group.throughput(Throughput::Elements(1));
    let keys: Vec<String> = (0..ENTRIES).map(|n| format!("session-{n}")).collect();
    let value = Bytes::from_static(b"{\"session_id\":\"x\"}");

    let bare: TtlCache<String, Bytes> = TtlCache::builder()
        .capacity(ENTRIES * 2)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    for key in &keys {
        bare.insert(key.clone(), value.clone());
    }
    let mut n = 0;
    group.bench_function("ttl_cache", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(bare.get(keys[n].as_str()))
        })
    });

    let l2 = RedisCache::builder(Client::open(redis_url()).unwrap())
        .prefix(prefix())
        .build()
        .unwrap();
    let l1: TtlCache<String, Bytes> = TtlCache::builder()
        .capacity(ENTRIES * 2)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let tiered = TieredCache::new(l1, Arc::new(l2), TieredConfig::default()).unwrap();
    // Filled in L1 only: every lookup below is answered there, Redis or not.
    for key in &keys {
        tiered.l1().insert(key.clone(), value.clone());
    }
    let mut n = 0;
    group.bench_function("tiered_get", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(common::complete(tiered.get(keys[n].as_str())))
        })
    });
    let mut n = 0;
    group.bench_function("tiered_get_or_load", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(common::complete(
                tiered.get_or_load(keys[n].as_str(), || async {
                    Ok::<_, std::convert::Infallible>(Bytes::new())
                }),
            ))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(3));
    targets = rate_limit_checks, tiered_l1_hits
}
criterion_main!(benches);
