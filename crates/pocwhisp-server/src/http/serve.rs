//! Serving: hyper-util's connection builder (HTTP/1.1 and h2c on one port) over a tokio
//! listener, with a header-read timeout, keep-alive, a bound on open connections, and a
//! graceful shutdown that stops accepting, lets requests in flight finish within the drain
//! time, then returns.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use perf_middleware::rate_limit::PeerAddr;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

use crate::config::ServerConfig;

/// Whether `request` is HTTP/1 with a body (HTTP/2 streams end on their own and forbid
/// `Connection`).
fn sends_a_body(request: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    request.version() <= http::Version::HTTP_11 && !request.body().is_end_stream()
}

/// Runs the accept loop on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.as_usize())
        .keep_alive(config.keep_alive);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes.0).unwrap_or(u32::MAX))
        .keep_alive_interval(config.keep_alive.then_some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the bound, stop accepting: new clients wait in the kernel's backlog instead of
        // every open connection slowing down.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
            () = shutdown.as_mut() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: back off rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let sent_a_body = sends_a_body(&request);
            let answer = service.clone().oneshot(request);
            async move {
                let mut response = answer.await?;
                // A refusal (429, 413, 503 on an upload) may come before the body was read;
                // hyper then closes the connection, and a client reusing it would fail its
                // next request. Saying so lets it open a new one.
                let status = response.status();
                if sent_a_body && (status.is_client_error() || status.is_server_error()) {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), hyper_service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(drain = ?config.drain_timeout, "stopped accepting; draining requests in flight");
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the drain time; closing them");
    }
}
