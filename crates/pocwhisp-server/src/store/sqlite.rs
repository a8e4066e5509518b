//! The embedded store: SQLite in the data directory (rusqlite, bundled), WAL mode so reads
//! never wait for the writer, connections reused through perf-pool's object pool, every call
//! on tokio's blocking threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use perf_pool::object::ObjectPool;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::{
    Deleted, Delivery, Job, ListQuery, NewSession, Page, ReuseKey, Segment, Session, SessionDetail,
    SessionStatus, Store, StoreError, StoreFuture, StoreStats, Summary, Transcript, from_micros,
    micros, options_of, options_text,
};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

type Slot = Result<Connection, String>;

/// The embedded SQLite store; `Clone` shares it.
#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<PathBuf>,
    connections: ObjectPool<Slot>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Opens a connection with the settings every one needs.
fn open(path: &Path) -> Slot {
    let connect = || -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL: readers never wait for the writer. FULL: each commit is on disk before it
        // returns, so an upload answered 2xx survives a power loss too (NORMAL could lose the
        // last commits before one), for one fsync of the log per write.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(Duration::from_secs(5))?;
        Ok(connection)
    };
    connect().map_err(|error| error.to_string())
}

/// Makes the database at `path` (created empty if missing, which SQLite takes as a new
/// database) and its log and shared-memory files readable by the server's user alone:
/// transcripts are private. SQLite gives the files it creates beside a database that
/// database's mode.
fn private_database(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

fn other(error: impl std::fmt::Display) -> StoreError {
    StoreError::Other(error.to_string())
}

fn sql(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::DiskFull => {
            StoreError::DiskFull(error.to_string())
        }
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(error.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `pocwhisp.sqlite3` in `data_dir` and runs the migrations.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the file cannot be opened or a migration fails.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = Arc::new(data_dir.join("pocwhisp.sqlite3"));
        let migrate_path = Arc::clone(&path);
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            private_database(&migrate_path)
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            let mut connection = open(&migrate_path).map_err(StoreError::Unavailable)?;
            embedded::migrations::runner()
                .run(&mut connection)
                .map_err(|error| other(format!("migration failed: {error}")))?;
            Ok(())
        })
        .await
        .map_err(other)??;
        let pool_path = Arc::clone(&path);
        let connections = ObjectPool::builder(move || open(&pool_path))
            .name("sqlite")
            .metrics_prefix("pocwhisp_pool")
            .max_idle(8)
            .build()
            .map_err(other)?;
        Ok(SqliteStore { path, connections })
    }

    /// Runs `work` on a pooled connection on a blocking thread.
    fn run<T, F>(&self, work: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let connections = self.connections.clone();
        let path = Arc::clone(&self.path);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut slot = connections.get();
                if slot.is_err() {
                    *slot = open(&path);
                }
                match &mut *slot {
                    Ok(connection) => work(connection),
                    Err(reason) => Err(StoreError::Unavailable(reason.clone())),
                }
            })
            .await
            .map_err(other)?
        })
    }
}

const SESSION_COLUMNS: &str = "id, owner, filename, original_name, sha256, duration, channels, \
     sample_rate, bits_per_sample, format, file_size, status, engine, model, processing_time, \
     error_message, callback_url, created_at, processed_at, updated_at, options, language";

fn session_of(row: &Row<'_>) -> rusqlite::Result<Session> {
    let status: String = row.get(11)?;
    Ok(Session {
        id: row.get(0)?,
        owner: row.get(1)?,
        filename: row.get(2)?,
        original_name: row.get(3)?,
        sha256: row.get(4)?,
        duration: row.get(5)?,
        channels: row.get(6)?,
        sample_rate: row.get(7)?,
        bits_per_sample: row.get(8)?,
        format: row.get(9)?,
        file_size: row.get::<_, i64>(10)? as u64,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        engine: row.get(12)?,
        model: row.get(13)?,
        processing_time: row.get(14)?,
        error_message: row.get(15)?,
        callback_url: row.get(16)?,
        created_at: from_micros(row.get(17)?),
        processed_at: row.get::<_, Option<i64>>(18)?.map(from_micros),
        updated_at: from_micros(row.get(19)?),
        options: options_of(&row.get::<_, String>(20)?),
        language: row.get(21)?,
    })
}

