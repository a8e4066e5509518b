-- The tables of the original PocWhisp, with what the jobs and the owner checks need.
CREATE TABLE audio_sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    original_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    duration REAL NOT NULL,
    channels INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    bits_per_sample INTEGER NOT NULL,
    format TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    engine TEXT,
    model TEXT,
    processing_time REAL,
    error_message TEXT,
    callback_url TEXT,
    uploaded_at INTEGER NOT NULL,
    processed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX idx_audio_sessions_status ON audio_sessions (status);
CREATE INDEX idx_audio_sessions_created_at ON audio_sessions (created_at);
CREATE INDEX idx_audio_sessions_owner_created_at ON audio_sessions (owner, created_at);
CREATE INDEX idx_audio_sessions_sha256 ON audio_sessions (sha256);

CREATE TABLE transcript_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    speaker TEXT NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    text TEXT NOT NULL,
    confidence REAL NOT NULL
);
CREATE INDEX idx_transcript_segments_session_start ON transcript_segments (session_id, start_time);

CREATE TABLE summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL UNIQUE REFERENCES audio_sessions (id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    key_points TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    model_used TEXT NOT NULL
);

CREATE TABLE processing_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_until INTEGER,
    started_at INTEGER,
    completed_at INTEGER,
    error_message TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_processing_jobs_status_priority ON processing_jobs (status, priority);
CREATE INDEX idx_processing_jobs_session ON processing_jobs (session_id);

CREATE TABLE callback_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    delivered_at INTEGER NOT NULL
);
CREATE INDEX idx_callback_deliveries_session ON callback_deliveries (session_id);
