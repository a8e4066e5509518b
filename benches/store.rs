//! The server's job queue and session reads on the embedded SQLite store and on PostgreSQL
//! side by side, each through the same `Store` trait the server uses.
//!
//! * `store/claim_complete/<backend>/<n> workers`: `n` workers claim and complete jobs until
//!   the queue is empty; the time is per job, so a lower figure with more workers is
//!   throughput gained. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite has one
//!   writer at a time.
//! * `store/read_session/<backend>`: one finished session with its segments and summary.
//!
//! PostgreSQL is the server at 127.0.0.1:5432 (`POCWHISP_BENCH_DATABASE_URL` to change), each
//! run in a schema of its own; its rows are skipped with a message when none answers.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench store`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pocwhisp_server::config::{DatabaseConfig, Secret};
use pocwhisp_server::store::{
    NewSession, PostgresStore, Segment, SqliteStore, Store, Summary, Transcript,
};
use tokio::runtime::Runtime;

const LEASE: Duration = Duration::from_secs(60);

fn session(n: u64) -> NewSession {
    NewSession {
        id: format!("bench-{n}-{}", fastrand::u64(..)),
        owner: "bench".to_owned(),
        filename: "audio/ab/abc".to_owned(),
        original_name: "bench.wav".to_owned(),
        sha256: format!("{n:064x}"),
        duration: 7.0,
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        format: "wav".to_owned(),
        file_size: 224_000,
        callback_url: None,
        priority: 0,
        options: Default::default(),
        created_at: SystemTime::now(),
    }
}

/// A transcript the size of a LibriVox file's: a dozen segments and a summary.
fn transcript() -> Transcript {
    Transcript {
        segments: (0..12)
            .map(|n| Segment {
                speaker: "speaker".to_owned(),
                start_time: f64::from(n),
                end_time: f64::from(n) + 0.8,
                text: "and mr john guess what and then at leisure to consider".to_owned(),
                confidence: 0.6,
                words: Vec::new(),
                avg_logprob: None,
                no_speech_prob: None,
            })
            .collect(),
        summary: Some(Summary {
            text: "and mr john guess what".to_owned(),
            key_points: vec!["john (1×)".to_owned(), "leisure (1×)".to_owned()],
            sentiment: "neutral".to_owned(),
            model_used: "extractive-v1".to_owned(),
        }),
        engine: "sphinx".to_owned(),
        model: "en-us".to_owned(),
        language: Some("en".to_owned()),
        processing_time: 1.5,
    }
}

/// A fresh PostgreSQL store in a schema of its own, or `None` when no server answers.
async fn postgres() -> Option<(Arc<dyn Store>, String)> {
    let base = std::env::var("POCWHISP_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    let schema = format!("pocwhisp_bench_{:08x}", fastrand::u32(..));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .ok()?;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    let mut config = DatabaseConfig {
        url: Some(Secret::new(url)),
        ..DatabaseConfig::default()
    };
    config.max_open_conns = 16;
    config.max_idle_conns = 16;
    let store = PostgresStore::connect(&config).await.ok()?;
    store.migrate().await.ok()?;
    Some((Arc::new(store), schema))
}

async fn drop_schema(schema: &str) {
    let base = std::env::var("POCWHISP_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    if let Ok((client, connection)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await;
    }
}

/// Stores `jobs` sessions, then has `workers` claim and complete them all: the time taken.
async fn drain(store: &Arc<dyn Store>, jobs: u64, workers: usize) -> Duration {
    for n in 0..jobs {
        store.create_session(&session(n)).await.unwrap();
    }
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let store = Arc::clone(store);
        running.spawn(async move {
            let name = format!("bench-worker-{worker}");
            let transcript = transcript();
            loop {
                match store.claim_job(&name, LEASE).await {
                    Ok(Some(job)) => {
                        store
                            .complete_job(job.id, &name, &transcript)
                            .await
                            .unwrap();
                    }
                    Ok(None) => return,
                    // SQLite's one writer: a busy answer under contention is a retry.
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        });
    }
    running.join_all().await;
    started.elapsed()
}

fn claims(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(runtime.block_on(SqliteStore::open(dir.path())).unwrap());
    let postgres = runtime.block_on(postgres());
    if postgres.is_none() {
        eprintln!("store: no PostgreSQL at 127.0.0.1:5432; its rows are skipped");
    }
    let mut group = c.benchmark_group("store/claim_complete");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let mut backends = vec![("sqlite", Arc::clone(&sqlite), vec![1, 4])];
    if let Some((store, _)) = &postgres {
        backends.push(("postgres", Arc::clone(store), vec![1, 4, 8]));
    }
    for (name, store, worker_counts) in &backends {
        for &workers in worker_counts {
            group.bench_function(format!("{name}/{workers} workers"), |b| {
                b.iter_custom(|jobs| runtime.block_on(drain(store, jobs, workers)));
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("store/read_session");
    group.throughput(Throughput::Elements(1));
    for (name, store, _) in &backends {
        let id = runtime.block_on(async {
            let new = session(0);
            store.create_session(&new).await.unwrap();
            let job = store.claim_job("reader", LEASE).await.unwrap().unwrap();
            store
                .complete_job(job.id, "reader", &transcript())
                .await
                .unwrap();
            job.session.id
        });
        group.bench_function(*name, |b| {
            b.iter(|| {
                runtime
                    .block_on(store.session(&id, Some("bench")))
                    .unwrap()
                    .unwrap()
            });
        });
    }
    group.finish();
    if let Some((_, schema)) = postgres {
        runtime.block_on(drop_schema(&schema));
    }
}

criterion_group!(benches, claims);
criterion_main!(benches);
