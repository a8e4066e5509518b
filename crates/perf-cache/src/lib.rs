#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
mod error;
pub mod l2;
pub mod response;
pub mod ttl;
pub mod warmer;

pub use error::BuildError;
