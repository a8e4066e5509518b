//! Storage: the [`Store`] contract the routes and jobs use, backend-neutral, and its
//! backends (the embedded SQLite default; PostgreSQL when `database.url` is set). Both run
//! versioned migrations at start and pass one conformance suite (`tests/store.rs`).
//!
//! Times are whole microseconds since the Unix epoch in both backends, so ordering and
//! lease comparisons are integer comparisons.

mod guarded;
mod postgres;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::engine::DecodeOptions;

pub use guarded::GuardedStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed, whatever the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or is not answering: worth a retry later.
    Unavailable(String),
    /// The database's disk is full: an answer about space, not a database that is down, so
    /// it neither trips the breaker nor is retried blindly.
    DiskFull(String),
    /// Anything else: a bug, a constraint, a corrupt file.
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(reason) => write!(f, "storage unavailable: {reason}"),
            StoreError::DiskFull(reason) => write!(f, "storage disk full: {reason}"),
            StoreError::Other(reason) => write!(f, "storage error: {reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Stored, waiting for a worker.
    Queued,
    /// A worker holds its job.
    Processing,
    /// Transcribed.
    Completed,
    /// Failed every attempt.
    Failed,
}

impl SessionStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Queued => "queued",
            SessionStatus::Processing => "processing",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
        }
    }

    /// From the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => SessionStatus::Queued,
            "processing" => SessionStatus::Processing,
            "completed" => SessionStatus::Completed,
            "failed" => SessionStatus::Failed,
            _ => return None,
        })
    }
}

/// An accepted upload, stored with its job in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// The session id (a UUID).
    pub id: String,
    /// Who uploaded it.
    pub owner: String,
    /// The stored audio file, relative to the data directory.
    pub filename: String,
    /// The name the client gave.
    pub original_name: String,
    /// SHA-256 of the audio, hex.
    pub sha256: String,
    /// Seconds of audio.
    pub duration: f64,
    /// 1 or 2.
    pub channels: u16,
    /// Hz of the source.
    pub sample_rate: u32,
    /// Bits per sample of the source (0 for compressed formats).
    pub bits_per_sample: u16,
    /// `wav`, `flac`, `mp3`, `ogg`.
    pub format: String,
    /// Bytes uploaded.
    pub file_size: u64,
    /// Where to POST the result when the job ends.
    pub callback_url: Option<String>,
    /// The job's priority (higher first).
    pub priority: i32,
    /// How it is to be decoded.
    pub options: DecodeOptions,
    /// When it was accepted.
    pub created_at: SystemTime,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// Who uploaded it.
    pub owner: String,
    /// The stored audio file, relative to the data directory.
    pub filename: String,
    /// The name the client gave.
    pub original_name: String,
    /// SHA-256 of the audio, hex.
    pub sha256: String,
    /// Seconds of audio.
    pub duration: f64,
    /// 1 or 2.
    pub channels: u16,
    /// Hz of the source.
    pub sample_rate: u32,
    /// Bits per sample of the source.
    pub bits_per_sample: u16,
    /// The source format.
    pub format: String,
    /// Bytes uploaded.
    pub file_size: u64,
    /// Where it is in its life.
    pub status: SessionStatus,
    /// The engine that transcribed it.
    pub engine: Option<String>,
    /// The engine's model.
    pub model: Option<String>,
    /// Seconds the transcription took.
    pub processing_time: Option<f64>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Where the result is POSTed.
    pub callback_url: Option<String>,
    /// When it was accepted.
    pub created_at: SystemTime,
    /// When it was transcribed (or failed for good).
    pub processed_at: Option<SystemTime>,
    /// Last change.
    pub updated_at: SystemTime,
    /// How it is to be decoded.
    pub options: DecodeOptions,
    /// The language of its transcript (ISO-639-1), once transcribed: the one asked for, or
    /// the one the engine detected.
    pub language: Option<String>,
}

