//! The HTTP layer: classifies responses and answers an open circuit itself.
//!
//! This is the [generic layer](crate::service) with two HTTP parts. Responses are classified
//! by [`HttpClassifier`] (5xx, 408 and inner errors fail; other 4xx are the client's problem
//! and do not) unless another [`Classify`](crate::Classify) is set. When the breaker rejects
//! a request the inner service is not called: [`RespondUnavailable`] answers `503 Service
//! Unavailable` with `Retry-After` (whole seconds, rounded up) and an empty body of the
//! response body type's [`Default`]. The error type is the inner service's, unchanged, so no
//! `HandleErrorLayer` is needed. For another rejection response (a JSON error body, say),
//! implement [`Answer`](crate::service::Answer) and set it with
//! [`BreakerLayer::answer`](crate::BreakerLayer::answer).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use perf_breaker::{CircuitBreaker, HttpBreakerLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let breaker = CircuitBreaker::builder().failure_threshold(1).build()?;
//! let mut service = ServiceBuilder::new()
//!     .layer(HttpBreakerLayer::new(breaker))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::builder().status(502).body(String::new()).unwrap())
//!     }));
//!
//! let first = service.ready().await?.call(Request::new(())).await?;
//! assert_eq!(first.status(), StatusCode::BAD_GATEWAY);
//! let second = service.ready().await?.call(Request::new(())).await?;
//! assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(second.headers()["retry-after"], "30");
//! # Ok(())
//! # }
//! ```

mod answer;
mod classify;
mod layer;

pub use answer::RespondUnavailable;
pub use classify::HttpClassifier;
pub use layer::HttpBreakerLayer;

use crate::breaker::CircuitBreaker;
use crate::service::Breaker;

/// An HTTP service guarded by a circuit breaker: the generic service with
/// [`RespondUnavailable`]; built by [`HttpBreakerLayer`].
pub type HttpBreaker<S, B = CircuitBreaker, C = HttpClassifier> =
    Breaker<S, B, C, RespondUnavailable>;

/// Response future of [`HttpBreaker`].
pub type ResponseFuture<F, C = HttpClassifier> =
    crate::service::ResponseFuture<F, C, RespondUnavailable>;
