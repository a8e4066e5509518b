use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::ShedPermit;
use crate::clock::{Clock, FastClock};
use crate::response;

pin_project! {
    /// Response future of [`LoadShed`](super::LoadShed): the inner response, or `503` with
    /// `Retry-After` for a refused request. The request's slot is held until this future
    /// completes or is dropped.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C: Clock = FastClock> {
        #[pin]
        inner: Option<F>,
        permit: Option<ShedPermit<C>>,
        retry_after: Duration,
    }
}

impl<F, C: Clock> ResponseFuture<F, C> {
    pub(crate) fn admitted(future: F, permit: ShedPermit<C>) -> Self {
        ResponseFuture {
            inner: Some(future),
            permit: Some(permit),
            retry_after: Duration::ZERO,
        }
    }

    pub(crate) fn shed(retry_after: Duration) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            retry_after,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Clock,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.as_pin_mut() {
            Some(inner) => {
                let result = ready!(inner.poll(cx));
                // Release now, not when the caller drops the future: the latency sample ends
                // here.
                this.permit.take();
                Poll::Ready(result)
            }
            None => Poll::Ready(Ok(response::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                *this.retry_after,
            ))),
        }
    }
}
