use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use metrics::SharedString;
use pin_project_lite::pin_project;

use super::CountedBody;
use super::handles::LabelSet;
use super::labels::{self, RouteTemplate};
use super::layer::Shared;
use crate::clock::{Clock, FastClock};

/// Counts one request in flight until dropped, so a cancelled request leaves the gauge too.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    pub(crate) fn enter(shared: Arc<Shared>) -> Self {
        shared.handles.in_flight().increment(1.0);
        InFlight { shared }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.handles.in_flight().decrement(1.0);
    }
}

pin_project! {
    /// Response future of [`RequestMetrics`](super::RequestMetrics).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C = FastClock> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
        clock: C,
        started_ns: u64,
        method: (u8, SharedString),
        route: Option<Cow<'static, str>>,
        request_bytes: Option<u64>,
    }
}

impl<F, C: Clock> ResponseFuture<F, C> {
    pub(crate) fn new(
        inner: F,
        in_flight: InFlight,
        clock: C,
        method: (u8, SharedString),
        route: Option<Cow<'static, str>>,
        request_bytes: Option<u64>,
    ) -> Self {
        ResponseFuture {
            inner,
            in_flight: Some(in_flight),
            started_ns: clock.now_nanos(),
            clock,
            method,
            route,
            request_bytes,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Clock,
{
    type Output = Result<Response<CountedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let elapsed = this.clock.now_nanos().saturating_sub(*this.started_ns);
        let Some(in_flight) = this.in_flight.take() else {
            panic!("ResponseFuture polled after completion");
        };
        let shared = &in_flight.shared;
        let handles = &shared.handles;
        // A router that resolves routes inside itself can only say which route it took on
        // the way out: the response's `RouteTemplate` is used when the request had none.
        let route = this.route.take().or_else(|| {
            result.as_ref().ok().and_then(|response| {
                response
                    .extensions()
                    .get::<RouteTemplate>()
                    .map(|template| template.0.clone())
            })
        });
        let labels = LabelSet {
            method: this.method.clone(),
            route: shared.routes.label(route),
        };
        let status = match &result {
            Ok(response) => (
                response.status().as_u16(),
                labels::status(response.status()),
            ),
            Err(_) => (0, SharedString::const_str("error")),
        };
        let response_bytes = handles.with(&labels, status, |handles| {
            handles.requests.increment(1);
            handles.duration.record(elapsed as f64 / 1e9);
            handles.response_bytes.clone()
        });
        if let Some(bytes) = this.request_bytes {
            handles.request_bytes(&labels, *bytes);
        }
        drop(in_flight);
        Poll::Ready(
            result.map(|response| response.map(|body| CountedBody::new(body, response_bytes))),
        )
    }
}
