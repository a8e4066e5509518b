//! [`ResponseCacheLayer`]: an HTTP response cache as a tower layer.
//!
//! - **Keys**: method-independent for GET and HEAD; the scheme and host (virtual hosts
//!   never share an entry), the path, the query parameters in sorted order, an optional key
//!   function's key (per user or tenant), and the request's values of every header the
//!   stored response names in `Vary`. `Vary` is enforced: a request with another
//!   `Accept-Encoding` is another variant, so placed outside a compression layer the cache
//!   keeps one encoded copy per coding and never compresses a hit again. `Vary: *` is never
//!   stored.
//! - **Shared and keyed entries**: a request for which the key function returns a key reads
//!   and writes entries of that key alone, where `private` responses are stored too. Every
//!   other request uses shared entries under a shared cache's rules: never `private`, and a
//!   request carrying `Authorization` or a `Cookie` is neither answered from nor stored into
//!   a shared entry unless the response says `public`, `s-maxage` or `must-revalidate` (RFC
//!   9111 3.5).
//! - **What is stored**: 200, 203, 300, 301, 308, 404 and 410 responses of known size up to
//!   `max_body_bytes`, for `s-maxage`, `max-age` or the default TTL. Never `no-store`,
//!   `no-cache`, `max-age=0`, or responses with `Set-Cookie`. Requests with `no-store` are
//!   not stored; `no-cache` (or `Pragma: no-cache`) skips the lookup.
//! - **Validators**: a `200` without an `ETag` gets a strong one, the SHA-256 of its body, on
//!   misses too; `If-None-Match` (or `If-Modified-Since` against `Last-Modified`) is answered
//!   `304 Not Modified`, on hits and misses, for 2xx responses only.
//! - **Headers**: `X-Cache: HIT` or `MISS`, and `Age` on hits.
//! - **Invalidation**: a successful POST, PUT, PATCH or DELETE drops the stored variants of
//!   its path; [`ResponseCacheLayer::invalidate_path`] and
//!   [`ResponseCacheLayer::purge`] do it by hand.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use perf_cache::response::{ResponseCacheConfig, ResponseCacheLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(ResponseCacheLayer::new(ResponseCacheConfig::default()).unwrap())
//!     .service(service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{\"segments\":[]}"))))
//!     }));
//!
//! let first = service.ready().await.unwrap().call(Request::get("/s/1").body(()).unwrap()).await.unwrap();
//! assert_eq!(first.headers()["x-cache"], "MISS");
//! let etag = first.headers()["etag"].clone();
//!
//! let again = Request::get("/s/1").header("if-none-match", etag).body(()).unwrap();
//! let second = service.ready().await.unwrap().call(again).await.unwrap();
//! assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
//! assert_eq!(second.headers()["x-cache"], "HIT");
//! # }
//! ```

mod body;
mod config;
mod future;
mod key;
mod layer;
mod policy;
mod service;
mod stored;
mod validators;

pub use body::CacheBody;
pub use config::ResponseCacheConfig;
pub use future::ResponseFuture;
pub use layer::{RequestHead, ResponseCacheBuilder, ResponseCacheLayer};
pub use service::ResponseCache;
