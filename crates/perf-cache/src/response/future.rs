use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, ETAG};
use http::response::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::policy::{Scope, answers_credentials, response_ttl};
use super::stored::{Outcome, Stored, X_CACHE, not_modified};
use super::{CacheBody, ResponseCacheLayer, key, validators};
use crate::clock::Clock;

/// What a miss needs to know when its response comes back.
#[derive(Debug)]
pub(crate) struct Miss {
    pub(crate) primary: String,
    pub(crate) path: String,
    pub(crate) request_headers: HeaderMap,
    /// The request allows storing.
    pub(crate) store: bool,
    /// A HEAD request: there is no body to read, tag or store.
    pub(crate) head_only: bool,
    /// Whose entry the request reads and writes.
    pub(crate) scope: Scope,
}

pin_project! {
    /// Response future of [`ResponseCache`](super::ResponseCache).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        // None for a hit, which needs nothing more from the cache.
        layer: Option<ResponseCacheLayer>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        /// Answered from the cache.
        Ready { head: Option<Response<()>>, body: Option<Bytes> },
        /// Not cacheable: passed through; a successful write invalidates `path`.
        Pass { #[pin] future: F, invalidate: Option<String> },
        /// A miss, waiting for the inner response.
        Calling { #[pin] future: F, miss: Option<Miss> },
        /// A miss whose body is being read to tag and store it.
        Collecting {
            #[pin]
            body: B,
            parts: Option<Parts>,
            buffer: BytesMut,
            miss: Option<Miss>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn ready(head: Response<()>, body: Option<Bytes>) -> Self {
        ResponseFuture {
            state: State::Ready {
                head: Some(head),
                body,
            },
            layer: None,
        }
    }

    pub(crate) fn pass(future: F, invalidate: Option<String>, layer: ResponseCacheLayer) -> Self {
        ResponseFuture {
            state: State::Pass { future, invalidate },
            layer: Some(layer),
        }
    }

    pub(crate) fn miss(future: F, miss: Miss, layer: ResponseCacheLayer) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                miss: Some(miss),
            },
            layer: Some(layer),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let layer = this.layer.as_ref();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { head, body } => {
                    let head = head.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(head.map(|()| CacheBody::buffered(body.take()))));
                }
                StateProj::Pass { future, invalidate } => {
                    let response = ready!(future.poll(cx))?;
                    let succeeded =
                        response.status().is_success() || response.status().is_redirection();
                    if let (Some(path), Some(layer)) =
                        (invalidate.take().filter(|_| succeeded), layer)
                    {
                        layer.invalidate_path(&path);
                    }
                    return Poll::Ready(Ok(response.map(CacheBody::inner)));
                }
                StateProj::Calling { future, miss } => {
                    let response = ready!(future.poll(cx))?;
                    let miss = miss.take().expect("a miss has its context");
                    let layer = layer.expect("a miss has its layer");
                    if response.status().is_server_error()
                        && let Some((head, body)) = stale_stand_in(layer, &miss)
                    {
                        return Poll::Ready(Ok(head.map(|()| CacheBody::buffered(body))));
                    }
                    if miss.head_only
                        || !worth_reading(&response, layer.shared.config.max_body_bytes)
                    {
                        let (mut parts, body) = response.into_parts();
                        parts.headers.insert(X_CACHE, Outcome::Miss.header());
                        return Poll::Ready(Ok(Response::from_parts(
                            parts,
                            CacheBody::inner(body),
                        )));
                    }
                    let (parts, body) = response.into_parts();
                    this.state.set(State::Collecting {
                        body,
                        parts: Some(parts),
                        buffer: BytesMut::new(),
                        miss: Some(miss),
                    });
                }
                StateProj::Collecting {
                    mut body,
                    parts,
                    buffer,
                    miss,
                } => {
                    let (trailers, error) = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(mut data) => {
                                    while data.has_remaining() {
                                        let chunk = data.chunk();
                                        buffer.extend_from_slice(chunk);
                                        let len = chunk.len();
                                        data.advance(len);
                                    }
                                }
                                Err(frame) => break (frame.into_trailers().ok(), None),
                            },
                            Some(Err(error)) => break (None, Some(error)),
                            None => break (None, None),
                        }
                    };
                    let parts = parts.take().expect("collected once");
                    let miss = miss.take().expect("collected once");
                    let data = std::mem::take(buffer).freeze();
                    let complete = trailers.is_none() && error.is_none();
                    let layer = layer.expect("a miss has its layer");
                    return Poll::Ready(Ok(finish(layer, parts, data, miss, complete)
                        .map(|data| CacheBody::collected(data, trailers, error))));
                }
            }
        }
    }
}

/// A stored copy, expired but within the stale-if-error window, to answer in place of the
/// origin's 5xx.
fn stale_stand_in(
    layer: &ResponseCacheLayer,
    miss: &Miss,
) -> Option<(Response<()>, Option<Bytes>)> {
    let shared = &layer.shared;
    let vary = shared.vary.get(&miss.primary)?;
    let variant = key::variant(&miss.primary, &vary, &miss.request_headers);
    let stored = shared
        .store
        .get_stale(&*variant)
        .filter(|stored| stored.serves(miss.scope))?;
    let now = shared.clock.now_nanos();
    Some(stored.answer(&miss.request_headers, miss.head_only, Outcome::Stale, now))
}

/// A response the cache reads in full: one it might store or tag, of a known size within
/// the limit. Bodies of unknown length stream through untouched rather than risk buffering
/// something large.
fn worth_reading<B: Body>(response: &Response<B>, limit: u64) -> bool {
    let cacheable = matches!(
        response.status().as_u16(),
        200 | 203 | 300 | 301 | 308 | 404 | 410
    );
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .or_else(|| response.body().size_hint().exact());
    cacheable && length.is_some_and(|length| length <= limit)
}

/// Tags, stores and answers a miss whose body was read in full. Returns the response head
/// with the body to send (none for a `304`).
fn finish(
    layer: &ResponseCacheLayer,
    mut parts: Parts,
    data: Bytes,
    miss: Miss,
    complete: bool,
) -> Response<Option<Bytes>> {
    let shared = &layer.shared;
    if complete && parts.status == StatusCode::OK && !parts.headers.contains_key(ETAG) {
        parts.headers.insert(ETAG, validators::etag_of(&data));
    }
    let ttl = response_ttl(
        parts.status,
        &parts.headers,
        shared.config.default_ttl,
        miss.scope,
    );
    let vary = key::vary_names(&parts.headers);
    if let (true, true, Some(ttl), Some(vary)) = (complete, miss.store, ttl, vary) {
        let variant = key::variant(&miss.primary, &vary, &miss.request_headers).into_owned();
        shared.vary.insert_with(
            miss.primary,
            Arc::from(vary),
            ttl.max(shared.vary.config().ttl),
            &[],
        );
        let stored = Stored {
            status: parts.status,
            headers: parts.headers.clone(),
            body: data.clone(),
            stored_at: shared.clock.now_nanos(),
            answers_credentials: answers_credentials(&parts.headers),
        };
        shared
            .store
            .insert_with(variant, Arc::new(stored), ttl, &[&miss.path]);
    }
    parts.headers.insert(X_CACHE, Outcome::Miss.header());
    let head = Response::from_parts(parts, ());
    if complete && validators::not_modified(&miss.request_headers, head.status(), head.headers()) {
        return not_modified(head).map(|()| None);
    }
    head.map(|()| Some(data))
}
