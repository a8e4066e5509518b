//! A deadpool manager around deadpool-postgres's that enforces Go's lifetime and idle
//! limits exactly.
//!
//! deadpool records when a connection was created and last checked out, not when it was
//! given back, so "idle for ten minutes" cannot be told from "checked out ten minutes ago
//! and used since". The connection type here carries the time it was returned; recycling
//! (at checkout) refuses a connection past its lifetime or idle limit, and deadpool then
//! opens a fresh one.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use perf_core::clock::{Clock, FastClock};

use super::stats::PgCounters;

/// A pooled connection, when it was opened and when it was last given back (nanoseconds on
/// the manager's clock).
#[derive(Debug)]
pub struct Connection {
    pub(crate) client: ClientWrapper,
    created_nanos: u64,
    pub(crate) returned_nanos: u64,
}

#[derive(Debug)]
pub(crate) struct PgManager {
    pub(crate) inner: deadpool_postgres::Manager,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) idle_time: Option<Duration>,
    pub(crate) counters: Arc<PgCounters>,
    /// Read at every checkout and return, so the cheap one (see `docs/PERFORMANCE.md`).
    pub(crate) clock: FastClock,
}

/// Why a connection is no longer worth keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Lifetime,
    Idle,
}

impl PgManager {
    /// Whether `connection` has expired; one clock read.
    pub(crate) fn expiry(&self, connection: &Connection) -> Option<Expiry> {
        let now = self.clock.now_nanos();
        let since = |then: u64| Duration::from_nanos(now.saturating_sub(then));
        if self
            .lifetime
            .is_some_and(|lifetime| since(connection.created_nanos) >= lifetime)
        {
            Some(Expiry::Lifetime)
        } else if self
            .idle_time
            .is_some_and(|idle| since(connection.returned_nanos) >= idle)
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
        let now = self.clock.now_nanos();
        Ok(Connection {
            client,
            created_nanos: now,
            returned_nanos: now,
        })
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        match self.expiry(connection) {
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
