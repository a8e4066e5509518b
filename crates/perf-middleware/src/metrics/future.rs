use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use metrics::{Label, SharedString};
use pin_project_lite::pin_project;

use super::CountedBody;
use super::labels;
use super::layer::Shared;
use crate::clock::{Clock, FastClock};

/// Counts one request in flight until dropped, so a cancelled request leaves the gauge too.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl InFlight {
    pub(crate) fn enter(shared: Arc<Shared>) -> Self {
        metrics::gauge!(shared.in_flight.clone()).increment(1.0);
        InFlight { shared }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(self.shared.in_flight.clone()).decrement(1.0);
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
        method: SharedString,
        route: SharedString,
        request_bytes: Option<u64>,
    }
}

impl<F, C: Clock> ResponseFuture<F, C> {
    pub(crate) fn new(
        inner: F,
        in_flight: InFlight,
        clock: C,
        method: SharedString,
        route: SharedString,
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
        let status = match &result {
            Ok(response) => labels::status(response.status()),
            Err(_) => SharedString::const_str("error"),
        };
        let by_route = vec![
            Label::new("method", this.method.clone()),
            Label::new("route", this.route.clone()),
        ];
        let mut by_status = by_route.clone();
        by_status.push(Label::new("status", status));
        metrics::counter!(shared.requests.clone(), by_status.clone()).increment(1);
        metrics::histogram!(shared.duration.clone(), by_status.clone())
            .record(elapsed as f64 / 1e9);
        if let Some(bytes) = this.request_bytes {
            metrics::counter!(shared.request_bytes.clone(), by_route).increment(*bytes);
        }
        let response_bytes = metrics::counter!(shared.response_bytes.clone(), by_status);
        drop(in_flight);
        Poll::Ready(
            result.map(|response| response.map(|body| CountedBody::new(body, response_bytes))),
        )
    }
}
