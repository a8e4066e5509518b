//! PgPool against the real PostgreSQL at 127.0.0.1:5432, each test in a database of its own.
//!
//! These use real time: connection ages are measured on the OS clock, and tokio's paused
//! clock would jump ahead during network waits. So nothing here bets on a fixed sleep being
//! long enough on a loaded machine: a test waits for the condition it expects, up to a
//! generous deadline, and checks the limits that must not have passed yet with limits far
//! longer than the steps between them.

use std::time::{Duration, Instant};

use perf_pool::pg::{PgPool, PgPoolConfig, PgPoolError};
use tokio::time::sleep;
use tokio_postgres::NoTls;

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A database created for one test and dropped when the test ends.
struct TestDb {
    name: String,
}

impl TestDb {
    async fn create(test: &str) -> Self {
        let name = format!("perf_pool_{test}_{:08x}", fastrand::u32(..));
        admin(&format!("CREATE DATABASE {name}")).await;
        TestDb { name }
    }

    fn config(&self) -> PgPoolConfig {
        PgPoolConfig {
            reaper_interval: None,
            ..PgPoolConfig::new(format!("{SERVER}/{}", self.name))
        }
    }

    async fn drop_now(self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }
}

async fn admin(statement: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(&format!("{SERVER}/postgres"), NoTls)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (scripts/test starts it)");
    tokio::spawn(connection);
    client.query(statement, &[]).await.expect(statement)
}

/// The first pid other than `old` that a checkout gets, polling every 20 ms for up to 10 s;
/// a checkout that fails (its connection just died) is retried.
async fn replaced(pool: &PgPool, old: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(connection) = pool.get().await
            && let Ok(row) = connection.query_one("SELECT pg_backend_pid()", &[]).await
        {
            let pid: i32 = row.get(0);
            if pid != old {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "connection {old} never replaced");
        sleep(Duration::from_millis(20)).await;
    }
}

