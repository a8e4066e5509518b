use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_service::Service;

use super::encoding::negotiate;
use super::{CompressionBody, CompressionLayer, ResponseFuture};

/// A service whose responses are compressed; built by [`CompressionLayer`].
#[derive(Debug, Clone)]
pub struct Compression<S> {
    inner: S,
    layer: CompressionLayer,
}

impl<S> Compression<S> {
    /// Compresses `inner`'s responses with the default settings.
    pub fn new(inner: S) -> Self {
        Compression::with_layer(inner, CompressionLayer::new())
    }

    /// A layer doing the same.
    pub fn layer() -> CompressionLayer {
        CompressionLayer::new()
    }

    pub(crate) fn with_layer(inner: S, layer: CompressionLayer) -> Self {
        Compression { inner, layer }
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &self.layer.settings;
        // A HEAD response has no body to compress; its headers must match a GET's only in
        // what the GET would send, which a client cannot hold us to without the body.
        let encoding = (request.method() != Method::HEAD)
            .then(|| negotiate(request.headers(), &settings.enabled))
            .flatten();
        ResponseFuture::new(
            self.inner.call(request),
            encoding,
            std::sync::Arc::clone(settings),
        )
    }
}
