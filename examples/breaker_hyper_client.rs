//! The generic circuit-breaker layer around a hyper client.
//!
//! A local upstream (a plain hyper server on 127.0.0.1, port chosen by the OS) answers 503
//! to its first three requests, then recovers. The client is a `hyper_util` legacy client
//! wrapped in `BreakerLayer` with a classifier that counts 5xx responses as failures.
//! After two failures the breaker opens and calls fail fast with `CircuitOpen`, without a
//! request on the wire. The first probe still meets the failing upstream and reopens the
//! circuit for a longer (backed-off) period; the next probe succeeds and closes it.
//!
//! Run: `cargo run -p pocwhisp-examples --example breaker_hyper_client`

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use perf_breaker::{BreakerLayer, CircuitBreaker, CircuitOpen, HttpClassifier};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Serves until the process ends: 503 for the first three requests, 200 after.
async fn flaky_upstream(listener: TcpListener, served: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let served = Arc::clone(&served);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                let status = if served.fetch_add(1, Ordering::SeqCst) < 3 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .body(Empty::<Bytes>::new())
                            .expect("valid response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// 5xx responses and transport errors are failures; 4xx are not.
fn upstream_failed(result: &Result<Response<Incoming>, ClientError>) -> bool {
    result.as_ref().map_or(true, |response| {
        HttpClassifier::is_failure_status(response.status())
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(flaky_upstream(listener, Arc::clone(&served)));

    let breaker = CircuitBreaker::builder()
        .name("upstream")
        .failure_threshold(2)
        .open_duration(Duration::from_millis(300))
        .on_transition(|t| println!("    breaker: {} -> {} ({})", t.from, t.to, t.reason))
        .build()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut upstream = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()).classifier(upstream_failed))
        .service(client);

    let mut attempts = 0;
    // Bounded: the breaker closes within about a second, far below 20 attempts.
    while attempts < 20 {
        attempts += 1;
        let request = Request::get(format!("http://{address}/")).body(Empty::<Bytes>::new())?;
        match upstream.ready().await?.call(request).await {
            Ok(response) => {
                println!(
                    "attempt {attempts}: upstream answered {}",
                    response.status()
                );
                if response.status().is_success() {
                    break;
                }
            }
            Err(error) => match error.downcast_ref::<CircuitOpen>() {
                Some(open) => println!(
                    "attempt {attempts}: rejected locally, retry in {:?}",
                    open.retry_after()
                ),
                None => println!("attempt {attempts}: transport error: {error}"),
            },
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!(
        "upstream saw {} requests for {attempts} attempts; {:?}",
        served.load(Ordering::SeqCst),
        breaker.stats()
    );
    Ok(())
}
