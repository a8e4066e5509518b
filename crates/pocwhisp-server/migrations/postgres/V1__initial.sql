-- The tables of the original PocWhisp, as in the embedded store. Times are microseconds since
-- the Unix epoch (BIGINT), as there, so both backends compare and order them alike.
-- The secondary indexes are not here: the server builds them with CREATE INDEX CONCURRENTLY
-- after the migrations (see store/postgres.rs), which cannot run in a migration's transaction
-- and does not lock writers out of a large table.
CREATE TABLE audio_sessions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    original_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    channels INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    bits_per_sample INTEGER NOT NULL,
    format TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    status TEXT NOT NULL,
    engine TEXT,
    model TEXT,
    processing_time DOUBLE PRECISION,
    error_message TEXT,
    callback_url TEXT,
    uploaded_at BIGINT NOT NULL,
    processed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE transcript_segments (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    speaker TEXT NOT NULL,
    start_time DOUBLE PRECISION NOT NULL,
    end_time DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    confidence DOUBLE PRECISION NOT NULL
);

CREATE TABLE summaries (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE REFERENCES audio_sessions (id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    key_points TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    model_used TEXT NOT NULL
);

CREATE TABLE processing_jobs (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    job_type TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_until BIGINT,
    started_at BIGINT,
    completed_at BIGINT,
    error_message TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE callback_deliveries (
    id BIGSERIAL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES audio_sessions (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    delivered_at BIGINT NOT NULL
);
