//! [`PgPool`]: PostgreSQL on deadpool-postgres with the limits Go's `database/sql` users
//! expect and deadpool lacks: `max_open_conns`, `max_idle_conns`, `conn_max_lifetime`,
//! `conn_max_idle_time`, `min_idle_conns` warm-up, timeouts on every wait, a statement
//! timeout, a bounded statement cache, slow-query counting, a health check, and stats.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use perf_pool::pg::{PgPool, PgPoolConfig};
//!
//! let pool = PgPool::connect(PgPoolConfig::new("postgres://postgres@127.0.0.1:5432/pocwhisp")).await?;
//! let connection = pool.get().await?;
//! let row = connection.query_one("SELECT count(*) FROM audio_sessions", &[]).await?;
//! let sessions: i64 = row.get(0);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod manager;
mod pool;
mod stats;

pub use config::PgPoolConfig;
pub use error::PgPoolError;
pub use manager::Connection;
pub use pool::{PgConn, PgPool, PgPoolBuilder, PgTransaction};
pub use stats::PgPoolStats;
