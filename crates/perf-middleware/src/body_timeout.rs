//! A pace request bodies must keep, so that a client dripping its body cannot hold a
//! connection, a load-shedding slot and a handler for ever.
//!
//! Each request body is wrapped in a [`TimedBody`]: from the first time the service reads
//! it, the body has `grace` to deliver its first bytes, and every byte it delivers earns it
//! `1 / min_rate` of a second more. A body that falls behind that schedule fails with a
//! [`BodyTimeoutError`] (which the service reading it turns into its own 408). A large upload
//! at a good pace is never cut, however long it takes; one byte every few seconds is cut
//! after `grace`.
//!
//! The timer is armed only when the body keeps the reader waiting, so bodies that are
//! empty or already buffered cost no timer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::convert::Infallible;
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body::{Body, Frame};
//! use http_body_util::BodyExt;
//! use perf_middleware::body_timeout::{BodyTimeoutError, TimedBody};
//!
//! /// A client that sent its headers and then nothing.
//! struct Silent;
//!
//! impl Body for Silent {
//!     type Data = Bytes;
//!     type Error = Infallible;
//!
//!     fn poll_frame(
//!         self: Pin<&mut Self>,
//!         _: &mut Context<'_>,
//!     ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
//!         Poll::Pending
//!     }
//! }
//!
//! let mut body = TimedBody::new(Silent, Duration::from_secs(10), 1024);
//! let error = body.frame().await.unwrap().unwrap_err();
//! assert!(error.is::<BodyTimeoutError>());
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;

/// A body that fell behind its schedule: nothing within the grace, or fewer bytes since
/// than the minimum rate asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeoutError {
    /// Bytes the body had delivered when it was cut.
    pub received: u64,
}

impl fmt::Display for BodyTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body came too slowly (cut after {} bytes)",
            self.received
        )
    }
}

impl std::error::Error for BodyTimeoutError {}

pin_project! {
    /// A body held to a pace; see the [module docs](self).
    #[derive(Debug)]
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        grace: Duration,
        min_rate: u64,
        received: u64,
        started: Option<Instant>,
        // Armed only when the inner body keeps the reader waiting.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> TimedBody<B> {
    /// `inner`, which must deliver its first bytes within `grace` of its first read and
    /// then at least `min_rate` bytes per second on average (0: no rate, the grace alone).
    pub fn new(inner: B, grace: Duration, min_rate: u64) -> Self {
        TimedBody {
            inner,
            grace,
            min_rate,
            received: 0,
            started: None,
            timer: None,
        }
    }
}

/// When a body that started at `started` and has delivered `received` bytes falls behind.
fn deadline(started: Instant, grace: Duration, min_rate: u64, received: u64) -> Instant {
    let earned = match min_rate {
        0 => Duration::ZERO,
        rate => Duration::from_secs_f64(received as f64 / rate as f64),
    };
    started + grace + earned
}

impl<B> Body for TimedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let started = *this.started.get_or_insert_with(Instant::now);
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.remaining() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = || deadline(started, *this.grace, *this.min_rate, *this.received);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due())));
                // The timer is not moved with every frame: when it fires, the bytes that
                // came since it was set say whether the body is behind or when to look again.
                loop {
                    ready!(timer.as_mut().poll(cx));
                    let due = due();
                    if due <= Instant::now() {
                        return Poll::Ready(Some(Err(BodyTimeoutError {
                            received: *this.received,
                        }
                        .into())));
                    }
                    timer.as_mut().reset(due);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Holds request bodies to a pace; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeoutLayer {
    grace: Duration,
    min_rate: u64,
}

impl BodyTimeoutLayer {
    /// Bodies must start within `grace` of their first read, then deliver at least
    /// `min_rate` bytes per second on average (0: the grace alone).
    pub const fn new(grace: Duration, min_rate: u64) -> Self {
        BodyTimeoutLayer { grace, min_rate }
    }
}

impl<S> Layer<S> for BodyTimeoutLayer {
    type Service = BodyTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyTimeout {
            inner,
            layer: *self,
        }
    }
}

/// A service whose request bodies keep a pace; built by [`BodyTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct BodyTimeout<S> {
    inner: S,
    layer: BodyTimeoutLayer,
}

impl<S> BodyTimeout<S> {
    /// `inner`, its request bodies held to `grace` and `min_rate` (see [`BodyTimeoutLayer::new`]).
    pub const fn new(inner: S, grace: Duration, min_rate: u64) -> Self {
        BodyTimeout {
            inner,
            layer: BodyTimeoutLayer::new(grace, min_rate),
        }
    }

    /// A layer doing the same.
    pub const fn layer(grace: Duration, min_rate: u64) -> BodyTimeoutLayer {
        BodyTimeoutLayer::new(grace, min_rate)
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

impl<S, B> Service<Request<B>> for BodyTimeout<S>
where
    S: Service<Request<TimedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let BodyTimeoutLayer { grace, min_rate } = self.layer;
        self.inner
            .call(request.map(|body| TimedBody::new(body, grace, min_rate)))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// A body fed by hand: each message is one frame.
    struct Fed(mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|bytes| bytes.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn fed(grace: u64, min_rate: u64) -> (mpsc::UnboundedSender<Bytes>, TimedBody<Fed>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let body = TimedBody::new(Fed(receiver), Duration::from_secs(grace), min_rate);
        (sender, body)
    }

    /// Sends `bytes` after `after` of the paused clock.
    fn later(sender: &mpsc::UnboundedSender<Bytes>, after: Duration, bytes: usize) {
        let sender = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = sender.send(Bytes::from(vec![0; bytes]));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_pace_is_read_to_its_end_however_long_it_takes() {
        let (sender, mut body) = fed(10, 1000);
        // 4,000 bytes every 3 s is faster than 1,000 per second: each frame earns a second
        // more than it took, for a minute and a half.
        for round in 1..=30 {
            later(&sender, Duration::from_secs(3 * round), 4000);
        }
        drop(sender);
        let started = Instant::now();
        let mut received = 0;
        while let Some(frame) = body.frame().await {
            received += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(received, 120_000);
        assert_eq!(started.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut_at_the_grace() {
        let (_sender, mut body) = fed(10, 1000);
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(
            error.downcast_ref::<BodyTimeoutError>(),
            Some(&BodyTimeoutError { received: 0 })
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drip_is_cut_once_it_falls_behind_the_minimum_rate() {
        let (sender, mut body) = fed(10, 1000);
        // One byte every 5 s: each earns a millisecond, so the body is cut a little after
        // the grace, having sent two bytes.
        for round in 1..=10 {
            later(&sender, Duration::from_secs(5 * round), 1);
        }
        let started = Instant::now();
        let mut received = 0;
        let error = loop {
            match body.frame().await.unwrap() {
                Ok(frame) => received += frame.into_data().unwrap().len(),
                Err(error) => break error,
            }
        };
        assert_eq!(received, 2);
        assert_eq!(
            error.downcast_ref::<BodyTimeoutError>(),
            Some(&BodyTimeoutError { received: 2 })
        );
        assert_eq!(started.elapsed(), Duration::from_millis(10_002));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_ready_at_once_arms_no_timer() {
        let mut body = TimedBody::new(
            http_body_util::Full::new(Bytes::from_static(b"ready")),
            Duration::from_secs(1),
            1,
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ready");
        assert!(body.frame().await.is_none());
        assert!(body.timer.is_none());
    }
}
