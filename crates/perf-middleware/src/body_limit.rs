//! A limit on request bodies, enforced before anything is buffered.
//!
//! A request whose `Content-Length` is over the limit is answered `413 Payload Too Large`
//! at once, without reaching the inner service; an unparsable or contradictory
//! `Content-Length` gets `400 Bad Request`. Other bodies (chunked, or with a valid length) are
//! wrapped in [`http_body_util::Limited`], which fails with a
//! [`LengthLimitError`](http_body_util::LengthLimitError) as soon as more than the limit has
//! streamed in; the service reading the body turns that into its own 413.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{Full, Limited};
//! use perf_middleware::body_limit::BodyLimitLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(BodyLimitLayer::new(1024))
//!     .service(service_fn(|_: Request<Limited<Full<bytes::Bytes>>>| async {
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     }));
//! let big = Request::post("/")
//!     .header("content-length", "4096")
//!     .body(Full::new(bytes::Bytes::from(vec![0; 4096])))
//!     .unwrap();
//! let response = service.ready().await.unwrap().call(big).await.unwrap();
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use http_body_util::Limited;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::response;

/// Limits request bodies to `limit` bytes; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// Bodies of at most `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        BodyLimitLayer { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// A service with a body limit; built by [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> BodyLimit<S> {
    /// Limits `inner`'s request bodies to `limit` bytes.
    pub fn new(inner: S, limit: usize) -> Self {
        BodyLimit { inner, limit }
    }

    /// A layer doing the same.
    pub fn layer(limit: usize) -> BodyLimitLayer {
        BodyLimitLayer::new(limit)
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

/// What `Content-Length` says: nothing, a length, or nonsense.
enum DeclaredLength {
    Absent,
    Bytes(u64),
    Invalid,
}

fn declared_length(headers: &http::HeaderMap) -> DeclaredLength {
    let mut declared = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        // Only digits: "+5", "-1", " 5" and "0x10" are all refused.
        let parsed = value
            .to_str()
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<u64>().ok());
        match (parsed, declared) {
            (None, _) => return DeclaredLength::Invalid,
            (Some(length), Some(previous)) if length != previous => {
                return DeclaredLength::Invalid;
            }
            (Some(length), _) => declared = Some(length),
        }
    }
    declared.map_or(DeclaredLength::Absent, DeclaredLength::Bytes)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyLimit<S>
where
    S: Service<Request<Limited<ReqBody>>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refuse = match declared_length(request.headers()) {
            DeclaredLength::Invalid => Some(StatusCode::BAD_REQUEST),
            DeclaredLength::Bytes(length) if length > self.limit as u64 => {
                Some(StatusCode::PAYLOAD_TOO_LARGE)
            }
            _ => None,
        };
        match refuse {
            Some(status) => ResponseFuture {
                inner: None,
                refused: status,
            },
            None => {
                let limit = self.limit;
                ResponseFuture {
                    inner: Some(
                        self.inner
                            .call(request.map(|body| Limited::new(body, limit))),
                    ),
                    refused: StatusCode::OK,
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`BodyLimit`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: StatusCode,
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
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => Poll::Ready(Ok(response::empty(*this.refused))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_of(values: &[&str]) -> Option<u64> {
        let mut headers = http::HeaderMap::new();
        for value in values {
            headers.append(header::CONTENT_LENGTH, value.parse().unwrap());
        }
        match declared_length(&headers) {
            DeclaredLength::Bytes(length) => Some(length),
            DeclaredLength::Absent => Some(u64::MAX),
            DeclaredLength::Invalid => None,
        }
    }

    #[test]
    fn content_length_must_be_plain_digits_and_agree() {
        assert_eq!(length_of(&["42"]), Some(42));
        assert_eq!(length_of(&["42", "42"]), Some(42));
        assert_eq!(length_of(&[]), Some(u64::MAX));
        for bad in [
            &["-1"][..],
            &["+5"],
            &["0x10"],
            &["1e3"],
            &["99999999999999999999999"],
            &["4", "5"],
            &[""],
        ] {
            assert_eq!(length_of(bad), None, "{bad:?}");
        }
    }
}
