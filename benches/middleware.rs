//! HTTP middleware side by side: compression against tower-http, and the request-metrics
//! layer against no layer.
//!
//! * `compression/gzip` and `compression/br`: a 19,880-byte transcript as JSON, compressed
//!   through ours and through tower-http's `CompressionLayer`, body read to the end. tower-http
//!   runs with its default level (which for brotli it sets to quality 4, as ours, instead of
//!   the brotli crate's 11) and once more at an explicit quality 4.
//! * `metrics/layer`: a trivial service with no layer and with `RequestMetricsLayer`
//!   recording into an installed Prometheus recorder: the layer's overhead per request.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench middleware`

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
mod common;

use common::complete;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use perf_middleware::compression::{CompressionConfig, CompressionLayer};
use perf_middleware::metrics::{RequestMetricsLayer, RouteTemplate, install_prometheus};
use tower::{Layer, Service, service_fn};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer as TowerHttpCompression;

/// Reads a body that never waits to the end; returns the bytes it produced.
fn drain<B: Body>(body: B) -> usize
where
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut total = 0;
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                if let Ok(data) = frame.expect("body error").into_data() {
                    total += bytes::Buf::remaining(&data);
                }
            }
            Poll::Ready(None) => return total,
            Poll::Pending => panic!("the bench bodies never wait"),
        }
    }
}

fn transcript_json() -> Bytes {
    let segments: Vec<String> = (0..150)
        .map(|i| {
            format!(
                r#"{{"speaker":"{}","start_time":{}.25,"end_time":{}.75,"text":"segment {i} of the recorded meeting, said clearly","confidence":0.9{}}}"#,
                if i % 2 == 0 { "left" } else { "right" },
                i,
                i + 1,
                i % 10
            )
        })
        .collect();
    Bytes::from(format!(
        r#"{{"session_id":"s-1","segments":[{}]}}"#,
        segments.join(",")
    ))
}

fn json_service(
    json: Bytes,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    service_fn(move |_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .header("content-length", json.len())
                .body(Full::new(json.clone()))
                .expect("valid response"),
        ))
    })
}

/// One request through `service`, response body read to the end.
fn roundtrip<S, B>(service: &mut S, accept: &'static str) -> usize
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    complete(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    let request = Request::get("/")
        .header("accept-encoding", accept)
        .body(())
        .expect("valid request");
    drain(
        complete(service.call(request))
            .expect("response")
            .into_body(),
    )
}

fn compression(c: &mut Criterion) {
    let json = transcript_json();
    for (coding, accept) in [("gzip", "gzip"), ("br", "br")] {
        let mut group = c.benchmark_group(format!("compression/{coding}"));
        group.throughput(Throughput::Bytes(json.len() as u64));

        let mut ours = CompressionLayer::from_config(CompressionConfig::default())
            .expect("valid config")
            .layer(json_service(json.clone()));
        let compressed = roundtrip(&mut ours, accept);
        group.bench_function(BenchmarkId::new("perf-middleware", "default"), |b| {
            b.iter(|| black_box(roundtrip(&mut ours, accept)))
        });

        let mut theirs = TowerHttpCompression::new().layer(json_service(json.clone()));
        let theirs_compressed = roundtrip(&mut theirs, accept);
        group.bench_function(BenchmarkId::new("tower-http", "default"), |b| {
            b.iter(|| black_box(roundtrip(&mut theirs, accept)))
        });
        if coding == "br" {
            let mut theirs = TowerHttpCompression::new()
                .quality(CompressionLevel::Precise(4))
                .layer(json_service(json.clone()));
            group.bench_function(BenchmarkId::new("tower-http", "quality_4"), |b| {
                b.iter(|| black_box(roundtrip(&mut theirs, accept)))
            });
        }
        group.finish();
        println!(
            "compression/{coding}: {} bytes -> ours {compressed}, tower-http default {theirs_compressed}",
            json.len()
        );
    }
}

fn request_metrics(c: &mut Criterion) {
    install_prometheus().expect("the only recorder in this process");
    let plain = || {
        service_fn(|_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
                Bytes::from_static(b"{}"),
            ))))
        })
    };
    let routed = |request: Request<()>| {
        let mut request = request;
        request
            .extensions_mut()
            .insert(RouteTemplate("/api/v1/transcribe/{id}".into()));
        request
    };
    let mut group = c.benchmark_group("metrics/layer");
    group.throughput(Throughput::Elements(1));

    let mut bare = plain();
    group.bench_function("no_layer", |b| {
        b.iter(|| {
            complete(std::future::poll_fn(|cx| bare.poll_ready(cx))).expect("ready");
            let response = complete(bare.call(routed(Request::new(())))).expect("response");
            black_box(drain(response.into_body()))
        })
    });

    let mut measured = RequestMetricsLayer::new().layer(plain());
    group.bench_function("perf-middleware", |b| {
        b.iter(|| {
            complete(std::future::poll_fn(|cx| measured.poll_ready(cx))).expect("ready");
            let response = complete(measured.call(routed(Request::new(())))).expect("response");
            black_box(drain(response.into_body()))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(3));
    targets = compression, request_metrics
}
criterion_main!(benches);
