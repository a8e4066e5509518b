//! HTTP: serving (hyper-util), the layers the server adds around perf-middleware's stack
//! (authentication, error bodies, request logs, route labels), and the error type of the
//! routes.

mod auth;
mod client_connections;
mod error;
pub(crate) mod error_body;
mod extract;
pub(crate) mod part_headers;
mod route_label;
pub(crate) mod serve;
mod sniff_deadline;
pub(crate) mod trace;

pub(crate) use auth::{AuthenticateLayer, RequireRole};
pub use auth::{Principal, TokenSummary, Tokens};
pub use error::{ApiError, ErrorBody, Result};
pub use extract::{Path, Query};
pub(crate) use route_label::RouteLabelLayer;
