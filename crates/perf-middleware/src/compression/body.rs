use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::codec::Encoder;
use crate::BoxError;

pin_project! {
    /// A response body, compressed as it streams or passed through unchanged.
    pub struct CompressionBody<B> {
        #[pin]
        inner: B,
        encoder: Option<Encoder>,
        state: State,
        trailers: Option<HeaderMap>,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The inner body ended; the encoder's tail and then any trailers are still to send.
    Finishing,
    Done,
}

impl<B> CompressionBody<B> {
    pub(crate) fn identity(inner: B) -> Self {
        CompressionBody {
            inner,
            encoder: None,
            state: State::Streaming,
            trailers: None,
        }
    }

    pub(crate) fn compressed(inner: B, encoder: Encoder) -> Self {
        CompressionBody {
            inner,
            encoder: Some(encoder),
            state: State::Streaming,
            trailers: None,
        }
    }
}

impl<B> std::fmt::Debug for CompressionBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressionBody")
            .field("compressed", &self.encoder.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<B> Body for CompressionBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let Some(encoder) = this.encoder.as_mut() else {
            // Identity: pass frames through, turning the data into `Bytes` (free for `Bytes`).
            return this.inner.poll_frame(cx).map(|frame| {
                frame.map(|frame| {
                    frame
                        .map(|frame| {
                            frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                        })
                        .map_err(Into::into)
                })
            });
        };
        loop {
            match *this.state {
                State::Done => {
                    return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
                }
                State::Finishing => {
                    let mut output = BytesMut::new();
                    encoder.finish(&mut output)?;
                    *this.state = State::Done;
                    if !output.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(output.freeze()))));
                    }
                }
                State::Streaming => match ready!(this.inner.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut data) => {
                            let mut output = BytesMut::new();
                            while data.has_remaining() {
                                let chunk = data.chunk();
                                let len = chunk.len();
                                encoder.encode_and_flush(chunk, &mut output)?;
                                data.advance(len);
                            }
                            if !output.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(output.freeze()))));
                            }
                        }
                        Err(frame) => {
                            // Trailers end the data: finish the stream, then send them.
                            *this.trailers = frame.into_trailers().ok();
                            *this.state = State::Finishing;
                        }
                    },
                    Some(Err(error)) => return Poll::Ready(Some(Err(error.into()))),
                    None => *this.state = State::Finishing,
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.encoder {
            None => self.inner.is_end_stream(),
            Some(_) => self.state == State::Done && self.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.encoder {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}