fn segments_of(connection: &Connection, session_id: &str) -> rusqlite::Result<Vec<Segment>> {
    let mut statement = connection.prepare_cached(
        "SELECT speaker, start_time, end_time, text, confidence, words, avg_logprob, \
         no_speech_prob FROM transcript_segments WHERE session_id = ?1 ORDER BY start_time, id",
    )?;
    let rows = statement.query_map([session_id], |row| {
        Ok(Segment {
            speaker: row.get(0)?,
            start_time: row.get(1)?,
            end_time: row.get(2)?,
            text: row.get(3)?,
            confidence: row.get(4)?,
            words: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
            avg_logprob: row.get(6)?,
            no_speech_prob: row.get(7)?,
        })
    })?;
    rows.collect()
}

fn summary_of(connection: &Connection, session_id: &str) -> rusqlite::Result<Option<Summary>> {
    connection
        .prepare_cached(
            "SELECT text, key_points, sentiment, model_used FROM summaries WHERE session_id = ?1",
        )?
        .query_row([session_id], |row| {
            let key_points: String = row.get(1)?;
            Ok(Summary {
                text: row.get(0)?,
                key_points: serde_json::from_str(&key_points).unwrap_or_default(),
                sentiment: row.get(2)?,
                model_used: row.get(3)?,
            })
        })
        .optional()
}

/// A transaction that takes the write lock at once. A deferred one that reads first and
/// then writes fails at once with "database is locked" (`SQLITE_BUSY_SNAPSHOT`, which the
/// busy timeout does not wait out) when another writer committed in between.
fn write_transaction(connection: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)
}