/// One stretch of speech by one speaker.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Segment {
    /// `left`, `right`, or `speaker` for mono audio.
    pub speaker: String,
    /// Seconds from the start.
    pub start_time: f64,
    /// Seconds from the start.
    pub end_time: f64,
    /// The words.
    pub text: String,
    /// The engine's confidence, 0 to 1.
    pub confidence: f64,
    /// The words with their times, for the OpenAI endpoint's word timestamps (not part of
    /// the original API's segment).
    #[serde(skip)]
    pub words: Vec<TimedWord>,
    /// The decoder's mean log-probability of the segment's tokens, when it gives one
    /// (Whisper), for `verbose_json`.
    #[serde(skip)]
    pub avg_logprob: Option<f64>,
    /// The decoder's probability that the segment's window held no speech, when it gives
    /// one (Whisper), for `verbose_json`.
    #[serde(skip)]
    pub no_speech_prob: Option<f64>,
}

/// One word of a segment, as OpenAI's `words` list has it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TimedWord {
    /// The word.
    pub word: String,
    /// Seconds from the start.
    pub start: f64,
    /// Seconds from the start.
    pub end: f64,
}

/// A summary of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// In a few sentences.
    pub text: String,
    /// The main points.
    pub key_points: Vec<String>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: String,
    /// What made it.
    pub model_used: String,
}

/// A session with its transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDetail {
    /// The session.
    pub session: Session,
    /// Its segments in time order.
    pub segments: Vec<Segment>,
    /// Its summary, once transcribed.
    pub summary: Option<Summary>,
}

/// What a finished job stores.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Segments in time order.
    pub segments: Vec<Segment>,
    /// The summary.
    pub summary: Option<Summary>,
    /// The engine's name.
    pub engine: String,
    /// The engine's model.
    pub model: String,
    /// The language of the text (ISO-639-1), when known.
    pub language: Option<String>,
    /// Seconds the transcription took.
    pub processing_time: f64,
}

/// What makes a stored transcript reusable for new audio: the same bytes, decoded by the same
/// engine and model with the same options.
#[derive(Debug, Clone, PartialEq)]
pub struct ReuseKey {
    /// Whose sessions may lend their transcript: only the uploader's own, so that no user
    /// learns from a transcript's speed or figures that another uploaded the same audio.
    pub owner: String,
    /// SHA-256 of the audio.
    pub sha256: String,
    /// The engine's name.
    pub engine: String,
    /// The engine's model.
    pub model: String,
    /// How it was decoded.
    pub options: DecodeOptions,
}

/// `options` as stored: JSON with every field, in a fixed order, so equal options compare
/// equal as text.
pub(crate) fn options_text(options: &DecodeOptions) -> Result<String, StoreError> {
    serde_json::to_string(options).map_err(|error| StoreError::Other(error.to_string()))
}

/// Stored options; a row from before they were stored (`{}`) reads as the defaults.
pub(crate) fn options_of(text: &str) -> DecodeOptions {
    serde_json::from_str(text).unwrap_or_default()
}

/// A job a worker holds, with its session.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job id.
    pub id: i64,
    /// Attempts including this one.
    pub attempts: u32,
    /// The session to transcribe.
    pub session: Session,
}

/// Which sessions a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this owner's (users); `None` for all (admins).
    pub owner: Option<String>,
    /// Only sessions in this state.
    pub status: Option<SessionStatus>,
    /// At most this many.
    pub limit: u32,
    /// After skipping this many, newest first.
    pub offset: u64,
}

/// One page of a listing and the real total.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The sessions, newest first.
    pub sessions: Vec<Session>,
    /// All sessions the query matches.
    pub total: u64,
}

/// A deleted session: its audio file, and whether another session still uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The stored audio file.
    pub filename: String,
    /// Another session has the same audio: keep the file.
    pub audio_in_use: bool,
    /// Another session of the same owner has the same audio: what that owner is told (that
    /// another user's session has it is not theirs to know).
    pub audio_kept_for_owner: bool,
}

