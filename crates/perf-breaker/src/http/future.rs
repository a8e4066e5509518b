use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;

use crate::classify::Classify;
use crate::error::CircuitOpen;
use crate::permit::OwnedPermit;
use crate::service::Guarded;

pin_project! {
    /// Response future of [`HttpCircuitBreaker`](super::HttpCircuitBreaker).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Admitted { #[pin] call: Guarded<F, C> },
        Rejected { open: Option<CircuitOpen> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn admitted(future: F, permit: OwnedPermit, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Admitted {
                call: Guarded::new(future, permit, classify),
            },
        }
    }

    pub(crate) fn rejected(open: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { open: Some(open) },
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Classify<Response<B>, E>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { call } => call.poll(cx),
            KindProj::Rejected { open } => {
                let open = open.take().expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(unavailable(&open)))
            }
        }
    }
}

/// `503 Service Unavailable` with `Retry-After` in whole seconds, rounded up and at least 1
/// (0 would invite an immediate retry into the same open circuit).
fn unavailable<B: Default>(open: &CircuitOpen) -> Response<B> {
    let retry_after = open.retry_after();
    let seconds = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
