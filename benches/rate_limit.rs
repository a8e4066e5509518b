//! Rate limiting side by side: perf-middleware, governor and tower_governor.
//!
//! * `rate_limit/direct`: one bucket for everything (`RateLimiter::global` vs governor's
//!   direct limiter).
//! * `rate_limit/keyed_1000`: 1,000 keys taken in turn (our sharded store vs governor's
//!   DashMap-backed keyed limiter).
//! * `rate_limit/layer`: the tower layers with a global key over the same trivial inner
//!   service, without rate-limit headers and with them (tower_governor's `use_headers`
//!   writes two, our `Standard` three, `StandardAndLegacy` six).
//!
//! Quotas are large enough that every request is allowed: the common path.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench rate_limit`

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
mod common;

use common::complete;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use perf_middleware::rate_limit::{
    GlobalKey, Quota, RateLimitHeaders, RateLimitLayer, RateLimiter,
};
use tower::{Layer, Service, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;

const PER_SECOND: u32 = 1_000_000_000;
const KEYS: u64 = 1_000;

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/direct");
    group.throughput(Throughput::Elements(1));

    let ours = RateLimiter::global(Quota::per_second(PER_SECOND));
    group.bench_function("perf-middleware", |b| {
        b.iter(|| black_box(ours.check(&()).is_allowed()))
    });

    let quota = governor::Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"));
    let theirs = governor::RateLimiter::direct(quota);
    group.bench_function("governor", |b| b.iter(|| black_box(theirs.check().is_ok())));
    group.finish();
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/keyed_1000");
    group.throughput(Throughput::Elements(1));

    let ours = RateLimiter::builder(Quota::per_second(PER_SECOND))
        .build()
        .expect("valid limiter");
    let mut key = 0u64;
    group.bench_function("perf-middleware", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            black_box(ours.check(&key).is_allowed())
        })
    });

    let quota = governor::Quota::per_second(NonZeroU32::new(PER_SECOND).expect("non-zero"));
    let theirs = governor::RateLimiter::keyed(quota);
    let mut key = 0u64;
    group.bench_function("governor", |b| {
        b.iter(|| {
            key = (key + 1) % KEYS;
            black_box(theirs.check_key(&key).is_ok())
        })
    });
    group.finish();
}

fn inner() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::empty())))
    })
}

fn call<S>(service: &mut S) -> bool
where
    S: Service<Request<()>, Response = Response<Body>>,
{
    let ready = complete(std::future::poll_fn(|cx| service.poll_ready(cx))).is_ok();
    let response = complete(service.call(Request::new(())));
    ready && response.is_ok_and(|r| r.status().is_success())
}

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/layer");
    group.throughput(Throughput::Elements(1));

    for (name, headers) in [
        ("no_headers", RateLimitHeaders::None),
        ("with_headers", RateLimitHeaders::Standard),
        ("with_legacy_headers", RateLimitHeaders::StandardAndLegacy),
    ] {
        let limiter = RateLimiter::global(Quota::per_second(PER_SECOND));
        let mut ours = RateLimitLayer::new(limiter, GlobalKey)
            .headers(headers)
            .layer(inner());
        group.bench_function(BenchmarkId::new("perf-middleware", name), |b| {
            b.iter(|| black_box(call(&mut ours)))
        });
    }

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(PER_SECOND)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .expect("valid config");
    let mut theirs = GovernorLayer::new(config).layer(inner());
    group.bench_function(BenchmarkId::new("tower_governor", "no_headers"), |b| {
        b.iter(|| black_box(call(&mut theirs)))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(PER_SECOND)
        .key_extractor(GlobalKeyExtractor)
        .use_headers()
        .finish()
        .expect("valid config");
    let mut theirs = GovernorLayer::new(config).layer(inner());
    group.bench_function(BenchmarkId::new("tower_governor", "with_headers"), |b| {
        b.iter(|| black_box(call(&mut theirs)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = direct, keyed, layer
}
criterion_main!(benches);
