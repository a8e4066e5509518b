//! PostgreSQL, when `database.url` is set: perf-pool's `PgPool` (deadpool-postgres) with its
//! bounded statement cache, statement timeout and slow-query counting; refinery migrations
//! and concurrently built indexes under an advisory lock, so that instances starting
//! together migrate once; jobs claimed with `FOR UPDATE SKIP LOCKED` and leases dated by the
//! database's clock, so that several instances share the queue whatever their own clocks say.

use std::time::{Duration, SystemTime};

use perf_pool::pg::{PgConn, PgPool, PgPoolConfig, PgPoolError, PgPoolStats};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::{
    Deleted, Delivery, Job, ListQuery, NewSession, Page, ReuseKey, Segment, Session, SessionDetail,
    SessionStatus, Store, StoreError, StoreFuture, StoreStats, Summary, Transcript, from_micros,
    micros, options_of, options_text,
};
use crate::config::DatabaseConfig;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The indexes the listings and lookups need (by status, by time, by owner, by hash), built after the
/// migrations with `CREATE INDEX CONCURRENTLY IF NOT EXISTS`: writers go on while a large
/// table is indexed, and a build an earlier start left invalid is dropped and redone.
const INDEXES: &[(&str, &str)] = &[
    ("idx_audio_sessions_status", "audio_sessions (status)"),
    (
        "idx_audio_sessions_created_at",
        "audio_sessions (created_at)",
    ),
    (
        "idx_audio_sessions_owner_created_at",
        "audio_sessions (owner, created_at)",
    ),
    ("idx_audio_sessions_sha256", "audio_sessions (sha256)"),
    (
        "idx_transcript_segments_session_start",
        "transcript_segments (session_id, start_time)",
    ),
    (
        "idx_processing_jobs_status_priority",
        "processing_jobs (status, priority)",
    ),
    (
        "idx_processing_jobs_session",
        "processing_jobs (session_id)",
    ),
    (
        "idx_callback_deliveries_session",
        "callback_deliveries (session_id)",
    ),
];

/// The tables `ANALYZE` refreshes.
const TABLES: &[&str] = &[
    "audio_sessions",
    "transcript_segments",
    "summaries",
    "processing_jobs",
    "callback_deliveries",
];

/// Taken (for the session) while migrating: "pocwhisp" in ASCII.
const MIGRATION_LOCK: i64 = 0x706f_6377_6869_7370;

/// The database's clock in microseconds since the Unix epoch: leases are dated by it.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

const SESSION_COLUMNS: &str = "id, owner, filename, original_name, sha256, duration, channels, \
     sample_rate, bits_per_sample, format, file_size, status, engine, model, processing_time, \
     error_message, callback_url, created_at, processed_at, updated_at, options, language";

/// The PostgreSQL store; `Clone` shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    url: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.stats())
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error as the routes see it: the database being away or overloaded is worth a
/// retry later (503), anything else is not.
fn pg(error: PgPoolError) -> StoreError {
    if let PgPoolError::Postgres(inner) = &error
        && inner.code() == Some(&SqlState::DISK_FULL)
    {
        return StoreError::DiskFull(error.to_string());
    }
    let transient = match &error {
        PgPoolError::WaitTimeout
        | PgPoolError::CreateTimeout
        | PgPoolError::RecycleTimeout
        | PgPoolError::Closed => true,
        PgPoolError::Postgres(error) => match error.code() {
            // No code: the connection broke or could not be made.
            None => true,
            Some(code) => {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::QUERY_CANCELED,
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        SqlState::TOO_MANY_CONNECTIONS,
                    ]
                    .contains(code)
            }
        },
        PgPoolError::Config(_) => false,
        _ => true,
    };
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Other(error.to_string())
    }
}

