use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::{Answer, RejectWithError};
use crate::classify::Classify;
use crate::error::CircuitOpen;
use crate::permit::OwnedPermit;

pin_project! {
    /// Response future of [`Breaker`](super::Breaker).
    ///
    /// For an admitted call it runs the inner future and records the classified outcome when
    /// it completes; if the future is dropped first, the permit's drop counts the call as
    /// cancelled (and gives back a half-open probe slot).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C, A = RejectWithError> {
        #[pin]
        kind: Kind<F, C, A>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C, A> {
        Admitted {
            #[pin]
            future: F,
            guard: Option<(OwnedPermit, C)>,
            answer: PhantomData<fn() -> A>,
        },
        Rejected {
            open: Option<CircuitOpen>,
            answer: A,
        },
    }
}

impl<F, C, A> ResponseFuture<F, C, A> {
    pub(crate) fn admitted(future: F, permit: OwnedPermit, classify: C) -> Self {
        ResponseFuture {
            kind: Kind::Admitted {
                future,
                guard: Some((permit, classify)),
                answer: PhantomData,
            },
        }
    }

    pub(crate) fn rejected(open: CircuitOpen, answer: A) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                open: Some(open),
                answer,
            },
        }
    }
}

impl<F, C, A, T, E> Future for ResponseFuture<F, C, A>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    A: Answer<T, E>,
{
    type Output = Result<A::Response, A::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Admitted { future, guard, .. } => {
                let result = ready!(future.poll(cx));
                if let Some((permit, classify)) = guard.take() {
                    permit.record(classify.is_failure(&result));
                }
                Poll::Ready(A::admitted(result))
            }
            KindProj::Rejected { open, answer } => {
                let open = open.take().expect("ResponseFuture polled after completion");
                Poll::Ready(answer.rejected(open))
            }
        }
    }
}
