//! A deadpool manager around deadpool-postgres's that enforces Go's lifetime and idle
//! limits exactly.
//!
//! deadpool records when a connection was created and last checked out, not when it was
//! given back, so "idle for ten minutes" cannot be told from "checked out ten minutes ago
//! and used since". The connection type here carries the time it was returned; recycling
//! (at checkout) refuses a connection past its lifetime or idle limit, and deadpool then
//! opens a fresh one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;

use super::stats::PgCounters;

/// A pooled connection and when it was last given back.
#[derive(Debug)]
pub struct Connection {
    pub(crate) client: ClientWrapper,
    pub(crate) returned_at: Instant,
}

#[derive(Debug)]
pub(crate) struct PgManager {
    pub(crate) inner: deadpool_postgres::Manager,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) idle_time: Option<Duration>,
    pub(crate) counters: Arc<PgCounters>,
}

/// Why a connection is no longer worth keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Lifetime,
    Idle,
}

impl PgManager {
    /// Whether `connection`, created at `created`, has expired; one clock read.
    pub(crate) fn expiry(&self, connection: &Connection, created: Instant) -> Option<Expiry> {
        let now = Instant::now();
        if self
            .lifetime
            .is_some_and(|lifetime| now.saturating_duration_since(created) >= lifetime)
        {
            Some(Expiry::Lifetime)
        } else if self
            .idle_time
            .is_some_and(|idle| now.saturating_duration_since(connection.returned_at) >= idle)
        {
            Some(Expiry::Idle)
        } else {
            None
        }
    }
}

impl Manager for PgManager {
    type Type = Connection;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Connection, tokio_postgres::Error> {
        let client = self.inner.create().await?;
        Ok(Connection {
            client,
            returned_at: Instant::now(),
        })
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        match self.expiry(connection, metrics.created) {
            Some(Expiry::Lifetime) => {
                self.counters.closed_lifetime();
                Err(RecycleError::message(
                    "connection reached conn_max_lifetime",
                ))
            }
            Some(Expiry::Idle) => {
                self.counters.closed_idle();
                Err(RecycleError::message(
                    "connection idle past conn_max_idle_time",
                ))
            }
            None => self.inner.recycle(&mut connection.client, metrics).await,
        }
    }

    fn detach(&self, connection: &mut Connection) {
        self.inner.detach(&mut connection.client);
    }
}
