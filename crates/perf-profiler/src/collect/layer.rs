//! A tower layer that feeds a [`LatencyRecorder`] with every HTTP request: its latency to
//! the response head, and whether it failed (an inner error or a 5xx).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{LatencyRecorder, RequestTimer};

/// Records every request's latency into a [`LatencyRecorder`]: the time to the response
/// head, and whether it failed (an inner error or a 5xx).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use perf_profiler::collect::{LatencyLayer, LatencyRecorder};
/// use perf_profiler::snapshot::{Snapshot, names};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// let recorder = LatencyRecorder::new(Duration::from_secs(60));
/// let mut service = ServiceBuilder::new()
///     .layer(LatencyLayer::new(recorder.clone()))
///     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) }));
/// service.ready().await.unwrap().call(Request::new(())).await.unwrap();
/// let mut snapshot = Snapshot::at(std::time::SystemTime::now());
/// recorder.collect(&mut snapshot);
/// assert_eq!(snapshot.get(names::ERROR_RATE), Some(0.0));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LatencyLayer {
    recorder: LatencyRecorder,
}

impl LatencyLayer {
    /// Feeds `recorder`.
    pub fn new(recorder: LatencyRecorder) -> Self {
        LatencyLayer { recorder }
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Latency::new(inner, self.recorder.clone())
    }
}

/// A service whose requests are timed; built by [`LatencyLayer`].
#[derive(Debug, Clone)]
pub struct Latency<S> {
    inner: S,
    recorder: LatencyRecorder,
}

impl<S> Latency<S> {
    /// Times `inner`'s requests into `recorder`.
    pub fn new(inner: S, recorder: LatencyRecorder) -> Self {
        Latency { inner, recorder }
    }

    /// A layer doing the same.
    pub fn layer(recorder: LatencyRecorder) -> LatencyLayer {
        LatencyLayer::new(recorder)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Latency<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            timer: Some(self.recorder.start()),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Response future of [`Latency`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        timer: Option<RequestTimer>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(timer) = this.timer.take() {
            let failed = result
                .as_ref()
                .map_or(true, |response| response.status().is_server_error());
            timer.finish(failed);
        }
        Poll::Ready(result)
    }
}
