use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use metrics::Counter;
use pin_project_lite::pin_project;

pin_project! {
    /// A response body that counts the bytes it streams, and adds them to the response-bytes
    /// counter when it ends or is dropped (a client that disconnects mid-body still counts
    /// what was sent).
    #[derive(Debug)]
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        bytes: u64,
        counter: Option<Counter>,
    }

    impl<B> PinnedDrop for CountedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(counter) = this.counter.take() {
                counter.increment(*this.bytes);
            }
        }
    }
}

impl<B> CountedBody<B> {
    pub(crate) fn new(inner: B, counter: Counter) -> Self {
        CountedBody {
            inner,
            bytes: 0,
            counter: Some(counter),
        }
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.remaining() as u64;
                }
            }
            None => {
                if let Some(counter) = this.counter.take() {
                    counter.increment(*this.bytes);
                }
            }
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
