use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::shedder::Admission;
use super::{AllNormal, LoadShedLayer, LoadShedder, Prioritize, ResponseFuture};
use crate::clock::{Clock, FastClock};
use crate::rate_limit::RequestHead;

/// A service that sheds load; built by [`LoadShedLayer`].
#[derive(Debug, Clone)]
pub struct LoadShed<S, P = AllNormal, C = FastClock> {
    inner: S,
    shedder: LoadShedder<C>,
    prioritize: P,
}

impl<S, C> LoadShed<S, AllNormal, C> {
    /// Admits requests to `inner` through `shedder`.
    pub fn new(inner: S, shedder: LoadShedder<C>) -> Self {
        LoadShed::with_parts(inner, shedder, AllNormal)
    }

    /// A layer doing the same.
    pub fn layer(shedder: LoadShedder<C>) -> LoadShedLayer<AllNormal, C> {
        LoadShedLayer::new(shedder)
    }
}

impl<S, P, C> LoadShed<S, P, C> {
    pub(crate) fn with_parts(inner: S, shedder: LoadShedder<C>, prioritize: P) -> Self {
        LoadShed {
            inner,
            shedder,
            prioritize,
        }
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

impl<S, P, C, ReqBody, ResBody> Service<Request<ReqBody>> for LoadShed<S, P, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: Prioritize,
    C: Clock,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let priority = self.prioritize.priority(&RequestHead::of(&request));
        let admission = self.shedder.admit(priority);
        let retry_after = self.shedder.retry_after();
        match admission {
            Admission::Shed => ResponseFuture::shed(retry_after),
            admission => ResponseFuture::new(self.inner.call(request), admission, retry_after),
        }
    }
}