async fn backend_pid(pool: &PgPool) -> i32 {
    pool.get()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connections_past_their_lifetime_are_replaced() {
    let db = TestDb::create("lifetime").await;
    let lifetime = Duration::from_secs(2);
    let pool = PgPool::connect(PgPoolConfig {
        conn_max_lifetime: Some(lifetime),
        ..db.config()
    })
    .await
    .unwrap();
    let born = Instant::now();
    let first = backend_pid(&pool).await;
    assert_eq!(backend_pid(&pool).await, first, "reused while young");
    replaced(&pool, first).await;
    assert!(born.elapsed() >= lifetime, "not replaced before its time");
    assert_eq!(pool.stats().closed_lifetime, 1);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn idle_time_counts_from_the_return_not_the_checkout() {
    let db = TestDb::create("idle").await;
    let idle = Duration::from_secs(1);
    let pool = PgPool::connect(PgPoolConfig {
        conn_max_lifetime: None,
        conn_max_idle_time: Some(idle),
        ..db.config()
    })
    .await
    .unwrap();
    let connection = pool.get().await.unwrap();
    let first: i32 = connection
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // In use for longer than the idle limit, then returned: not idle yet.
    sleep(idle + Duration::from_millis(500)).await;
    drop(connection);
    assert_eq!(backend_pid(&pool).await, first);
    // Every checkout restarts the idle clock, so no polling here: one wait past the limit,
    // which a loaded machine can only make longer.
    sleep(idle + Duration::from_millis(500)).await;
    assert_ne!(backend_pid(&pool).await, first);
    assert_eq!(pool.stats().closed_idle, 1);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn idle_connections_beyond_max_idle_are_closed() {
    let db = TestDb::create("max_idle").await;
    let pool = PgPool::connect(PgPoolConfig {
        max_open_conns: 5,
        max_idle_conns: 2,
        ..db.config()
    })
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(pool.get().await.unwrap());
    }
    assert_eq!(pool.stats().in_use, 5);
    drop(held);
    assert_eq!(pool.stats().idle, 5);
    assert_eq!(pool.reap(), 3);
    let stats = pool.stats();
    assert_eq!((stats.open, stats.idle, stats.closed_surplus), (2, 2, 3));
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn min_idle_connections_are_opened_at_start() {
    let db = TestDb::create("warm").await;
    let pool = PgPool::connect(PgPoolConfig {
        min_idle_conns: 3,
        max_idle_conns: 3,
        ..db.config()
    })
    .await
    .unwrap();
    assert_eq!((pool.stats().open, pool.stats().idle), (3, 3));
    let rows = admin(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
        db.name
    ))
    .await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        3,
        "the server sees three sessions"
    );
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn an_exhausted_pool_times_out_instead_of_hanging() {
    let db = TestDb::create("exhausted").await;
    let pool = PgPool::connect(PgPoolConfig {
        max_open_conns: 1,
        max_idle_conns: 1,
        wait_timeout: Duration::from_millis(200),
        ..db.config()
    })
    .await
    .unwrap();
    let _held = pool.get().await.unwrap();
    let started = Instant::now();
    let error = pool.get().await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(error, PgPoolError::WaitTimeout), "{error}");
    assert!(
        (Duration::from_millis(190)..Duration::from_secs(10)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(pool.stats().timeouts, 1);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn the_pool_recovers_when_the_server_kills_its_connections() {
    for verify_on_checkout in [false, true] {
        let db = TestDb::create("killed").await;
        let pool = PgPool::connect(PgPoolConfig {
            verify_on_checkout,
            ..db.config()
        })
        .await
        .unwrap();
        let killed = backend_pid(&pool).await;
        admin(&format!("SELECT pg_terminate_backend({killed})")).await;
        replaced(&pool, killed).await;
        pool.health_check().await.unwrap();
        pool.close();
        db.drop_now().await;
    }
}

#[tokio::test]
async fn slow_queries_are_counted_and_the_statement_timeout_is_enforced() {
    let db = TestDb::create("slow").await;
    let pool = PgPool::connect(PgPoolConfig {
        slow_query_threshold: Duration::from_millis(50),
        statement_timeout: Some(Duration::from_millis(300)),
        ..db.config()
    })
    .await
    .unwrap();
    let connection = pool.get().await.unwrap();
    connection.query("SELECT 1", &[]).await.unwrap();
    connection.query("SELECT pg_sleep(0.1)", &[]).await.unwrap();
    let error = connection
        .query("SELECT pg_sleep(2)", &[])
        .await
        .unwrap_err();
    let PgPoolError::Postgres(error) = error else {
        panic!("expected a server error")
    };
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    let stats = pool.stats();
    assert_eq!((stats.queries, stats.slow_queries), (3, 2));
    drop(connection);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn the_statement_cache_is_bounded() {
    let db = TestDb::create("statements").await;
    let pool = PgPool::connect(PgPoolConfig {
        statement_cache_size: 2,
        max_open_conns: 1,
        max_idle_conns: 1,
        ..db.config()
    })
    .await
    .unwrap();
    let connection = pool.get().await.unwrap();
    for n in 0..5 {
        connection.query(&format!("SELECT {n}"), &[]).await.unwrap();
        assert!(connection.cached_statements() <= 2);
    }
    drop(connection);
    pool.close();
    db.drop_now().await;
}

async fn count(connection: &perf_pool::pg::PgConn) -> i64 {
    let row = connection.query_one("SELECT count(*) FROM items", &[]);
    row.await.unwrap().get(0)
}

#[tokio::test]
async fn transactions_commit_or_roll_back_and_their_queries_are_counted() {
    let db = TestDb::create("transactions").await;
    let pool = PgPool::connect(PgPoolConfig {
        statement_cache_size: 2,
        max_open_conns: 1,
        max_idle_conns: 1,
        ..db.config()
    })
    .await
    .unwrap();
    let mut connection = pool.get().await.unwrap();
    connection
        .execute("CREATE TABLE items (n integer PRIMARY KEY)", &[])
        .await
        .unwrap();

    let transaction = connection.transaction().await.unwrap();
    for n in 0..3 {
        transaction
            .execute("INSERT INTO items VALUES ($1)", &[&n])
            .await
            .unwrap();
    }
    let seen = transaction
        .query_opt("SELECT n FROM items WHERE n = $1", &[&2])
        .await
        .unwrap();
    assert_eq!(seen.map(|row| row.get::<_, i32>(0)), Some(2));
    transaction.commit().await.unwrap();
    assert_eq!(count(&connection).await, 3);

    // Dropped without a commit: rolled back, and the connection is usable after.
    let transaction = connection.transaction().await.unwrap();
    transaction
        .execute("INSERT INTO items VALUES ($1)", &[&10])
        .await
        .unwrap();
    drop(transaction);
    assert_eq!(count(&connection).await, 3);

    // A failed statement aborts the transaction; the connection is clean for the next one.
    let transaction = connection.transaction().await.unwrap();
    assert!(
        transaction
            .execute("INSERT INTO items VALUES ($1)", &[&1])
            .await
            .is_err()
    );
    drop(transaction);
    assert_eq!(count(&connection).await, 3);
    assert!(
        connection.cached_statements() <= 2,
        "the cache stays bounded"
    );
    // CREATE, 3 inserts, the lookup, COMMIT, 3 counts, 2 inserts.
    assert_eq!(pool.stats().queries, 11);
    drop(connection);
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn bad_configuration_and_unreachable_servers_fail_clearly() {
    let field = |config: PgPoolConfig| match config.validate() {
        Err(error) => error.field().to_owned(),
        Ok(_) => "valid".to_owned(),
    };
    assert_eq!(field(PgPoolConfig::new("")), "url");
    assert_eq!(field(PgPoolConfig::new("postgres://[oops")), "url");
    assert_eq!(
        field(PgPoolConfig {
            max_idle_conns: 30,
            ..PgPoolConfig::new(SERVER)
        }),
        "max_idle_conns"
    );
    assert_eq!(
        field(PgPoolConfig {
            max_open_conns: 0,
            ..PgPoolConfig::new(SERVER)
        }),
        "max_open_conns"
    );
    for (config, expected) in [
        (
            PgPoolConfig {
                conn_max_lifetime: Some(Duration::ZERO),
                ..PgPoolConfig::new(SERVER)
            },
            "conn_max_lifetime",
        ),
        (
            PgPoolConfig {
                conn_max_idle_time: Some(Duration::ZERO),
                ..PgPoolConfig::new(SERVER)
            },
            "conn_max_idle_time",
        ),
        (
            PgPoolConfig {
                reaper_interval: Some(Duration::ZERO),
                ..PgPoolConfig::new(SERVER)
            },
            "reaper_interval",
        ),
    ] {
        assert_eq!(field(config), expected);
    }
    let started = Instant::now();
    let unreachable = PgPool::connect(PgPoolConfig {
        min_idle_conns: 1,
        max_idle_conns: 1,
        create_timeout: Duration::from_secs(1),
        ..PgPoolConfig::new("postgres://postgres@127.0.0.1:1/none")
    })
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    assert!(
        matches!(
            unreachable,
            PgPoolError::Postgres(_) | PgPoolError::CreateTimeout
        ),
        "{unreachable}"
    );
}
