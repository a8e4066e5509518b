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

/// A pooled connection: when it was opened, last handed out and last given back
/// (nanoseconds on the manager's clock), and what its queries report to.
#[derive(Debug)]
pub struct Connection {
    pub(crate) client: ClientWrapper,
    created_nanos: u64,
    /// Read once at checkout: it dates the checkout for the wait measurement too.
    pub(crate) checked_out_nanos: u64,
    pub(crate) returned_nanos: u64,
    /// Shared with the manager: a checkout hands this out with the connection, so a
    /// [`PgConn`](super::PgConn) clones no pool handle.
    pub(crate) shared: Arc<Shared>,
}

/// What every connection of a pool reports to and reads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) counters: PgCounters,
    /// Read at every checkout and return, so the cheap one (see `docs/PERFORMANCE.md`).
    pub(crate) clock: FastClock,
    pub(crate) statement_cache_size: usize,
    pub(crate) slow_query_threshold: Duration,
}

#[derive(Debug)]
pub(crate) struct PgManager {
    pub(crate) inner: deadpool_postgres::Manager,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) idle_time: Option<Duration>,
    /// Run a query on every checkout (deadpool-postgres's verified recycling).
    pub(crate) verify: bool,
    pub(crate) shared: Arc<Shared>,
}

/// Why a connection is no longer worth keeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Lifetime,
    Idle,
}

impl PgManager {
    /// Whether `connection` has expired by `now`.
    pub(crate) fn expiry(&self, connection: &Connection, now: u64) -> Option<Expiry> {
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
        let now = self.shared.clock.now_nanos();
        Ok(Connection {
            client,
            created_nanos: now,
            checked_out_nanos: now,
            returned_nanos: now,
            shared: Arc::clone(&self.shared),
        })
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<tokio_postgres::Error> {
        let now = self.shared.clock.now_nanos();
        connection.checked_out_nanos = now;
        match self.expiry(connection, now) {
            Some(Expiry::Lifetime) => {
                self.shared.counters.closed_lifetime();
                Err(RecycleError::message(
                    "connection reached conn_max_lifetime",
                ))
            }
            Some(Expiry::Idle) => {
                self.shared.counters.closed_idle();
                Err(RecycleError::message(
                    "connection idle past conn_max_idle_time",
                ))
            }
            // deadpool-postgres's fast check, done here: awaiting its recycle inline would
            // put the verifying query's future inside every checkout's future (200 bytes
            // moved with it for nothing), so that path is boxed, behind its round trip.
            None if !self.verify => {
                if connection.client.is_closed() {
                    Err(RecycleError::message("connection closed"))
                } else {
                    Ok(())
                }
            }
            None => Box::pin(self.inner.recycle(&mut connection.client, metrics)).await,
        }
    }

    fn detach(&self, connection: &mut Connection) {
        self.inner.detach(&mut connection.client);
    }
}
