//! The generic layer's response future, and the guard future shared with the HTTP layer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::BoxError;
use crate::classify::Classify;
use crate::error::CircuitOpen;
use crate::permit::OwnedPermit;

pin_project! {
    /// Runs an admitted call and records its classified outcome on completion. If the future
    /// is dropped first, the permit's drop counts the call as cancelled.
    #[derive(Debug)]
    pub(crate) struct Guarded<F, C> {
        #[pin]
        future: F,
        guard: Option<(OwnedPermit, C)>,
    }
}

impl<F, C> Guarded<F, C> {
    pub(crate) fn new(future: F, permit: OwnedPermit, classify: C) -> Self {
        Guarded {
            future,
            guard: Some((permit, classify)),
        }
    }
}

impl<F, C, T, E> Future for Guarded<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if let Some((permit, classify)) = this.guard.take() {
            permit.record(classify.is_failure(&result));
        }
        Poll::Ready(result)
    }
}

pin_project! {
    /// Response future of [`CircuitBreakerService`](super::CircuitBreakerService).
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

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { call } => call.poll(cx).map_err(Into::into),
            KindProj::Rejected { open } => Poll::Ready(Err(open
                .take()
                .expect("ResponseFuture polled after completion")
                .into())),
        }
    }
}
