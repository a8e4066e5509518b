//! Serving: hyper-util's connection builder (HTTP/1.1 and h2c on one port) over a tokio
//! listener, with a header-read timeout (from the accept: [`SniffDeadline`]), keep-alive, a
//! bound on open connections in all and per client ([`ClientConnections`]), and a graceful
//! shutdown that stops accepting, lets requests in flight finish within the drain time,
//! then returns.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
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

use super::client_connections::ClientConnections;
use super::sniff_deadline::SniffDeadline;
use crate::config::ServerConfig;

/// Whether `request` is HTTP/1 with a body (HTTP/2 streams end on their own and forbid
/// `Connection`).
fn sends_a_body(request: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    request.version() <= http::Version::HTTP_11 && !request.body().is_end_stream()
}

/// Calls a connection's own copy of the stack in place when it is ready (every layer of this
/// server's stack always is), else a clone of it once ready.
///
/// hyper calls a connection's service through `&self`, from that connection's task and one
/// call at a time, where tower's services take `&mut self` after readiness. The usual bridge,
/// `service.clone().oneshot(request)`, clones the whole stack for every request: an
/// allocation for its boxed part and an atomic increment and decrement on each shared part,
/// whose cache lines then bounce between the cores serving other connections.
fn call_in_place<S, R>(
    service: &RefCell<S>,
    request: R,
) -> Result<S::Future, tower::util::Oneshot<S, R>>
where
    S: Service<R> + Clone,
{
    let mut service = service.borrow_mut();
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(())) => Ok(service.call(request)),
        // Not ready, or failing: the clone polls again, properly, and reports the error.
        _ => Err(service.clone().oneshot(request)),
    }
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
    let per_client = (config.max_connections_per_client > 0)
        .then(|| ClientConnections::new(config.max_connections_per_client));
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
        let client_slot = match &per_client {
            Some(per_client) => match per_client.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    // Closed at once: held open, it would be what the cap is there to stop.
                    metrics::counter!("pocwhisp_connections_refused_total").increment(1);
                    tracing::debug!(%peer, "connection closed: its client holds max_connections_per_client");
                    continue;
                }
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let service = RefCell::new(service.clone());
        let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(PeerAddr(peer));
            let sent_a_body = sends_a_body(&request);
            let answer = call_in_place(&service, request);
            async move {
                let mut response = match answer {
                    Ok(in_place) => in_place.await?,
                    Err(cloned) => cloned.await?,
                };
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
        // hyper's header-read timeout begins once the protocol is known; until then, this
        // deadline holds from the accept.
        let stream = SniffDeadline::new(stream, config.header_read_timeout);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), hyper_service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(client_slot);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers 200 to everything and counts its clones; not ready for its first
    /// `not_ready` polls (waking the caller, as a service that will be ready soon does).
    #[derive(Debug)]
    struct Counted {
        clones: Arc<AtomicUsize>,
        not_ready: Arc<AtomicUsize>,
    }

    impl Counted {
        fn new(clones: &Arc<AtomicUsize>, not_ready: usize) -> Self {
            Counted {
                clones: Arc::clone(clones),
                not_ready: Arc::new(AtomicUsize::new(not_ready)),
            }
        }
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            self.clones.fetch_add(1, Ordering::Relaxed);
            Counted {
                clones: Arc::clone(&self.clones),
                not_ready: Arc::clone(&self.not_ready),
            }
        }
    }

    impl Service<Request<Incoming>> for Counted {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            let not_ready = self.not_ready.load(Ordering::Relaxed);
            if not_ready > 0 {
                self.not_ready.store(not_ready - 1, Ordering::Relaxed);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Incoming>) -> Self::Future {
            std::future::ready(Ok(Response::new(Body::empty())))
        }
    }

    /// Serves `service` and sends `requests` GETs on one connection; returns how many 200s
    /// came back.
    async fn answers_on_one_connection(service: Counted, requests: usize) -> usize {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ServerConfig::default();
        let server = tokio::spawn(async move {
            serve(listener, service, &config, async {
                let _ = stopped.await;
            })
            .await;
        });
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
        let mut answered = String::new();
        for n in 1..=requests {
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buffer = [0u8; 1024];
            while answered.matches("HTTP/1.1 200").count() < n {
                let read = stream.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the connection closed: {answered}");
                answered.push_str(std::str::from_utf8(&buffer[..read]).unwrap());
            }
        }
        drop(stream);
        stop.send(()).unwrap();
        server.await.unwrap();
        answered.matches("HTTP/1.1 200").count()
    }

    #[tokio::test]
    async fn a_connection_clones_the_stack_once_not_per_request() {
        let clones = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            answers_on_one_connection(Counted::new(&clones, 0), 5).await,
            5
        );
        assert_eq!(
            clones.load(Ordering::Relaxed),
            1,
            "five requests, one connection"
        );
    }

    #[tokio::test]
    async fn a_stack_not_ready_in_place_answers_through_a_clone_polled_until_ready() {
        let clones = Arc::new(AtomicUsize::new(0));
        // Not ready for the poll in place and for the clone's first poll. Bounded: a request
        // left waiting on the in-place poll's no-op waker would never be answered.
        let answered = tokio::time::timeout(
            Duration::from_secs(10),
            answers_on_one_connection(Counted::new(&clones, 2), 2),
        )
        .await
        .expect("both requests answered");
        assert_eq!(answered, 2);
        assert_eq!(
            clones.load(Ordering::Relaxed),
            2,
            "the connection's copy, and one clone for the request it was not ready for"
        );
    }
}
