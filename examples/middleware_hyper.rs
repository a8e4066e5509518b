//! The `PerformanceLayer` stack on a plain hyper 1.x server, keyed by client IP.
//!
//! Serves on 127.0.0.1 (port chosen by the OS): the application under the stack, and
//! `/metrics` beside it. Each connection's peer address goes into the request as a
//! `PeerAddr`, which the rate limiter keys on. A client then sends a bounded burst of
//! requests over loopback and prints what came back, and the server shuts down.
//!
//! Run: `cargo run -p pocwhisp-examples --example middleware_hyper`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use perf_middleware::metrics::{PrometheusService, install_prometheus};
use perf_middleware::performance::{PerformanceConfig, PerformanceLayer};
use perf_middleware::rate_limit::RateLimitConfig;
use perf_middleware::rate_limit::{PeerAddr, RateLimitKey};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt, service_fn};

/// The application: a small JSON answer per request.
async fn app(request: Request<Limited<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = format!(r#"{{"path":"{}","status":"ok"}}"#, request.uri().path());
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let prometheus = install_prometheus()?;
    let config = PerformanceConfig {
        metrics_prefix: "pocwhisp_http".into(),
        rate_limit: Some(RateLimitConfig {
            requests_per_second: 2,
            burst: 4,
            key: RateLimitKey::PeerIp {
                trusted_proxies: Vec::new(),
            },
            ..RateLimitConfig::default()
        }),
        ..PerformanceConfig::default()
    };
    let stack = PerformanceLayer::new(&config)?.layer(service_fn(app));
    let metrics = PrometheusService::new(prometheus);

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let stack = stack.clone();
            let metrics = metrics.clone();
            let per_connection = service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                let stack = stack.clone();
                let mut metrics = metrics.clone();
                async move {
                    if request.uri().path() == "/metrics" {
                        let response = metrics.call(request).await?;
                        return Ok::<_, Infallible>(
                            response.map(|body| body.map_err(|e| match e {}).boxed()),
                        );
                    }
                    let response = stack.oneshot(request).await?;
                    Ok(response.map(BodyExt::boxed))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(per_connection),
            ));
        }
    });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: &str| {
        Request::get(format!("http://{address}{path}"))
            .header("accept-encoding", "gzip")
            .body(Empty::<Bytes>::new())
            .expect("valid request")
    };
    for attempt in 1..=6 {
        let response = client.request(get("/api/v1/sessions")).await?;
        report(attempt, address, &response);
    }
    let scrape = client.request(get("/metrics")).await?;
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = String::from_utf8(scrape.into_body().collect().await?.to_bytes().to_vec())?;
    println!("\n/metrics (request counters):");
    for line in text
        .lines()
        .filter(|line| line.starts_with("pocwhisp_http_requests_total"))
    {
        println!("    {line}");
    }
    server.abort();
    Ok(())
}

fn report(attempt: u32, address: SocketAddr, response: &Response<Incoming>) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "request {attempt} to {address}: {}, remaining {}, retry-after {}, id {}",
        response.status(),
        header("ratelimit-remaining"),
        header("retry-after"),
        header("x-request-id"),
    );
}
