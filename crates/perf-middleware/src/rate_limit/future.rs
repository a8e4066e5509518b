use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::{Decision, RateLimitHeaders};
use crate::response;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): the inner response with the
    /// rate-limit headers added, or a `429` when the key is over its quota.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        decision: Decision,
        headers: RateLimitHeaders,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn allowed(future: F, decision: Decision, headers: RateLimitHeaders) -> Self {
        ResponseFuture {
            inner: Some(future),
            decision,
            headers,
        }
    }

    pub(crate) fn limited(decision: Decision, headers: RateLimitHeaders) -> Self {
        ResponseFuture {
            inner: None,
            decision,
            headers,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.as_pin_mut() {
            Some(inner) => ready!(inner.poll(cx))?,
            None => {
                response::retry_later(StatusCode::TOO_MANY_REQUESTS, this.decision.retry_after())
            }
        };
        this.headers.write(response.headers_mut(), this.decision);
        Poll::Ready(Ok(response))
    }
}
