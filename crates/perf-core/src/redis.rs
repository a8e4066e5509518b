//! The Redis connection of the `redis` features of perf-cache and perf-middleware.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::BuildError;

/// A connection to the Redis `client` names, made on first use and remade after a failure
/// (so a Redis that is down at start is not an error), with `timeout` on connecting and on
/// each answer. The connection is kept by a task of the current Tokio runtime.
///
/// # Errors
///
/// A [`BuildError`] outside a Tokio runtime, or for a client the manager refuses.
pub fn lazy_connection(
    client: redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, BuildError> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        BuildError::new(
            "runtime",
            "build it inside a Tokio runtime (the connection is a task of it)",
        )
    })?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1);
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|error| BuildError::new("redis", error.to_string()))
}
