//! The two servers `scripts/compare-http` sets beside PocWhisp, each answering every request
//! with the same JSON bytes (a cached `GET /api/v1/transcribe/{id}`, saved to a file):
//!
//! * `bare`: hyper 1.x and hyper-util's auto connection builder, nothing else: the floor.
//! * `headers`: the same, answering with the response headers PocWhisp sends as well (read
//!   from a second file of `name: value` lines): the floor of any server that sends them,
//!   since hyper writes each one whoever adds it.
//! * `axum`: the same route built the usual way: axum, tower-http's compression, request
//!   id, timeout and trace layers, and tower_governor's rate limiter.
//!
//! `cargo run --release -p pocwhisp-benches --example http_baselines -- bare|axum BODY_FILE`
//! (or `headers BODY_FILE HEADERS_FILE`) prints `listening on http://ADDRESS` and serves until killed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let usage = "usage: http_baselines bare|axum BODY_FILE, or headers BODY_FILE HEADERS_FILE";
    let body = Bytes::from(std::fs::read(args.next().expect(usage)).expect("the body file"));
    let mut headers = HeaderMap::new();
    if mode == "headers" {
        let lines = std::fs::read_to_string(args.next().expect(usage)).expect("the headers file");
        for line in lines.lines().filter(|line| !line.trim().is_empty()) {
            let (name, value) = line.split_once(':').expect("a `name: value` line");
            headers.append(
                HeaderName::try_from(name.trim()).expect("a header name"),
                HeaderValue::try_from(value.trim()).expect("a header value"),
            );
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    match mode.as_str() {
        "bare" | "headers" => bare(listener, body, headers).await,
        "axum" => axum_stack(listener, body).await,
        other => panic!("mode `{other}`: bare, headers or axum"),
    }
}

/// hyper alone: every connection served by the auto (HTTP/1 and h2c) builder, every request
/// answered with the body, `headers` and its content type.
async fn bare(listener: TcpListener, body: Bytes, headers: HeaderMap) {
    let content_type = HeaderValue::from_static("application/json");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (body, headers, content_type) = (body.clone(), headers.clone(), content_type.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |_request: Request<hyper::body::Incoming>| {
                    let mut response = Response::new(Full::new(body.clone()));
                    // PocWhisp's headers as a prepared copy: the cheapest way to have them.
                    if !headers.is_empty() {
                        *response.headers_mut() = headers.clone();
                    }
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, content_type.clone());
                    std::future::ready(Ok::<_, Infallible>(response))
                });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The usual axum service: the route, then tower-http and tower_governor around it.
async fn axum_stack(listener: TcpListener, body: Bytes) {
    use tower::ServiceBuilder;
    use tower_governor::GovernorLayer;
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::key_extractor::GlobalKeyExtractor;
    use tower_http::compression::CompressionLayer;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;

    let body = Arc::new(body);
    // A quota no run reaches: the limiter's cost, not its refusals.
    let governor = Arc::new(
        GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .key_extractor(GlobalKeyExtractor)
            .finish()
            .unwrap(),
    );
    let app = axum::Router::new()
        .route(
            "/api/v1/transcribe/{id}",
            axum::routing::get(move || {
                let body = Arc::clone(&body);
                async move { ([(CONTENT_TYPE, "application/json")], (*body).clone()) }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(30),
                ))
                .layer(CompressionLayer::new())
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(GovernorLayer::new(governor)),
        );
    axum::serve(listener, app).await.unwrap();
}