/// One delivery attempt of a callback.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Where.
    pub url: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When (RFC 3339 in JSON).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String)]
    pub delivered_at: SystemTime,
}

fn as_rfc3339<S: serde::Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_rfc3339_micros(*time))
}

/// Figures for the profiler and the health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Jobs waiting.
    pub jobs_queued: u64,
    /// Jobs held by a worker.
    pub jobs_running: u64,
    /// Sessions stored.
    pub sessions: u64,
}

/// The storage contract; see the [module docs](self). Object-safe, so the server holds an
/// `Arc<dyn Store>` chosen by configuration.
pub trait Store: Send + Sync + fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// A round trip to the database.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Stores `session` and its transcription job, in one transaction.
    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()>;

    /// The session `id` with its transcript; with `owner`, only if it is theirs.
    fn session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SessionDetail>>;

    /// A page of sessions, newest first, and the real total.
    fn list_sessions<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, Page>;

    /// Deletes the session `id` (with `owner`, only if it is theirs), its segments, summary,
    /// job and deliveries.
    fn delete_session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<Deleted>>;

    /// Claims the next job among those queued or whose lease ran out (their worker died):
    /// the highest priority; then a fair share, the job of the owner whose last claim is the
    /// oldest (owners take turns), so one user's many uploads do not hold everyone else's
    /// behind them; then the oldest job. `None` when there is none. The claim counts an attempt and holds the
    /// job for `lease`.
    fn claim_job<'a>(&'a self, worker: &'a str, lease: Duration) -> StoreFuture<'a, Option<Job>>;

    /// Jobs of `owner` not finished: queued or running.
    fn unfinished_jobs<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64>;

    /// Extends `worker`'s lease on job `id`; false when it no longer holds it (the session
    /// was deleted, or the lease ran out and another worker took the job).
    fn renew_lease<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Stores the transcript of job `id` and marks it done, if `worker` still holds it.
    fn complete_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        transcript: &'a Transcript,
    ) -> StoreFuture<'a, bool>;

    /// Records a failed attempt of job `id`: back to the queue, or `failed` with `error` once
    /// it has had `max_attempts`. Returns the session's new status.
    fn fail_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        error: &'a str,
        max_attempts: u32,
    ) -> StoreFuture<'a, SessionStatus>;

    /// Gives job `id` back to the queue without spending an attempt, if `worker` still holds
    /// it: the engine could not be reached, which says nothing about the audio. `reason` is
    /// kept as the session's last error. Returns whether the job was held.
    fn release_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// A stored transcript that `key` says can be reused.
    fn transcript_of<'a>(&'a self, key: &'a ReuseKey) -> StoreFuture<'a, Option<Transcript>>;

    /// Records a callback delivery attempt.
    fn record_delivery<'a>(
        &'a self,
        session_id: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()>;

    /// The callback deliveries of a session, oldest first.
    fn deliveries<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Vec<Delivery>>;

    /// Gives every session owned by `from` to `to`, for an identity whose spelling changed;
    /// how many moved.
    fn rename_owner<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, u64>;

    /// The most recently completed sessions (id and owner), for cache warm-up.
    fn recent_completed(&self, limit: u32) -> StoreFuture<'_, Vec<(String, String)>>;

    /// Counts of jobs and sessions.
    fn stats(&self) -> StoreFuture<'_, StoreStats>;

    /// Refreshes the planner's statistics (`ANALYZE`); says what it did.
    fn analyze(&self) -> StoreFuture<'_, String>;

    /// The backend's own figures for the profiler's snapshot (`db_connections`, ...), read
    /// without a round trip.
    fn figures(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Microseconds since the Unix epoch.
pub(crate) fn micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The time `micros` microseconds after the Unix epoch.
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// RFC 3339 with microseconds, UTC.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}