fn int(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

fn session_of(row: &Row) -> Session {
    let status: String = row.get(11);
    Session {
        id: row.get(0),
        owner: row.get(1),
        filename: row.get(2),
        original_name: row.get(3),
        sha256: row.get(4),
        duration: row.get(5),
        channels: u16::try_from(row.get::<_, i32>(6)).unwrap_or(0),
        sample_rate: u32::try_from(row.get::<_, i32>(7)).unwrap_or(0),
        bits_per_sample: u16::try_from(row.get::<_, i32>(8)).unwrap_or(0),
        format: row.get(9),
        file_size: u64::try_from(row.get::<_, i64>(10)).unwrap_or(0),
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        engine: row.get(12),
        model: row.get(13),
        processing_time: row.get(14),
        error_message: row.get(15),
        callback_url: row.get(16),
        created_at: from_micros(row.get(17)),
        processed_at: row.get::<_, Option<i64>>(18).map(from_micros),
        updated_at: from_micros(row.get(19)),
        options: options_of(&row.get::<_, String>(20)),
        language: row.get(21),
    }
}

async fn segments_of(connection: &PgConn, session_id: &str) -> Result<Vec<Segment>, StoreError> {
    let rows = connection
        .query(
            "SELECT speaker, start_time, end_time, text, confidence, words, avg_logprob, \
             no_speech_prob FROM transcript_segments WHERE session_id = $1 ORDER BY start_time, id",
            &[&session_id],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|row| Segment {
            speaker: row.get(0),
            start_time: row.get(1),
            end_time: row.get(2),
            text: row.get(3),
            confidence: row.get(4),
            words: serde_json::from_str(row.get(5)).unwrap_or_default(),
            avg_logprob: row.get(6),
            no_speech_prob: row.get(7),
        })
        .collect())
}

async fn summary_of(connection: &PgConn, session_id: &str) -> Result<Option<Summary>, StoreError> {
    let row = connection
        .query_opt(
            "SELECT text, key_points, sentiment, model_used FROM summaries WHERE session_id = $1",
            &[&session_id],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|row| Summary {
        text: row.get(0),
        key_points: serde_json::from_str(row.get(1)).unwrap_or_default(),
        sentiment: row.get(2),
        model_used: row.get(3),
    }))
}

fn lease_micros(lease: Duration) -> i64 {
    i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2)
}

impl PostgresStore {
    /// A store on `config.url`'s database. Nothing is connected yet: [`migrate`] does, so a
    /// server can start while the database is away and become ready when it comes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Other`] when the URL or a pool setting is invalid.
    ///
    /// [`migrate`]: Self::migrate
    pub async fn connect(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let url = config
            .url
            .as_ref()
            .ok_or_else(|| StoreError::Other("database.url is not set".to_owned()))?
            .expose()
            .to_owned();
        let pool = PgPool::connect(PgPoolConfig {
            max_open_conns: config.max_open_conns,
            max_idle_conns: config.max_idle_conns.min(config.max_open_conns),
            min_idle_conns: 0,
            conn_max_lifetime: Some(config.conn_max_lifetime),
            conn_max_idle_time: Some(config.conn_max_idle_time),
            statement_timeout: Some(config.statement_timeout),
            slow_query_threshold: config.slow_query_threshold,
            create_timeout: Duration::from_secs(3),
            name: "postgres".to_owned(),
            metrics_prefix: "pocwhisp_db_pool".to_owned(),
            ..PgPoolConfig::new(url.clone())
        })
        .await
        .map_err(|error| StoreError::Other(format!("database: {error}")))?;
        Ok(PostgresStore { pool, url })
    }

