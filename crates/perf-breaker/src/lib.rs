#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backoff;
mod breaker;
mod builder;
mod classify;
mod clock;
mod config;
mod error;
mod keyed;
mod permit;
mod select;
mod state;
mod stats;
mod telemetry;
mod transition;
mod window;

#[cfg(feature = "http")]
pub mod http;
pub mod retry;
pub mod service;

pub use breaker::CircuitBreaker;
pub use builder::Builder;
pub use classify::{Classify, ErrorsFail};
pub use config::{Config, FailureRate, SlidingWindow};
pub use error::{BuildError, CallError, CircuitOpen};
#[cfg(feature = "http")]
pub use http::{HttpBreaker, HttpBreakerLayer, HttpClassifier, RespondUnavailable};
pub use keyed::{KeyedBuilder, KeyedCircuitBreaker, KeyedConfig};
pub use permit::{OwnedPermit, Permit};
pub use select::{ByKey, SelectBreaker};
pub use service::{Answer, BoxError, Breaker, BreakerLayer, RejectWithError};
pub use state::State;
pub use stats::Stats;
pub use transition::{Reason, Transition};
