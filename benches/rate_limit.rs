//! Rate limiting side by side: perf-middleware, governor and tower_governor.
//!
//! * `rate_limit/direct`: one bucket for everything (`RateLimiter::global` vs governor's
//!   direct limiter).
//! * `rate_limit/keyed_1000`: 1,000 keys taken in turn (our sharded store vs governor's
//!   DashMap-backed keyed limiter, both hashing with foldhash, so the row compares the
//!   stores and not the hashers).
//! * `rate_limit/layer`: the tower layers with a global key over the same trivial inner
//!   service, without rate-limit headers and with them (tower_governor's `use_headers`
//!   writes two, our `Standard` three, `StandardAndLegacy` six).
//! * `rate_limit/keyed_layer`: the layers keyed by the peer's IP (our default keying is per
//!   client too), 1,000 client addresses in turn.
//!
//! Quotas refill every nanosecond, so every request is allowed (the common path), with the
//! default burst of 200: header numbers stay below 4,096 and come from our table of static
//! values. `with_headers_large` uses a burst of a billion, whose numbers are formatted and
//! allocated per response, to show that path too.
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
    GlobalKey, PeerAddr, PeerIp, Quota, RateLimitHeaders, RateLimitLayer, RateLimiter,
};
use tower::{Layer, Service, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{GlobalKeyExtractor, PeerIpKeyExtractor};

const PER_SECOND: u32 = 1_000_000_000;
/// The default burst.
const BURST: u32 = 200;
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
    let theirs =
        governor::RateLimiter::dashmap_with_hasher(quota, foldhash::fast::RandomState::default());
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
    call_with(service, Request::new(()))
}

fn call_with<S>(service: &mut S, request: Request<()>) -> bool
where
    S: Service<Request<()>, Response = Response<Body>>,
{
    let ready = complete(std::future::poll_fn(|cx| service.poll_ready(cx))).is_ok();
    let response = complete(service.call(request));
    ready && response.is_ok_and(|r| r.status().is_success())
}

/// A request from client `n` of `KEYS`, with the peer address both layers read (ours the
/// `PeerAddr` extension, tower_governor axum's `ConnectInfo`).
fn from_client(n: u64) -> Request<()> {
    let address = std::net::SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 40_000));
    let mut request = Request::new(());
    request.extensions_mut().insert(PeerAddr(address));
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(address));
    request
}

fn layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/layer");
    group.throughput(Throughput::Elements(1));

    for (name, headers, burst) in [
        ("no_headers", RateLimitHeaders::None, BURST),
        ("with_headers", RateLimitHeaders::Standard, BURST),
        (
            "with_legacy_headers",
            RateLimitHeaders::StandardAndLegacy,
            BURST,
        ),
        ("with_headers_large", RateLimitHeaders::Standard, PER_SECOND),
    ] {
        let limiter = RateLimiter::global(Quota::per_second(PER_SECOND).burst(burst));
        let mut ours = RateLimitLayer::new(limiter, GlobalKey)
            .headers(headers)
            .layer(inner());
        group.bench_function(BenchmarkId::new("perf-middleware", name), |b| {
            b.iter(|| black_box(call(&mut ours)))
        });
    }

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(BURST)
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .expect("valid config");
    let mut theirs = GovernorLayer::new(config).layer(inner());
    group.bench_function(BenchmarkId::new("tower_governor", "no_headers"), |b| {
        b.iter(|| black_box(call(&mut theirs)))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(BURST)
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

fn keyed_layer(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/keyed_layer");
    group.throughput(Throughput::Elements(1));

    let limiter = RateLimiter::builder(Quota::per_second(PER_SECOND).burst(BURST))
        .build()
        .expect("valid limiter");
    let mut ours = RateLimitLayer::new(limiter, PeerIp::new())
        .headers(RateLimitHeaders::Standard)
        .layer(inner());
    let mut client = 0u64;
    group.bench_function(BenchmarkId::new("perf-middleware", "peer_ip"), |b| {
        b.iter(|| {
            client = (client + 1) % KEYS;
            black_box(call_with(&mut ours, from_client(client)))
        })
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(BURST)
        .key_extractor(PeerIpKeyExtractor)
        .use_headers()
        .finish()
        .expect("valid config");
    let mut theirs = GovernorLayer::new(config).layer(inner());
    let mut client = 0u64;
    group.bench_function(BenchmarkId::new("tower_governor", "peer_ip"), |b| {
        b.iter(|| {
            client = (client + 1) % KEYS;
            black_box(call_with(&mut theirs, from_client(client)))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = direct, keyed, layer, keyed_layer
}
criterion_main!(benches);
