//! A schema of its own on the real PostgreSQL for each test, dropped when the test ends
//! (passed or failed).

#![allow(dead_code)] // each test binary uses part of it

use tokio_postgres::NoTls;

/// The server tests use: `POCWHISP_TEST_DATABASE_URL`, else the `test` database at
/// 127.0.0.1:5432 that scripts/test makes sure of.
pub(crate) fn server_url() -> String {
    std::env::var("POCWHISP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A row as text, column by column (`None` for NULL).
pub(crate) type TextRow = Vec<Option<String>>;

/// Runs `statements` on the test database; the rows they returned, as text.
pub(crate) async fn query(statements: &str) -> Vec<TextRow> {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/test starts it)");
    let driver = tokio::spawn(connection);
    let messages = client.simple_query(statements).await.expect(statements);
    drop(client);
    let _ = driver.await;
    messages
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Runs `statement` on the test database.
pub(crate) async fn admin(statement: &str) {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/test starts it)");
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.expect(statement);
    drop(client);
    let _ = driver.await;
}

/// A schema created for one test.
pub(crate) struct TestSchema {
    pub(crate) name: String,
}

impl TestSchema {
    pub(crate) async fn create(test: &str) -> Self {
        let name = format!("pocwhisp_test_{test}_{:08x}", rand_u32());
        admin(&format!("CREATE SCHEMA {name}")).await;
        TestSchema { name }
    }

    /// The URL of the test database with this schema first in the search path, and the
    /// schema's name as the connections' `application_name` (so a test can find, and kill,
    /// exactly its own server's connections).
    pub(crate) fn url(&self) -> String {
        let base = server_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{separator}options=-c%20search_path%3D{name}&application_name={name}",
            name = self.name
        )
    }

    /// Terminates every connection of this schema's servers; how many there were.
    pub(crate) async fn kill_connections(&self) -> u64 {
        let rows = query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await;
        rows.len() as u64
    }

    /// Runs `statement` against the test database with this schema in the search path.
    pub(crate) async fn query(&self, statement: &str) -> Vec<TextRow> {
        query(&format!("SET search_path TO {}; {statement}", self.name)).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The test's servers may still hold connections (a transaction whose rollback
        // their stopped runtime never sent): end them first, or the drop waits on their
        // locks while blocking the very runtime that would release them.
        let statement = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{name}' AND pid <> pg_backend_pid(); \
             DROP SCHEMA IF EXISTS {name} CASCADE",
            name = self.name
        );
        // Drop runs inside the test's runtime: the cleanup gets a thread and runtime of its
        // own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&statement));
        })
        .join();
    }
}

/// Unique within the process (a counter) and across processes (the pid and the clock).
fn rand_u32() -> u32 {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    nanos ^ std::process::id().rotate_left(16) ^ count.wrapping_mul(0x9e37_79b9)
}
