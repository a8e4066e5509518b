//! Any [`Store`] behind a perf-breaker circuit breaker and the database retry preset of
//! 3 tries, 0.5 s doubling to 5 s, ±25 %: a database failover is over within that.
//!
//! Only [`StoreError::Unavailable`] counts against the breaker: a missing row or a
//! constraint is an answer, not a fault. Once the breaker opens, calls fail at once with
//! `Unavailable` (the routes answer 503 with `Retry-After`) instead of queueing on a dead
//! database, until a probe call finds it back. Reads, and lease renewals (which are
//! idempotent), are retried while the breaker is closed; other writes are tried once,
//! since a write whose answer was lost may have been done. The writes that empty a full
//! disk or finish a job (deletes, a job's end) are made once more after giving up the disk
//! reserve when the disk was full ([`DiskReserve`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use perf_breaker::retry::Retry;
use perf_breaker::{CallError, CircuitBreaker, State};

use crate::disk_reserve::DiskReserve;

use super::{
    Deleted, Delivery, Job, ListQuery, NewSession, Page, ReuseKey, SessionDetail, SessionStatus,
    Store, StoreError, StoreFuture, StoreStats, Transcript,
};

/// A store whose calls go through a breaker (`database.breaker`), with reads and lease
/// renewals retried on transient errors.
#[derive(Debug, Clone)]
pub struct GuardedStore {
    inner: Arc<dyn Store>,
    breaker: CircuitBreaker,
    retry: Retry,
    /// Given up to a needed write that found the database's disk full.
    reserve: Option<DiskReserve>,
}

impl GuardedStore {
    /// `inner` behind `breaker`.
    pub fn new(inner: Arc<dyn Store>, breaker: CircuitBreaker) -> Self {
        GuardedStore {
            inner,
            breaker,
            retry: Retry::new(3, Duration::from_millis(500), Duration::from_secs(5)),
            reserve: None,
        }
    }

    /// Gives `reserve` up to a delete or a job's end that finds the disk full: for a
    /// database on the data directory's disk.
    #[must_use]
    pub fn with_disk_reserve(mut self, reserve: DiskReserve) -> Self {
        self.reserve = Some(reserve);
        self
    }

    /// The breaker, for health and metrics.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// One call through the breaker.
    async fn once<T, F>(&self, call: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        self.breaker
            .call_with(
                |result: &Result<T, StoreError>| matches!(result, Err(StoreError::Unavailable(_))),
                || call,
            )
            .await
            .map_err(|error| match error {
                CallError::Rejected(open) => StoreError::Unavailable(format!(
                    "the database has been failing; calls resume in {} s",
                    open.retry_after().as_secs().max(1)
                )),
                CallError::Inner(error) => error,
            })
    }

    /// A write needed on a full disk: tried once, and once more after giving up the disk
    /// reserve when the disk was full.
    async fn needed<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.once(call()).await {
            Err(StoreError::DiskFull(_))
                if self.reserve.as_ref().is_some_and(DiskReserve::release) =>
            {
                self.once(call()).await
            }
            result => result,
        }
    }

    /// A call retried while it fails with `Unavailable` and the breaker stays closed.
    async fn retried<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.retry
            .run(
                |_| self.once(call()),
                |error| {
                    matches!(error, StoreError::Unavailable(_))
                        && self.breaker.state() == State::Closed
                },
            )
            .await
    }
}

impl Store for GuardedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.once(self.inner.ping()))
    }

    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()> {
        Box::pin(self.once(self.inner.create_session(session)))
    }

    fn session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SessionDetail>> {
        Box::pin(self.retried(move || self.inner.session(id, owner)))
    }

    fn list_sessions<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(self.retried(move || self.inner.list_sessions(query)))
    }

    fn delete_session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<Deleted>> {
        Box::pin(self.needed(move || self.inner.delete_session(id, owner)))
    }

    fn claim_job<'a>(&'a self, worker: &'a str, lease: Duration) -> StoreFuture<'a, Option<Job>> {
        Box::pin(self.once(self.inner.claim_job(worker, lease)))
    }

    fn renew_lease<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.retried(move || self.inner.renew_lease(id, worker, lease)))
    }

    fn complete_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        transcript: &'a Transcript,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.needed(move || self.inner.complete_job(id, worker, transcript)))
    }

    fn fail_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        error: &'a str,
        max_attempts: u32,
    ) -> StoreFuture<'a, SessionStatus> {
        Box::pin(self.needed(move || self.inner.fail_job(id, worker, error, max_attempts)))
    }

    fn release_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.needed(move || self.inner.release_job(id, worker, reason)))
    }

    fn transcript_of<'a>(&'a self, key: &'a ReuseKey) -> StoreFuture<'a, Option<Transcript>> {
        Box::pin(self.retried(move || self.inner.transcript_of(key)))
    }

    fn record_delivery<'a>(
        &'a self,
        session_id: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.once(self.inner.record_delivery(session_id, delivery)))
    }

    fn deliveries<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(self.retried(move || self.inner.deliveries(session_id)))
    }

    fn rename_owner<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.once(self.inner.rename_owner(from, to)))
    }

    fn recent_completed(&self, limit: u32) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(self.retried(move || self.inner.recent_completed(limit)))
    }

    fn unfinished_jobs<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.retried(move || self.inner.unfinished_jobs(owner)))
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(self.once(self.inner.stats()))
    }

    fn analyze(&self) -> StoreFuture<'_, String> {
        Box::pin(self.once(self.inner.analyze()))
    }

    fn figures(&self) -> Vec<(&'static str, f64)> {
        let mut figures = self.inner.figures();
        // perf-breaker's encoding: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced
        // closed.
        figures.push(("breaker_state", self.breaker.state().as_gauge()));
        figures
    }
}
