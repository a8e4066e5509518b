//! `Server-Timing` on request: a client that sends `X-Trace: true`, and that the exposure
//! policy allows, gets the time the request took (`total`) and the stages the application
//! recorded (`db`, `engine`, `cache`...).
//!
//! Stage timings tell a client how long the server spent where: a timing oracle (did the
//! cache hold this? did the token lookup find a row?). So exposure is a policy, and off
//! until chosen: [`ServerTimingLayer::expose_when`] gives them to requests a predicate
//! allows (an admin identity an authentication layer put in the extensions, say), and
//! [`ServerTimingLayer::expose_to_all`] to anyone who asks, for services where timings are
//! no secret.
//!
//! The layer puts a [`Timings`] in the request's extensions only for traced requests it
//! exposes to; application code records stages into it and skips the work otherwise.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use perf_middleware::server_timing::{ServerTimingLayer, Timings};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(ServerTimingLayer::new().expose_when(|head| head.headers.contains_key("x-admin")))
//!     .service(service_fn(|request: Request<()>| async move {
//!         let timings = Timings::of(&request);
//!         let db = timings.as_ref().map(|t| t.start("db"));
//!         tokio::time::sleep(Duration::from_millis(12)).await;
//!         drop(db);
//!         Ok::<_, Infallible>(Response::new(()))
//!     }));
//!
//! let traced = Request::get("/").header("x-trace", "true").header("x-admin", "1").body(()).unwrap();
//! let response = service.ready().await.unwrap().call(traced).await.unwrap();
//! assert_eq!(response.headers()["server-timing"], "db;dur=12.000, total;dur=12.000");
//!
//! let stranger = Request::get("/").header("x-trace", "true").body(()).unwrap();
//! let response = service.ready().await.unwrap().call(stranger).await.unwrap();
//! assert!(response.headers().get("server-timing").is_none());
//!
//! let plain = service.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! assert!(plain.headers().get("server-timing").is_none());
//! # }
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use perf_core::RequestHead;
use perf_core::sync::lock;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
const X_TRACE: HeaderName = HeaderName::from_static("x-trace");

/// A stage's name and how long it took.
type StageTime = (Cow<'static, str>, Duration);

/// The stages recorded for one traced request. Cloning shares the record.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    stages: Arc<Mutex<Vec<StageTime>>>,
}

impl Timings {
    /// The timings of `request`, if it is traced.
    pub fn of<B>(request: &Request<B>) -> Option<Timings> {
        request.extensions().get::<Timings>().cloned()
    }

    /// Records that stage `name` took `duration`. A stage recorded twice appears twice.
    pub fn record(&self, name: impl Into<Cow<'static, str>>, duration: Duration) {
        lock(&self.stages).push((name.into(), duration));
    }

    /// Starts timing stage `name`; the stage is recorded when the guard drops.
    pub fn start(&self, name: impl Into<Cow<'static, str>>) -> Stage {
        Stage {
            timings: self.clone(),
            name: Some(name.into()),
            started: Instant::now(),
        }
    }

    /// The stages recorded so far, in order.
    pub fn stages(&self) -> Vec<(String, Duration)> {
        lock(&self.stages)
            .iter()
            .map(|(name, duration)| (name.to_string(), *duration))
            .collect()
    }

    /// The header value: each stage, then `total`.
    fn header(&self, total: Duration) -> Option<HeaderValue> {
        let mut value = String::new();
        for (name, duration) in self.stages() {
            push_metric(&mut value, &name, duration);
        }
        push_metric(&mut value, "total", total);
        HeaderValue::try_from(value).ok()
    }
}

fn push_metric(value: &mut String, name: &str, duration: Duration) {
    if !value.is_empty() {
        value.push_str(", ");
    }
    // A metric name is an HTTP token; anything else would make the header unparsable.
    value.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
            c
        } else {
            '_'
        }
    }));
    let _ = write!(value, ";dur={:.3}", duration.as_secs_f64() * 1000.0);
}

