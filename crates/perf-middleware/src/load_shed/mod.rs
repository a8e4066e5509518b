//! Load shedding: refuse what the service cannot take right now, at once, with `503 Service
//! Unavailable` and `Retry-After`, instead of queueing it until it times out.
//!
//! A [`LoadShedder`] holds the limit on requests in flight: fixed, or adaptive
//! ([`AdaptiveConfig`]: AIMD on the latency the inner service shows, so the limit finds the
//! concurrency the service sustains). Requests have a [`Priority`]: exempt ones (health
//! checks) are never refused or counted, high ones may use a reserve above the limit, low
//! ones are refused first. The shedder is `Clone` and shared: one limit for every clone of
//! the layer and every connection. [`LoadShedConfig`] holds every setting, for a stack
//! built from a file ([`LoadShedLayer::from_config`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use perf_middleware::load_shed::{LoadShedLayer, LoadShedder, PathPriorities};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let shedder = LoadShedder::fixed(1).build().unwrap();
//! let mut service = ServiceBuilder::new()
//!     .layer(LoadShedLayer::new(shedder.clone()).prioritize(PathPriorities::new().exempt(["/health"])))
//!     .service(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//!
//! // Hold the only slot, as a long request would.
//! let busy = shedder.try_acquire(Default::default()).unwrap();
//! let refused = service.ready().await.unwrap().call(Request::get("/work").body(()).unwrap()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(refused.headers()["retry-after"], "1");
//! let health = service.ready().await.unwrap().call(Request::get("/health").body(()).unwrap()).await.unwrap();
//! assert_eq!(health.status(), StatusCode::OK);
//! drop(busy);
//! # }
//! ```

mod adaptive;
mod config;
mod future;
mod layer;
mod priority;
mod service;
mod shedder;

pub use adaptive::AdaptiveConfig;
pub use config::{LoadShedConfig, QueueConfig};
pub use future::ResponseFuture;
pub use layer::LoadShedLayer;
pub use priority::{AllNormal, PathPriorities, Prioritize, Priority};
pub use service::LoadShed;
pub use shedder::{LoadShedStats, LoadShedder, LoadShedderBuilder, ShedPermit};
