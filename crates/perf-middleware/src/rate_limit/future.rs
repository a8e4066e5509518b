use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::Decision;
use crate::response;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): the inner response with the
    /// rate-limit headers added, or a `429` when the key is over its quota.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        decision: Decision,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn allowed(future: F, decision: Decision) -> Self {
        ResponseFuture {
            inner: Some(future),
            decision,
        }
    }

    pub(crate) fn limited(decision: Decision) -> Self {
        ResponseFuture {
            inner: None,
            decision,
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
        insert_headers(response.headers_mut(), this.decision);
        Poll::Ready(Ok(response))
    }
}

const LIMIT: [&str; 2] = ["ratelimit-limit", "x-ratelimit-limit"];
const REMAINING: [&str; 2] = ["ratelimit-remaining", "x-ratelimit-remaining"];
const RESET: [&str; 2] = ["ratelimit-reset", "x-ratelimit-reset"];

/// The IETF `RateLimit-*` fields and the `X-RateLimit-*` names the original server sent.
fn insert_headers(headers: &mut HeaderMap, decision: &Decision) {
    let fields = [
        (LIMIT, u64::from(decision.limit())),
        (REMAINING, u64::from(decision.remaining())),
        (RESET, response::ceil_seconds(decision.reset())),
    ];
    for (names, value) in fields {
        for name in names {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}
