use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{Miss, ResponseFuture};
use super::layer::RequestHead;
use super::policy::{Scope, request_policy};
use super::stored::Outcome;
use super::{CacheBody, ResponseCacheLayer, key};
use crate::clock::Clock;

/// A service whose GET responses are cached; built by [`ResponseCacheLayer`].
#[derive(Debug, Clone)]
pub struct ResponseCache<S> {
    inner: S,
    layer: ResponseCacheLayer,
}

impl<S> ResponseCache<S> {
    /// Caches `inner`'s responses in `cache`'s store (shared with every other service that
    /// layer built).
    pub fn new(inner: S, cache: ResponseCacheLayer) -> Self {
        ResponseCache {
            inner,
            layer: cache,
        }
    }

    /// A layer with `config`; see [`ResponseCacheLayer::new`].
    ///
    /// # Errors
    ///
    /// A [`BuildError`](crate::BuildError) for an invalid setting.
    pub fn layer(
        config: super::ResponseCacheConfig,
    ) -> Result<ResponseCacheLayer, crate::BuildError> {
        ResponseCacheLayer::new(config)
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.layer.shared;
        let head = RequestHead::of(&request);
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            // A successful write to a resource makes its stored reads stale (RFC 9111 4.4).
            let path = (!method.is_safe()).then(|| request.uri().path().to_owned());
            return ResponseFuture::pass(self.inner.call(request), path, self.layer.clone());
        }
        if shared.bypass.as_ref().is_some_and(|bypass| bypass(&head)) {
            return ResponseFuture::pass(self.inner.call(request), None, self.layer.clone());
        }
        let policy = request_policy(request.headers());
        // Keyed is decided per request: a key function that finds no user for this one puts
        // it in the shared entries, where private answers and credentials are kept out.
        let extra = shared.key.as_ref().and_then(|key| key(&head));
        let scope = Scope::of(extra.is_some(), request.headers());
        let primary = key::primary(request.uri(), request.headers(), extra.as_deref());
        let head_only = method == Method::HEAD;
        if policy.lookup {
            // Counted per request: a lookup that finds no variant, or one this request may
            // not be served (a shared entry for a caller with credentials), is a miss.
            let served = shared.vary.get(&primary).and_then(|vary| {
                let variant = key::variant(&primary, &vary, request.headers());
                shared
                    .store
                    .get_uncounted(&*variant)
                    .filter(|stored| stored.serves(scope))
            });
            shared.store.count_lookup(served.is_some());
            if let Some(stored) = served {
                let now = shared.clock.now_nanos();
                let (response, body) =
                    stored.answer(request.headers(), head_only, Outcome::Hit, now);
                return ResponseFuture::ready(response, body);
            }
        }
        let miss = Miss {
            primary,
            path: request.uri().path().to_owned(),
            request_headers: request.headers().clone(),
            store: policy.store,
            head_only,
            scope,
        };
        ResponseFuture::miss(self.inner.call(request), miss, self.layer.clone())
    }
}