/// A stage being timed; records itself on drop.
#[derive(Debug)]
#[must_use = "the stage is recorded when this guard drops"]
pub struct Stage {
    timings: Timings,
    name: Option<Cow<'static, str>>,
    started: Instant,
}

impl Stage {
    /// Ends the stage now.
    pub fn finish(self) {}
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            self.timings.record(name, self.started.elapsed());
        }
    }
}

type ExposeFn = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;

/// Who gets `Server-Timing`.
#[derive(Clone, Default)]
enum Exposure {
    /// Nobody: the layer is inert.
    #[default]
    Nobody,
    /// Every request sent with `X-Trace: true`.
    Everyone,
    /// Requests sent with `X-Trace: true` that the predicate allows.
    When(ExposeFn),
}

impl fmt::Debug for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exposure::Nobody => "Nobody",
            Exposure::Everyone => "Everyone",
            Exposure::When(_) => "When(..)",
        })
    }
}

/// Adds `Server-Timing` to responses of requests sent with `X-Trace: true` that its
/// exposure policy allows; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct ServerTimingLayer {
    exposure: Exposure,
}

impl ServerTimingLayer {
    /// The layer, exposing timings to nobody until told otherwise.
    pub const fn new() -> Self {
        ServerTimingLayer {
            exposure: Exposure::Nobody,
        }
    }

    /// Exposes timings to every request sent with `X-Trace: true`.
    #[must_use]
    pub fn expose_to_all(mut self) -> Self {
        self.exposure = Exposure::Everyone;
        self
    }

    /// Exposes timings to requests sent with `X-Trace: true` for which `allow` is true.
    #[must_use]
    pub fn expose_when<F>(mut self, allow: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.exposure = Exposure::When(Arc::new(allow));
        self
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTiming<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTiming {
            inner,
            exposure: self.exposure.clone(),
        }
    }
}

/// A service adding `Server-Timing`; built by [`ServerTimingLayer`].
#[derive(Debug, Clone)]
pub struct ServerTiming<S> {
    inner: S,
    exposure: Exposure,
}

impl<S> ServerTiming<S> {
    /// Adds `Server-Timing` to `inner`'s responses as `layer` says.
    pub fn new(inner: S, layer: &ServerTimingLayer) -> Self {
        layer.layer(inner)
    }

    /// A layer exposing timings to nobody until told otherwise.
    pub fn layer() -> ServerTimingLayer {
        ServerTimingLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn is_traced(value: &HeaderValue) -> bool {
    let value = value.as_bytes();
    value.eq_ignore_ascii_case(b"true") || value == b"1"
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerTiming<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let asked = request.headers().get(X_TRACE).is_some_and(is_traced);
        let exposed = asked
            && match &self.exposure {
                Exposure::Nobody => false,
                Exposure::Everyone => true,
                Exposure::When(allow) => allow(&RequestHead::of(&request)),
            };
        let trace = exposed.then(|| {
            let timings = Timings::default();
            request.extensions_mut().insert(timings.clone());
            (timings, Instant::now())
        });
        ResponseFuture {
            inner: self.inner.call(request),
            trace,
        }
    }
}

pin_project! {
    /// Response future of [`ServerTiming`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        trace: Option<(Timings, Instant)>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((timings, started)) = this.trace.take()
            && let Some(value) = timings.header(started.elapsed())
        {
            response.headers_mut().append(SERVER_TIMING, value);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_made_into_tokens() {
        let timings = Timings::default();
        timings.record("db query", Duration::from_micros(1500));
        timings.record(String::from("cache"), Duration::ZERO);
        let header = timings.header(Duration::from_millis(2)).unwrap();
        assert_eq!(
            header,
            "db_query;dur=1.500, cache;dur=0.000, total;dur=2.000"
        );
    }
}
