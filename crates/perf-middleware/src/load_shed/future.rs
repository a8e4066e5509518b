use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::Sleep;

use super::ShedPermit;
use super::shedder::{Admission, QueueTicket};
use crate::clock::{Clock, FastClock};
use crate::response;

pin_project! {
    /// Response future of [`LoadShed`](super::LoadShed): the inner response, or `503` with
    /// `Retry-After` for a refused request. An admitted request holds its slot until this
    /// future completes or is dropped; a queued one waits here, its inner future unpolled,
    /// until a slot frees or the queue timeout passes.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C: Clock = FastClock> {
        #[pin]
        inner: Option<F>,
        permit: Option<ShedPermit<C>>,
        #[pin]
        queued: Option<Queued<C>>,
        retry_after: Duration,
    }
}

pin_project! {
    #[derive(Debug)]
    struct Queued<C: Clock> {
        ticket: Option<QueueTicket<C>>,
        #[pin]
        released: OwnedNotified,
        #[pin]
        deadline: Sleep,
    }
}

impl<F, C: Clock> ResponseFuture<F, C> {
    pub(crate) fn shed(retry_after: Duration) -> Self {
        ResponseFuture {
            inner: None,
            permit: None,
            queued: None,
            retry_after,
        }
    }

    pub(crate) fn new(future: F, admission: Admission<C>, retry_after: Duration) -> Self {
        match admission {
            Admission::Admitted(permit) => ResponseFuture {
                inner: Some(future),
                permit: Some(permit),
                queued: None,
                retry_after,
            },
            Admission::Queued(ticket) => ResponseFuture {
                inner: Some(future),
                permit: None,
                queued: Some(Queued {
                    released: ticket.released(),
                    deadline: tokio::time::sleep(ticket.timeout()),
                    ticket: Some(ticket),
                }),
                retry_after,
            },
            Admission::Shed => ResponseFuture::shed(retry_after),
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
        let mut this = self.project();
        while let Some(mut queued) = this.queued.as_mut().as_pin_mut() {
            let mut wait = queued.as_mut().project();
            // Register for the next release before looking for a slot, so a release in
            // between is not missed.
            wait.released.as_mut().enable();
            let ticket = wait.ticket.as_ref().expect("a queued request has a ticket");
            if let Some(permit) = ticket.try_acquire() {
                *this.permit = Some(permit);
                this.queued.set(None);
                break;
            }
            if wait.deadline.as_mut().poll(cx).is_ready() {
                let ticket = wait.ticket.take().expect("a queued request has a ticket");
                *this.retry_after = ticket.expire();
                this.queued.set(None);
                this.inner.set(None);
                break;
            }
            ready!(wait.released.as_mut().poll(cx));
            // Someone else may take the released slot first: wait for the next release.
            let released = wait
                .ticket
                .as_ref()
                .expect("a queued request has a ticket")
                .released();
            wait.released.set(released);
        }
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