    /// Runs the migrations and builds the indexes, holding an advisory lock so that
    /// instances starting together do it once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] while the database cannot be reached; [`StoreError::Other`]
    /// when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // A connection of its own: refinery needs the client, and the session-level lock
        // must not outlive this in a pooled connection.
        let (mut client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(|error| pg(error.into()))?;
        let driver = tokio::spawn(connection);
        let result = async {
            // Polled, not waited for: a statement waiting on the lock would hold a snapshot,
            // and the holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to
            // end: two instances starting together would wait on each other for ever.
            loop {
                let locked: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
                    .await
                    .map_err(|error| pg(error.into()))?
                    .get(0);
                if locked {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            embedded::migrations::runner()
                .run_async(&mut client)
                .await
                .map_err(|error| StoreError::Other(format!("migration failed: {error}")))?;
            for (name, definition) in INDEXES {
                let invalid = client
                    .query_opt(
                        "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid",
                        &[name],
                    )
                    .await
                    .map_err(|error| pg(error.into()))?;
                if invalid.is_some() {
                    client
                        .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                        .await
                        .map_err(|error| pg(error.into()))?;
                }
                client
                    .batch_execute(&format!(
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}"
                    ))
                    .await
                    .map_err(|error| pg(error.into()))?;
            }
            Ok(())
        }
        .await;
        // Closing the connection releases the lock.
        drop(client);
        let _ = driver.await;
        result
    }

    /// The pool's figures.
    pub fn pool_stats(&self) -> PgPoolStats {
        self.pool.stats()
    }

    async fn connection(&self) -> Result<PgConn, StoreError> {
        self.pool.get().await.map_err(pg)
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.pool.health_check().await.map_err(pg)?;
            Ok(())
        })
    }

    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            let created = micros(session.created_at);
            transaction
                .execute(
                    "INSERT INTO audio_sessions (id, owner, filename, original_name, sha256, \
                     duration, channels, sample_rate, bits_per_sample, format, file_size, status, \
                     callback_url, uploaded_at, created_at, updated_at, options) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12, $13, $13, $13, $14)",
                    &[
                        &session.id,
                        &session.owner,
                        &session.filename,
                        &session.original_name,
                        &session.sha256,
                        &session.duration,
                        &i32::from(session.channels),
                        &int(session.sample_rate),
                        &i32::from(session.bits_per_sample),
                        &session.format,
                        &i64::try_from(session.file_size).unwrap_or(i64::MAX),
                        &session.callback_url,
                        &created,
                        &options_text(&session.options)?,
                    ],
                )
                .await
                .map_err(pg)?;
            transaction
                .execute(
                    "INSERT INTO processing_jobs (session_id, job_type, status, priority, created_at) \
                     VALUES ($1, 'transcribe', 'queued', $2, $3)",
                    &[&session.id, &session.priority, &created],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)
        })
    }

    fn session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SessionDetail>> {
        Box::pin(async move {
            let connection = self.connection().await?;
            // The three queries are pipelined on the one connection: one round trip, not
            // three. Segments and summary of a session that is not the caller's are dropped.
            let query = format!(
                "SELECT {SESSION_COLUMNS} FROM audio_sessions WHERE id = $1 \
                 AND ($2::text IS NULL OR owner = $2)"
            );
            let (row, segments, summary) = tokio::try_join!(
                async {
                    connection
                        .query_opt(&query, &[&id, &owner])
                        .await
                        .map_err(pg)
                },
                segments_of(&connection, id),
                summary_of(&connection, id),
            )?;
            Ok(row.map(|row| SessionDetail {
                session: session_of(&row),
                segments,
                summary,
            }))
        })
    }

    fn list_sessions<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let status = query.status.map(SessionStatus::as_str);
            let total: i64 = connection
                .query_one(
                    "SELECT count(*) FROM audio_sessions WHERE ($1::text IS NULL OR owner = $1) \
                     AND ($2::text IS NULL OR status = $2)",
                    &[&query.owner, &status],
                )
                .await
                .map_err(pg)?
                .get(0);
            let rows = connection
                .query(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM audio_sessions \
                         WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR status = $2) \
                         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                    ),
                    &[
                        &query.owner,
                        &status,
                        &i64::from(query.limit),
                        &i64::try_from(query.offset).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(Page {
                sessions: rows.iter().map(session_of).collect(),
                total: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    fn delete_session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<Deleted>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            // The cascade takes the job with it: a worker holding it loses its lease.
            let deleted = transaction
                .query_opt(
                    "DELETE FROM audio_sessions WHERE id = $1 AND ($2::text IS NULL OR owner = $2) \
                     RETURNING filename, sha256, owner",
                    &[&id, &owner],
                )
                .await
                .map_err(pg)?;
            let Some(deleted) = deleted else {
                transaction.rollback().await.map_err(pg)?;
                return Ok(None);
            };
            let (sha256, session_owner): (String, String) = (deleted.get(1), deleted.get(2));
            let sharing = transaction
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE owner = $2) \
                     FROM audio_sessions WHERE sha256 = $1",
                    &[&sha256, &session_owner],
                )
                .await
                .map_err(pg)?;
            let (others, owners): (i64, i64) = (sharing.get(0), sharing.get(1));
            transaction.commit().await.map_err(pg)?;
            Ok(Some(Deleted {
                filename: deleted.get(0),
                audio_in_use: others > 0,
                audio_kept_for_owner: owners > 0,
            }))
        })
    }

    fn claim_job<'a>(&'a self, worker: &'a str, lease: Duration) -> StoreFuture<'a, Option<Job>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            // SKIP LOCKED: instances claiming at once each take a different job, without
            // waiting on each other's row locks.
            let claimed = transaction
                .query_opt(
                    &format!(
                        "WITH now AS (SELECT {NOW} AS us), next AS ( \
                           SELECT job.id FROM processing_jobs AS job \
                           JOIN audio_sessions AS session ON session.id = job.session_id, now \
                           WHERE job.status = 'queued' OR (job.status = 'running' AND job.locked_until < now.us) \
                           ORDER BY job.priority DESC, \
                             COALESCE((SELECT last_claimed FROM owner_turns \
                                       WHERE owner_turns.owner = session.owner), 0), \
                             job.id \
                           LIMIT 1 FOR UPDATE OF job SKIP LOCKED) \
                         UPDATE processing_jobs AS job SET status = 'running', \
                           attempts = job.attempts + 1, locked_by = $1, \
                           locked_until = now.us + $2, started_at = now.us \
                         FROM next, now WHERE job.id = next.id \
                         RETURNING job.id, job.session_id, job.attempts"
                    ),
                    &[&worker, &lease_micros(lease)],
                )
                .await
                .map_err(pg)?;
            let Some(claimed) = claimed else {
                transaction.rollback().await.map_err(pg)?;
                return Ok(None);
            };
            let (id, session_id, attempts): (i64, String, i32) =
                (claimed.get(0), claimed.get(1), claimed.get(2));
            let now = micros(SystemTime::now());
            let row = transaction
                .query_one(
                    &format!(
                        "UPDATE audio_sessions SET status = 'processing', updated_at = $2 \
                         WHERE id = $1 RETURNING {SESSION_COLUMNS}"
                    ),
                    &[&session_id, &now],
                )
                .await
                .map_err(pg)?;
            let session = session_of(&row);
            transaction
                .execute(
                    "INSERT INTO owner_turns (owner, last_claimed) VALUES ($1, $2) \
                     ON CONFLICT (owner) DO UPDATE SET last_claimed = excluded.last_claimed",
                    &[&session.owner, &now],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)?;
            Ok(Some(Job {
                id,
                attempts: u32::try_from(attempts).unwrap_or(0),
                session,
            }))
        })
    }

    fn renew_lease<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        lease: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let changed = connection
                .execute(
                    &format!(
                        "UPDATE processing_jobs SET locked_until = {NOW} + $3 \
                         WHERE id = $1 AND locked_by = $2 AND status = 'running'"
                    ),
                    &[&id, &worker, &lease_micros(lease)],
                )
                .await
                .map_err(pg)?;
            Ok(changed == 1)
        })
    }

    fn complete_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        transcript: &'a Transcript,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            let held = transaction
                .query_opt(
                    "SELECT session_id FROM processing_jobs \
                     WHERE id = $1 AND locked_by = $2 AND status = 'running' FOR UPDATE",
                    &[&id, &worker],
                )
                .await
                .map_err(pg)?;
            let Some(held) = held else {
                transaction.rollback().await.map_err(pg)?;
                return Ok(false);
            };
            let session_id: String = held.get(0);
            let now = micros(SystemTime::now());
            transaction
                .execute(
                    "DELETE FROM transcript_segments WHERE session_id = $1",
                    &[&session_id],
                )
                .await
                .map_err(pg)?;
            // One statement for every segment: arrays unnested server-side.
            let segments = &transcript.segments;
            let speakers: Vec<&str> = segments.iter().map(|s| s.speaker.as_str()).collect();
            let starts: Vec<f64> = segments.iter().map(|s| s.start_time).collect();
            let ends: Vec<f64> = segments.iter().map(|s| s.end_time).collect();
            let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
            let confidences: Vec<f64> = segments.iter().map(|s| s.confidence).collect();
            let words = segments
                .iter()
                .map(|s| serde_json::to_string(&s.words))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|error| StoreError::Other(error.to_string()))?;
            let logprobs: Vec<Option<f64>> = segments.iter().map(|s| s.avg_logprob).collect();
            let no_speech: Vec<Option<f64>> = segments.iter().map(|s| s.no_speech_prob).collect();
            transaction
                .execute(
                    "INSERT INTO transcript_segments \
                     (session_id, speaker, start_time, end_time, text, confidence, words, \
                     avg_logprob, no_speech_prob) \
                     SELECT $1, * FROM unnest($2::text[], $3::float8[], $4::float8[], $5::text[], \
                     $6::float8[], $7::text[], $8::float8[], $9::float8[])",
                    &[
                        &session_id,
                        &speakers,
                        &starts,
                        &ends,
                        &texts,
                        &confidences,
                        &words,
                        &logprobs,
                        &no_speech,
                    ],
                )
                .await
                .map_err(pg)?;
            if let Some(summary) = &transcript.summary {
                let key_points = serde_json::to_string(&summary.key_points)
                    .map_err(|error| StoreError::Other(error.to_string()))?;
                transaction
                    .execute(
                        "INSERT INTO summaries (session_id, text, key_points, sentiment, model_used) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id) DO UPDATE SET \
                         text = excluded.text, key_points = excluded.key_points, \
                         sentiment = excluded.sentiment, model_used = excluded.model_used",
                        &[
                            &session_id,
                            &summary.text,
                            &key_points,
                            &summary.sentiment,
                            &summary.model_used,
                        ],
                    )
                    .await
                    .map_err(pg)?;
            }
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = 'completed', engine = $2, model = $3, \
                     processing_time = $4, error_message = NULL, processed_at = $5, updated_at = $5, \
                     language = $6 WHERE id = $1",
                    &[
                        &session_id,
                        &transcript.engine,
                        &transcript.model,
                        &transcript.processing_time,
                        &now,
                        &transcript.language,
                    ],
                )
                .await
                .map_err(pg)?;
            transaction
                .execute(
                    "UPDATE processing_jobs SET status = 'completed', completed_at = $2, \
                     locked_by = NULL, locked_until = NULL, error_message = NULL WHERE id = $1",
                    &[&id, &now],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)?;
            Ok(true)
        })
    }

    fn fail_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        error: &'a str,
        max_attempts: u32,
    ) -> StoreFuture<'a, SessionStatus> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            let held = transaction
                .query_opt(
                    "SELECT session_id, attempts FROM processing_jobs \
                     WHERE id = $1 AND locked_by = $2 FOR UPDATE",
                    &[&id, &worker],
                )
                .await
                .map_err(pg)?;
            let Some(held) = held else {
                transaction.rollback().await.map_err(pg)?;
                return Ok(SessionStatus::Queued);
            };
            let (session_id, attempts): (String, i32) = (held.get(0), held.get(1));
            let now = micros(SystemTime::now());
            let session_status = if i64::from(attempts) >= i64::from(max_attempts) {
                SessionStatus::Failed
            } else {
                SessionStatus::Queued
            };
            let job_status = match session_status {
                SessionStatus::Failed => "failed",
                _ => "queued",
            };
            transaction
                .execute(
                    "UPDATE processing_jobs SET status = $2, error_message = $3, locked_by = NULL, \
                     locked_until = NULL, completed_at = CASE WHEN $2 = 'failed' THEN $4::bigint END \
                     WHERE id = $1",
                    &[&id, &job_status, &error, &now],
                )
                .await
                .map_err(pg)?;
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = $2, error_message = $3, updated_at = $4, \
                     processed_at = CASE WHEN $2 = 'failed' THEN $4::bigint END WHERE id = $1",
                    &[&session_id, &session_status.as_str(), &error, &now],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)?;
            Ok(session_status)
        })
    }

    fn release_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let transaction = connection.transaction().await.map_err(pg)?;
            let released = transaction
                .query_opt(
                    "UPDATE processing_jobs SET status = 'queued', attempts = attempts - 1, \
                     error_message = $3, locked_by = NULL, locked_until = NULL \
                     WHERE id = $1 AND locked_by = $2 AND status = 'running' RETURNING session_id",
                    &[&id, &worker, &reason],
                )
                .await
                .map_err(pg)?;
            let Some(released) = released else {
                transaction.rollback().await.map_err(pg)?;
                return Ok(false);
            };
            let session_id: String = released.get(0);
            let now = micros(SystemTime::now());
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = 'queued', error_message = $2, \
                     updated_at = $3 WHERE id = $1",
                    &[&session_id, &reason, &now],
                )
                .await
                .map_err(pg)?;
            transaction.commit().await.map_err(pg)?;
            Ok(true)
        })
    }

    fn transcript_of<'a>(&'a self, key: &'a ReuseKey) -> StoreFuture<'a, Option<Transcript>> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let found = connection
                .query_opt(
                    "SELECT id, processing_time, language FROM audio_sessions \
                     WHERE sha256 = $1 AND engine = $2 AND model = $3 AND options = $4 \
                     AND owner = $5 AND status = 'completed' ORDER BY processed_at DESC LIMIT 1",
                    &[
                        &key.sha256,
                        &key.engine,
                        &key.model,
                        &options_text(&key.options)?,
                        &key.owner,
                    ],
                )
                .await
                .map_err(pg)?;
            let Some(found) = found else {
                return Ok(None);
            };
            let id: String = found.get(0);
            let (segments, summary) =
                tokio::try_join!(segments_of(&connection, &id), summary_of(&connection, &id))?;
            Ok(Some(Transcript {
                segments,
                summary,
                engine: key.engine.clone(),
                model: key.model.clone(),
                language: found.get(2),
                processing_time: found.get::<_, Option<f64>>(1).unwrap_or_default(),
            }))
        })
    }

    fn record_delivery<'a>(
        &'a self,
        session_id: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let connection = self.connection().await?;
            connection
                .execute(
                    "INSERT INTO callback_deliveries (session_id, url, attempt, status_code, error, delivered_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &session_id,
                        &delivery.url,
                        &int(delivery.attempt),
                        &delivery.status_code.map(i32::from),
                        &delivery.error,
                        &micros(delivery.delivered_at),
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn deliveries<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let rows = connection
                .query(
                    "SELECT url, attempt, status_code, error, delivered_at FROM callback_deliveries \
                     WHERE session_id = $1 ORDER BY id",
                    &[&session_id],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|row| Delivery {
                    url: row.get(0),
                    attempt: u32::try_from(row.get::<_, i32>(1)).unwrap_or(0),
                    status_code: row
                        .get::<_, Option<i32>>(2)
                        .and_then(|code| u16::try_from(code).ok()),
                    error: row.get(3),
                    delivered_at: from_micros(row.get(4)),
                })
                .collect())
        })
    }

    fn rename_owner<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let connection = self.connection().await?;
            connection
                .execute(
                    "UPDATE audio_sessions SET owner = $2 WHERE owner = $1",
                    &[&from, &to],
                )
                .await
                .map_err(pg)
        })
    }

    fn recent_completed(&self, limit: u32) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let rows = connection
                .query(
                    "SELECT id, owner FROM audio_sessions WHERE status = 'completed' \
                     ORDER BY processed_at DESC LIMIT $1",
                    &[&i64::from(limit)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn unfinished_jobs<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let row = connection
                .query_one(
                    "SELECT count(*) FROM processing_jobs AS job \
                     JOIN audio_sessions AS session ON session.id = job.session_id \
                     WHERE job.status IN ('queued', 'running') AND session.owner = $1",
                    &[&owner],
                )
                .await
                .map_err(pg)?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            let connection = self.connection().await?;
            let row = connection
                .query_one(
                    "SELECT \
                     (SELECT count(*) FROM processing_jobs WHERE status = 'queued'), \
                     (SELECT count(*) FROM processing_jobs WHERE status = 'running'), \
                     (SELECT count(*) FROM audio_sessions)",
                    &[],
                )
                .await
                .map_err(pg)?;
            let count = |index: usize| u64::try_from(row.get::<_, i64>(index)).unwrap_or(0);
            Ok(StoreStats {
                jobs_queued: count(0),
                jobs_running: count(1),
                sessions: count(2),
            })
        })
    }

    fn analyze(&self) -> StoreFuture<'_, String> {
        Box::pin(async move {
            let connection = self.connection().await?;
            connection
                .client()
                .batch_execute(&format!("ANALYZE {}", TABLES.join(", ")))
                .await
                .map_err(|error| pg(error.into()))?;
            let rows = connection
                .query(
                    "SELECT relname, reltuples::bigint FROM pg_class \
                     WHERE oid = ANY (ARRAY[to_regclass('audio_sessions'), to_regclass('transcript_segments'), \
                     to_regclass('summaries'), to_regclass('processing_jobs'), \
                     to_regclass('callback_deliveries')]::oid[]) ORDER BY relname",
                    &[],
                )
                .await
                .map_err(pg)?;
            let estimates: Vec<String> = rows
                .iter()
                .map(|row| {
                    let rows: i64 = row.get(1);
                    format!("{} ~{} rows", row.get::<_, String>(0), rows.max(0))
                })
                .collect();
            Ok(format!("ANALYZE on {}", estimates.join(", ")))
        })
    }

    fn figures(&self) -> Vec<(&'static str, f64)> {
        let stats = self.pool.stats();
        vec![
            ("db_connections", stats.open as f64),
            ("db_idle_connections", stats.idle as f64),
            ("db_waiting", stats.waiting as f64),
            ("db_queries_count", stats.queries as f64),
            (
                perf_profiler::snapshot::names::DB_SLOW_QUERIES,
                stats.slow_queries as f64,
            ),
            ("db_wait_time_seconds", stats.wait_time.as_secs_f64()),
            ("db_timeouts_count", stats.timeouts as f64),
        ]
    }
}
