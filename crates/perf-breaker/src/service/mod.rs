//! The generic tower layer: any [`Service`](tower_service::Service) whose errors box into
//! [`BoxError`].
//!
//! A rejected call returns a boxed [`CircuitOpen`](crate::CircuitOpen) without reaching the
//! inner service; find it with `downcast_ref`. Results are classified by
//! [`ErrorsFail`](crate::ErrorsFail) unless another [`Classify`](crate::Classify) is set with
//! [`BreakerLayer::classifier`]. How outcomes become results is an [`Answer`]: the
//! HTTP layer is this same layer with another answer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), perf_breaker::BoxError> {
//! use perf_breaker::{CircuitBreaker, BreakerLayer, CircuitOpen};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! let breaker = CircuitBreaker::builder().failure_threshold(2).build()?;
//! let mut service = ServiceBuilder::new()
//!     .layer(BreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("upstream failed") } else { Ok("fine") }
//!     }));
//!
//! assert_eq!(service.ready().await?.call(false).await?, "fine");
//! for _ in 0..2 {
//!     assert!(service.ready().await?.call(true).await.is_err());
//! }
//! let error = service.ready().await?.call(false).await.unwrap_err();
//! assert!(error.downcast_ref::<CircuitOpen>().is_some());
//! # Ok(())
//! # }
//! ```

mod answer;
mod future;
mod layer;
#[allow(clippy::module_inception)]
mod service;

pub use answer::{Answer, RejectWithError};
pub use future::ResponseFuture;
pub use layer::BreakerLayer;
pub use service::Breaker;

/// The error type of the generic layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
