//! `X-Request-Id`: propagated when the client sent a usable one, generated otherwise, and
//! echoed on the response.
//!
//! The id is set on the request before the inner service sees it, and also inserted as a
//! [`RequestId`] extension so handlers and error bodies can quote it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use perf_middleware::request_id::{RequestId, RequestIdLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service(service_fn(|request: Request<()>| async move {
//!         let id = request.extensions().get::<RequestId>().unwrap().as_str().to_owned();
//!         Ok::<_, Infallible>(Response::new(id))
//!     }));
//!
//! let request = Request::get("/").header("x-request-id", "abc-123").body(()).unwrap();
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! assert_eq!(response.headers()["x-request-id"], "abc-123");
//! assert_eq!(response.body(), "abc-123");
//!
//! let response = service.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! assert_eq!(response.headers()["x-request-id"].len(), 32);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The longest client-supplied id that is propagated; longer ones are replaced.
const MAX_LEN: usize = 128;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A fresh random id: 32 hex digits (128 bits).
    pub fn generate() -> Self {
        // Written digit by digit: `format!("{:032x}")` goes through the formatting machinery
        // and costs several times more, on every request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bits = fastrand::u128(..);
        let mut digits = [0u8; 32];
        for digit in digits.iter_mut().rev() {
            *digit = HEX[(bits & 0xf) as usize];
            bits >>= 4;
        }
        let value = HeaderValue::from_bytes(&digits).expect("hex digits are a valid header value");
        RequestId(value)
    }

    /// The id of a client-supplied value if it is usable: 1 to 128 visible ASCII
    /// characters. Anything else (empty, too long, spaces, control or non-ASCII bytes) is
    /// refused so that logs and downstream headers stay clean.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let usable = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes.iter().all(|byte| byte.is_ascii_graphic());
        usable.then(|| RequestId(value.clone()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Sets, propagates and echoes request ids; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RequestIdLayer {
    header: HeaderName,
}

impl RequestIdLayer {
    /// Uses the `X-Request-Id` header.
    pub const fn new() -> Self {
        RequestIdLayer {
            header: X_REQUEST_ID,
        }
    }

    /// Uses another header (`X-Correlation-Id`, say).
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        RequestIdLayer::new()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            header: self.header.clone(),
        }
    }
}

/// A service that sets request ids; built by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct SetRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S> SetRequestId<S> {
    /// Sets `X-Request-Id` for `inner`.
    pub fn new(inner: S) -> Self {
        RequestIdLayer::new().layer(inner)
    }

    /// A layer doing the same.
    pub fn layer() -> RequestIdLayer {
        RequestIdLayer::new()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let id = request
            .headers()
            .get(&self.header)
            .and_then(RequestId::from_header)
            .unwrap_or_else(RequestId::generate);
        request
            .headers_mut()
            .insert(self.header.clone(), id.header_value().clone());
        let value = id.header_value().clone();
        request.extensions_mut().insert(id);
        ResponseFuture {
            inner: self.inner.call(request),
            header: Some((self.header.clone(), value)),
        }
    }
}

pin_project! {
    /// Response future of [`SetRequestId`]: echoes the id unless the inner service set one.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        header: Option<(HeaderName, HeaderValue)>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some((name, value)) = this.header.take() {
            response.headers_mut().entry(name).or_insert(value);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_client_ids_are_refused() {
        for bad in ["", "has space", &"x".repeat(129)] {
            assert!(
                RequestId::from_header(&HeaderValue::from_str(bad).unwrap()).is_none(),
                "{bad:?}"
            );
        }
        let non_ascii = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert!(RequestId::from_header(&non_ascii).is_none());
        assert!(RequestId::from_header(&HeaderValue::from_static("req-1_a.b:c")).is_some());
    }

    #[test]
    fn generated_ids_are_distinct_hex() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 32, "{id:?}");
            assert!(
                id.as_str()
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id:?}"
            );
        }
    }
}
