//! The PocWhisp transcription server, composed from the PocWhisp-rs performance crates:
//! configuration, serving, authentication, errors, storage and the routes.
//! [`Application::build`] is what the binary and the tests start.

mod alerts;
mod app;
pub mod audio;
pub mod config;
pub mod disk_reserve;
pub mod engine;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod models;
pub mod perf;
mod redis;
mod routes;
pub mod session;
mod state;
pub mod store;
mod subtitles;
pub mod telemetry;

pub use app::{Application, StartError};
pub use state::AppState;
