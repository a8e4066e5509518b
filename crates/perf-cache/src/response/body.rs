use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body: buffered by the cache (a hit, or a miss it read to store or to tag),
    /// or the inner service's own, passed through.
    pub struct CacheBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        // Bytes the cache holds, then the trailers or the error that ended the inner body.
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
            error: Option<B::Error>,
        },
        Inner {
            #[pin]
            body: B,
        },
    }
}

impl<B: Body> CacheBody<B> {
    pub(crate) fn buffered(data: Option<Bytes>) -> Self {
        Self::collected(data, None, None)
    }

    pub(crate) fn collected(
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
        error: Option<B::Error>,
    ) -> Self {
        CacheBody {
            kind: Kind::Buffered {
                data: data.filter(|data| !data.is_empty()),
                trailers,
                error,
            },
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        CacheBody {
            kind: Kind::Inner { body },
        }
    }
}

impl<B: Body> std::fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Buffered { data, .. } => f
                .debug_struct("CacheBody")
                .field("buffered", &data.as_ref().map_or(0, Bytes::len))
                .finish_non_exhaustive(),
            Kind::Inner { .. } => f.debug_struct("CacheBody").finish_non_exhaustive(),
        }
    }
}

impl<B: Body> Body for CacheBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered {
                data,
                trailers,
                error,
            } => Poll::Ready(
                data.take()
                    .map(|data| Ok(Frame::data(data)))
                    .or_else(|| error.take().map(Err))
                    .or_else(|| trailers.take().map(|t| Ok(Frame::trailers(t)))),
            ),
            KindProj::Inner { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|frame| {
                    frame.map(|frame| {
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    })
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered {
                data,
                trailers,
                error,
            } => data.is_none() && trailers.is_none() && error.is_none(),
            Kind::Inner { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
        }
    }
}