fn now() -> i64 {
    micros(SystemTime::now())
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|connection| {
            connection
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sql)
        })
    }

    fn create_session<'a>(&'a self, session: &'a NewSession) -> StoreFuture<'a, ()> {
        let session = session.clone();
        self.run(move |connection| {
            let created = micros(session.created_at);
            let transaction = write_transaction(connection)?;
            transaction
                .execute(
                    "INSERT INTO audio_sessions (id, owner, filename, original_name, sha256, \
                     duration, channels, sample_rate, bits_per_sample, format, file_size, status, \
                     callback_url, uploaded_at, created_at, updated_at, options) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12, ?13, ?13, ?13, ?14)",
                    params![
                        session.id,
                        session.owner,
                        session.filename,
                        session.original_name,
                        session.sha256,
                        session.duration,
                        session.channels,
                        session.sample_rate,
                        session.bits_per_sample,
                        session.format,
                        session.file_size as i64,
                        session.callback_url,
                        created,
                        options_text(&session.options)?,
                    ],
                )
                .map_err(sql)?;
            transaction
                .execute(
                    "INSERT INTO processing_jobs (session_id, job_type, status, priority, created_at) \
                     VALUES (?1, 'transcribe', 'queued', ?2, ?3)",
                    params![session.id, session.priority, created],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)
        })
    }

    fn session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<SessionDetail>> {
        let id = id.to_owned();
        let owner = owner.map(str::to_owned);
        self.run(move |connection| {
            let session = connection
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM audio_sessions WHERE id = ?1 \
                     AND (?2 IS NULL OR owner = ?2)"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_row(params![id, owner], session_of)
                        .optional()
                })
                .map_err(sql)?;
            let Some(session) = session else {
                return Ok(None);
            };
            let segments = segments_of(connection, &session.id).map_err(sql)?;
            let summary = summary_of(connection, &session.id).map_err(sql)?;
            Ok(Some(SessionDetail {
                session,
                segments,
                summary,
            }))
        })
    }

    fn list_sessions<'a>(&'a self, query: &'a ListQuery) -> StoreFuture<'a, Page> {
        let query = query.clone();
        self.run(move |connection| {
            let status = query.status.map(SessionStatus::as_str);
            let total: i64 = connection
                .prepare_cached(
                    "SELECT count(*) FROM audio_sessions WHERE (?1 IS NULL OR owner = ?1) \
                     AND (?2 IS NULL OR status = ?2)",
                )
                .and_then(|mut statement| {
                    statement.query_row(params![query.owner, status], |row| row.get(0))
                })
                .map_err(sql)?;
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM audio_sessions WHERE (?1 IS NULL OR owner = ?1) \
                     AND (?2 IS NULL OR status = ?2) ORDER BY created_at DESC, id DESC \
                     LIMIT ?3 OFFSET ?4"
                ))
                .map_err(sql)?;
            let sessions = statement
                .query_map(
                    params![
                        query.owner,
                        status,
                        i64::from(query.limit),
                        i64::try_from(query.offset).unwrap_or(i64::MAX)
                    ],
                    session_of,
                )
                .and_then(Iterator::collect)
                .map_err(sql)?;
            Ok(Page {
                sessions,
                total: total as u64,
            })
        })
    }

    fn delete_session<'a>(
        &'a self,
        id: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Option<Deleted>> {
        let id = id.to_owned();
        let owner = owner.map(str::to_owned);
        self.run(move |connection| {
            let transaction = write_transaction(connection)?;
            let found: Option<(String, String, String)> = transaction
                .query_row(
                    "SELECT filename, sha256, owner FROM audio_sessions WHERE id = ?1 \
                     AND (?2 IS NULL OR owner = ?2)",
                    params![id, owner],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((filename, sha256, session_owner)) = found else {
                return Ok(None);
            };
            transaction
                .execute("DELETE FROM audio_sessions WHERE id = ?1", [&id])
                .map_err(sql)?;
            let (others, owners): (i64, i64) = transaction
                .query_row(
                    "SELECT count(*), count(*) FILTER (WHERE owner = ?2) \
                     FROM audio_sessions WHERE sha256 = ?1",
                    params![sha256, session_owner],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
            Ok(Some(Deleted {
                filename,
                audio_in_use: others > 0,
                audio_kept_for_owner: owners > 0,
            }))
        })
    }

    fn claim_job<'a>(&'a self, worker: &'a str, lease: Duration) -> StoreFuture<'a, Option<Job>> {
        let worker = worker.to_owned();
        self.run(move |connection| {
            let now = now();
            let until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
            // Two processes on one file never both read the same queued job.
            let transaction = write_transaction(connection)?;
            let claimed: Option<(i64, String, i64)> = transaction
                .query_row(
                    "SELECT job.id, job.session_id, job.attempts FROM processing_jobs AS job \
                     JOIN audio_sessions AS session ON session.id = job.session_id \
                     WHERE job.status = 'queued' OR (job.status = 'running' AND job.locked_until < ?1) \
                     ORDER BY job.priority DESC, \
                       COALESCE((SELECT last_claimed FROM owner_turns \
                                 WHERE owner_turns.owner = session.owner), 0), \
                       job.id ASC LIMIT 1",
                    [now],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((id, session_id, attempts)) = claimed else {
                return Ok(None);
            };
            transaction
                .execute(
                    "UPDATE processing_jobs SET status = 'running', attempts = attempts + 1, \
                     locked_by = ?2, locked_until = ?3, started_at = ?4 WHERE id = ?1",
                    params![id, worker, until, now],
                )
                .map_err(sql)?;
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = 'processing', updated_at = ?2 WHERE id = ?1",
                    params![session_id, now],
                )
                .map_err(sql)?;
            let session = transaction
                .query_row(
                    &format!("SELECT {SESSION_COLUMNS} FROM audio_sessions WHERE id = ?1"),
                    [&session_id],
                    session_of,
                )
                .map_err(sql)?;
            transaction
                .execute(
                    "INSERT INTO owner_turns (owner, last_claimed) VALUES (?1, ?2) \
                     ON CONFLICT (owner) DO UPDATE SET last_claimed = excluded.last_claimed",
                    params![session.owner, now],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
            Ok(Some(Job {
                id,
                attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
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
        let worker = worker.to_owned();
        self.run(move |connection| {
            let until = now() + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
            let changed = connection
                .execute(
                    "UPDATE processing_jobs SET locked_until = ?3 \
                     WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
                    params![id, worker, until],
                )
                .map_err(sql)?;
            Ok(changed == 1)
        })
    }

    fn complete_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        transcript: &'a Transcript,
    ) -> StoreFuture<'a, bool> {
        let worker = worker.to_owned();
        let transcript = transcript.clone();
        self.run(move |connection| {
            let now = now();
            let transaction = write_transaction(connection)?;
            let session_id: Option<String> = transaction
                .query_row(
                    "SELECT session_id FROM processing_jobs \
                     WHERE id = ?1 AND locked_by = ?2 AND status = 'running'",
                    params![id, worker],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let Some(session_id) = session_id else {
                return Ok(false);
            };
            transaction
                .execute(
                    "DELETE FROM transcript_segments WHERE session_id = ?1",
                    [&session_id],
                )
                .map_err(sql)?;
            {
                let mut insert = transaction
                    .prepare_cached(
                        "INSERT INTO transcript_segments \
                         (session_id, speaker, start_time, end_time, text, confidence, words, \
                         avg_logprob, no_speech_prob) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .map_err(sql)?;
                for segment in &transcript.segments {
                    insert
                        .execute(params![
                            session_id,
                            segment.speaker,
                            segment.start_time,
                            segment.end_time,
                            segment.text,
                            segment.confidence,
                            serde_json::to_string(&segment.words).map_err(other)?,
                            segment.avg_logprob,
                            segment.no_speech_prob
                        ])
                        .map_err(sql)?;
                }
            }
            if let Some(summary) = &transcript.summary {
                transaction
                    .execute(
                        "INSERT INTO summaries (session_id, text, key_points, sentiment, model_used) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (session_id) DO UPDATE SET \
                         text = excluded.text, key_points = excluded.key_points, \
                         sentiment = excluded.sentiment, model_used = excluded.model_used",
                        params![
                            session_id,
                            summary.text,
                            serde_json::to_string(&summary.key_points).map_err(other)?,
                            summary.sentiment,
                            summary.model_used
                        ],
                    )
                    .map_err(sql)?;
            }
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = 'completed', engine = ?2, model = ?3, \
                     processing_time = ?4, error_message = NULL, processed_at = ?5, updated_at = ?5, \
                     language = ?6 WHERE id = ?1",
                    params![
                        session_id,
                        transcript.engine,
                        transcript.model,
                        transcript.processing_time,
                        now,
                        transcript.language
                    ],
                )
                .map_err(sql)?;
            transaction
                .execute(
                    "UPDATE processing_jobs SET status = 'completed', completed_at = ?2, \
                     locked_by = NULL, locked_until = NULL, error_message = NULL WHERE id = ?1",
                    params![id, now],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
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
        let worker = worker.to_owned();
        let error = error.to_owned();
        self.run(move |connection| {
            let now = now();
            let transaction = write_transaction(connection)?;
            let job: Option<(String, i64)> = transaction
                .query_row(
                    "SELECT session_id, attempts FROM processing_jobs \
                     WHERE id = ?1 AND locked_by = ?2",
                    params![id, worker],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((session_id, attempts)) = job else {
                return Ok(SessionStatus::Queued);
            };
            let final_failure = attempts >= i64::from(max_attempts);
            let (job_status, session_status) = if final_failure {
                ("failed", SessionStatus::Failed)
            } else {
                ("queued", SessionStatus::Queued)
            };
            transaction
                .execute(
                    "UPDATE processing_jobs SET status = ?2, error_message = ?3, locked_by = NULL, \
                     locked_until = NULL, completed_at = CASE WHEN ?2 = 'failed' THEN ?4 END \
                     WHERE id = ?1",
                    params![id, job_status, error, now],
                )
                .map_err(sql)?;
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = ?2, error_message = ?3, updated_at = ?4, \
                     processed_at = CASE WHEN ?2 = 'failed' THEN ?4 END WHERE id = ?1",
                    params![session_id, session_status.as_str(), error, now],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
            Ok(session_status)
        })
    }

    fn release_job<'a>(
        &'a self,
        id: i64,
        worker: &'a str,
        reason: &'a str,
    ) -> StoreFuture<'a, bool> {
        let worker = worker.to_owned();
        let reason = reason.to_owned();
        self.run(move |connection| {
            let now = now();
            let transaction = write_transaction(connection)?;
            let session_id: Option<String> = transaction
                .query_row(
                    "UPDATE processing_jobs SET status = 'queued', attempts = attempts - 1, \
                     error_message = ?3, locked_by = NULL, locked_until = NULL \
                     WHERE id = ?1 AND locked_by = ?2 AND status = 'running' RETURNING session_id",
                    params![id, worker, reason],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let Some(session_id) = session_id else {
                return Ok(false);
            };
            transaction
                .execute(
                    "UPDATE audio_sessions SET status = 'queued', error_message = ?2, \
                     updated_at = ?3 WHERE id = ?1",
                    params![session_id, reason, now],
                )
                .map_err(sql)?;
            transaction.commit().map_err(sql)?;
            Ok(true)
        })
    }

    fn transcript_of<'a>(&'a self, key: &'a ReuseKey) -> StoreFuture<'a, Option<Transcript>> {
        let key = key.clone();
        self.run(move |connection| {
            let found: Option<(String, f64, Option<String>)> = connection
                .query_row(
                    "SELECT id, processing_time, language FROM audio_sessions \
                     WHERE sha256 = ?1 AND engine = ?2 AND model = ?3 AND options = ?4 \
                     AND owner = ?5 AND status = 'completed' ORDER BY processed_at DESC LIMIT 1",
                    params![
                        key.sha256,
                        key.engine,
                        key.model,
                        options_text(&key.options)?,
                        key.owner
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((id, processing_time, language)) = found else {
                return Ok(None);
            };
            Ok(Some(Transcript {
                segments: segments_of(connection, &id).map_err(sql)?,
                summary: summary_of(connection, &id).map_err(sql)?,
                engine: key.engine,
                model: key.model,
                language,
                processing_time,
            }))
        })
    }

    fn record_delivery<'a>(
        &'a self,
        session_id: &'a str,
        delivery: &'a Delivery,
    ) -> StoreFuture<'a, ()> {
        let session_id = session_id.to_owned();
        let delivery = delivery.clone();
        self.run(move |connection| {
            connection
                .execute(
                    "INSERT INTO callback_deliveries (session_id, url, attempt, status_code, error, delivered_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        session_id,
                        delivery.url,
                        delivery.attempt,
                        delivery.status_code,
                        delivery.error,
                        micros(delivery.delivered_at)
                    ],
                )
                .map_err(sql)?;
            Ok(())
        })
    }

    fn deliveries<'a>(&'a self, session_id: &'a str) -> StoreFuture<'a, Vec<Delivery>> {
        let session_id = session_id.to_owned();
        self.run(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT url, attempt, status_code, error, delivered_at FROM callback_deliveries \
                     WHERE session_id = ?1 ORDER BY id",
                )
                .map_err(sql)?;
            statement
                .query_map([&session_id], |row| {
                    Ok(Delivery {
                        url: row.get(0)?,
                        attempt: row.get(1)?,
                        status_code: row.get(2)?,
                        error: row.get(3)?,
                        delivered_at: from_micros(row.get(4)?),
                    })
                })
                .and_then(Iterator::collect)
                .map_err(sql)
        })
    }

    fn rename_owner<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, u64> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.run(move |connection| {
            connection
                .execute(
                    "UPDATE audio_sessions SET owner = ?2 WHERE owner = ?1",
                    params![from, to],
                )
                .map(|moved| moved as u64)
                .map_err(sql)
        })
    }

    fn recent_completed(&self, limit: u32) -> StoreFuture<'_, Vec<(String, String)>> {
        self.run(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, owner FROM audio_sessions WHERE status = 'completed' \
                     ORDER BY processed_at DESC LIMIT ?1",
                )
                .map_err(sql)?;
            statement
                .query_map([i64::from(limit)], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(sql)
        })
    }

    fn unfinished_jobs<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64> {
        let owner = owner.to_owned();
        self.run(move |connection| {
            connection
                .query_row(
                    "SELECT count(*) FROM processing_jobs AS job \
                     JOIN audio_sessions AS session ON session.id = job.session_id \
                     WHERE job.status IN ('queued', 'running') AND session.owner = ?1",
                    [owner],
                    |row| row.get::<_, i64>(0),
                )
                .map(|count| u64::try_from(count).unwrap_or(0))
                .map_err(sql)
        })
    }

    fn stats(&self) -> StoreFuture<'_, StoreStats> {
        self.run(|connection| {
            connection
                .query_row(
                    "SELECT \
                     (SELECT count(*) FROM processing_jobs WHERE status = 'queued'), \
                     (SELECT count(*) FROM processing_jobs WHERE status = 'running'), \
                     (SELECT count(*) FROM audio_sessions)",
                    [],
                    |row| {
                        Ok(StoreStats {
                            jobs_queued: row.get::<_, i64>(0)? as u64,
                            jobs_running: row.get::<_, i64>(1)? as u64,
                            sessions: row.get::<_, i64>(2)? as u64,
                        })
                    },
                )
                .map_err(sql)
        })
    }

    fn analyze(&self) -> StoreFuture<'_, String> {
        self.run(|connection| {
            connection
                .execute_batch("ANALYZE; PRAGMA optimize;")
                .map_err(sql)?;
            let tables: i64 = connection
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'refinery_%'",
                    [],
                    |row| row.get(0),
                )
                .map_err(sql)?;
            Ok(format!(
                "ANALYZE and PRAGMA optimize on {tables} tables of the embedded store"
            ))
        })
    }
}
