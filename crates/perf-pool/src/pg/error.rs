use std::error::Error;
use std::fmt;

use crate::BuildError;

/// Why a connection or a query failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PgPoolError {
    /// The configuration is invalid.
    Config(BuildError),
    /// Every connection was in use for `wait_timeout`.
    WaitTimeout,
    /// Opening a connection took longer than `create_timeout`.
    CreateTimeout,
    /// Checking a reused connection took longer than `recycle_timeout`.
    RecycleTimeout,
    /// The pool was closed.
    Closed,
    /// The server or the connection reported an error.
    Postgres(tokio_postgres::Error),
}

impl fmt::Display for PgPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgPoolError::Config(error) => error.fmt(f),
            PgPoolError::WaitTimeout => {
                f.write_str("timed out waiting for a free database connection")
            }
            PgPoolError::CreateTimeout => f.write_str("timed out opening a database connection"),
            PgPoolError::RecycleTimeout => f.write_str("timed out checking a database connection"),
            PgPoolError::Closed => f.write_str("the database pool is closed"),
            PgPoolError::Postgres(error) => write!(f, "database error: {error}"),
        }
    }
}

impl Error for PgPoolError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PgPoolError::Postgres(error) => Some(error),
            PgPoolError::Config(error) => Some(error),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for PgPoolError {
    fn from(error: tokio_postgres::Error) -> Self {
        PgPoolError::Postgres(error)
    }
}

impl From<deadpool::managed::PoolError<tokio_postgres::Error>> for PgPoolError {
    fn from(error: deadpool::managed::PoolError<tokio_postgres::Error>) -> Self {
        use deadpool::managed::{PoolError, TimeoutType};
        match error {
            PoolError::Timeout(TimeoutType::Wait) => PgPoolError::WaitTimeout,
            PoolError::Timeout(TimeoutType::Create) => PgPoolError::CreateTimeout,
            PoolError::Timeout(TimeoutType::Recycle) => PgPoolError::RecycleTimeout,
            PoolError::Backend(error) => PgPoolError::Postgres(error),
            // No post-create hook is set and the runtime is always tokio, so these can only
            // mean the pool is unusable.
            PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                PgPoolError::Closed
            }
        }
    }
}
