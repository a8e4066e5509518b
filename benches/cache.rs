//! In-process caches side by side: `TtlCache` against raw quick_cache (what it is built on)
//! and moka (the TTL cache people use today).
//!
//! * `cache/hit`: 10,000 entries, keys taken in turn, every lookup a hit. `TtlCache` checks
//!   the entry's expiry on every hit; quick_cache has no TTL to check; moka is configured
//!   with a TTL like ours.
//!
//! * `response_cache/hit`: a GET whose 2 KB JSON answer is already cached, through our
//!   `ResponseCacheLayer` and through tower-http-cache's `CacheLayer` (in-memory backend),
//!   body read to the end, each driven on a current-thread runtime (tower-http-cache's
//!   lookups are async).
//!
//! Run: `cargo bench -p pocwhisp-benches --bench cache`

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use perf_cache::response::{ResponseCacheConfig, ResponseCacheLayer};
use perf_cache::ttl::TtlCache;
use tower::{Layer, Service, ServiceExt, service_fn};

const ENTRIES: u64 = 10_000;

fn hits_in_process(c: &mut Criterion) {
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

/// The origin: a 2 KB JSON answer; `calls` counts how often it is really asked.
fn json_origin(
    calls: Arc<AtomicU64>,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let body = Bytes::from(format!(
        "[{}]",
        vec![r#"{"speaker":"left","text":"cached segment"}"#; 48].join(",")
    ));
    service_fn(move |_: Request<Full<Bytes>>| {
        let body = body.clone();
        calls.fetch_add(1, Relaxed);
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .header("content-length", body.len())
                    .body(Full::new(body))
                    .expect("valid response"),
            )
        }
    })
}

/// Sends `iters` cached GETs through `service` on a current-thread runtime.
fn hits<S, B>(runtime: &tokio::runtime::Runtime, service: &mut S, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iters {
            let request = Request::get("/api/v1/transcribe/42")
                .body(Full::new(Bytes::new()))
                .expect("valid request");
            let response = service
                .ready()
                .await
                .expect("ready")
                .call(request)
                .await
                .expect("response");
            black_box(
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes(),
            );
        }
        started.elapsed()
    })
}

/// Warms the cache with one request, then checks that a hundred more never reach the
/// origin: a row that timed misses would compare nothing.
fn assert_hits<S, B>(
    runtime: &tokio::runtime::Runtime,
    service: &mut S,
    calls: &AtomicU64,
    name: &str,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    calls.store(0, Relaxed);
    hits(runtime, service, 1);
    hits(runtime, service, 100);
    assert_eq!(
        calls.load(Relaxed),
        1,
        "{name}: every request after the first is a hit"
    );
}

fn response_hits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("response_cache/hit");
    group.throughput(Throughput::Elements(1));

    let calls = Arc::new(AtomicU64::new(0));
    let mut ours = ResponseCacheLayer::new(ResponseCacheConfig::default())
        .expect("valid config")
        .layer(json_origin(Arc::clone(&calls)));
    assert_hits(&runtime, &mut ours, &calls, "perf-cache");
    group.bench_function("perf-cache", |b| {
        b.iter_custom(|iters| hits(&runtime, &mut ours, iters))
    });

    let mut theirs = runtime.block_on(async {
        tower_http_cache::layer::CacheLayer::builder(
            tower_http_cache::backend::memory::InMemoryBackend::new(10_000),
        )
        .ttl(Duration::from_secs(300))
        .build()
        .layer(json_origin(Arc::clone(&calls)))
    });
    assert_hits(&runtime, &mut theirs, &calls, "tower-http-cache");
    group.bench_function("tower-http-cache", |b| {
        b.iter_custom(|iters| hits(&runtime, &mut theirs, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = hits_in_process, response_hits
}
criterion_main!(benches);
