//! Buffer pools side by side: perf-pool's `BufferPool`, object-pool, lockfree-object-pool,
//! and a plain allocation of the same buffer.
//!
//! * `pool/buffer_get_put/4KiB` and `/1MiB`: take a buffer, write 64 bytes, give it back
//!   (clear it for the pools that do not), on one thread. At 4 KiB the allocator's own free
//!   lists compete; at 1 MiB an allocation is an `mmap` and pooling pays.
//!
//! * `pool/pg_checkout`: take a warm idle connection and give it back, through `PgPool` and
//!   through bare deadpool-postgres, and through deadpool-postgres with PgPool's wait, create
//!   and recycle timeouts, against the PostgreSQL at 127.0.0.1:5432 (skipped with a message
//!   when none answers). All recycle with deadpool's fast check.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench pool`

mod common;

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perf_pool::buffer::BufferPool;

const PAYLOAD: &[u8] = &[7; 64];

fn buffers(c: &mut Criterion) {
    for (label, size) in [("4KiB", 4 << 10), ("1MiB", 1 << 20)] {
        buffers_of(c, label, size);
    }
}

fn buffers_of(c: &mut Criterion, label: &str, size: usize) {
    let mut group = c.benchmark_group(format!("pool/buffer_get_put/{label}"));
    group.throughput(Throughput::Elements(1));

    let ours = BufferPool::default();
    group.bench_function("perf-pool", |b| {
        b.iter(|| {
            let mut buffer = ours.get(size);
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    let object_pool = object_pool::Pool::new(16, || BytesMut::with_capacity(size));
    group.bench_function("object-pool", |b| {
        b.iter(|| {
            let mut buffer = object_pool.pull(|| BytesMut::with_capacity(size));
            buffer.clear();
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    let lockfree = lockfree_object_pool::LinearObjectPool::new(
        move || BytesMut::with_capacity(size),
        |buffer: &mut BytesMut| buffer.clear(),
    );
    group.bench_function("lockfree-object-pool", |b| {
        b.iter(|| {
            let mut buffer = lockfree.pull();
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    group.bench_function("allocation", |b| {
        b.iter(|| {
            let mut buffer = BytesMut::with_capacity(size);
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });
    group.finish();
}

const DATABASE: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn pg_checkout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = perf_pool::pg::PgPoolConfig {
        max_open_conns: 4,
        max_idle_conns: 4,
        min_idle_conns: 1,
        reaper_interval: None,
        ..perf_pool::pg::PgPoolConfig::new(DATABASE)
    };
    let ours = match runtime.block_on(perf_pool::pg::PgPool::connect(config)) {
        Ok(pool) => pool,
        Err(error) => {
            println!("pool/pg_checkout skipped: no PostgreSQL at 127.0.0.1:5432 ({error})");
            return;
        }
    };
    let deadpool = |timeouts| {
        let pool = deadpool_postgres::Config {
            url: Some(DATABASE.to_owned()),
            pool: Some(deadpool_postgres::PoolConfig {
                max_size: 4,
                timeouts,
                ..deadpool_postgres::PoolConfig::default()
            }),
            ..deadpool_postgres::Config::default()
        }
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .expect("valid config");
        runtime.block_on(async { drop(pool.get().await.expect("a connection")) });
        pool
    };
    let bare = deadpool(deadpool_postgres::Timeouts::default());
    // PgPool's default 5 s wait, create and recycle timeouts, so this row isolates what
    // PgPool adds beyond them.
    let timed = deadpool(deadpool_postgres::Timeouts {
        wait: Some(Duration::from_secs(5)),
        create: Some(Duration::from_secs(5)),
        recycle: Some(Duration::from_secs(5)),
    });

    let mut group = c.benchmark_group("pool/pg_checkout");
    group.throughput(Throughput::Elements(1));
    group.bench_function("perf-pool", |b| {
        b.iter(|| {
            runtime.block_on(async { drop(black_box(ours.get().await.expect("a connection"))) })
        })
    });
    for (name, pool) in [
        ("deadpool-postgres", &bare),
        ("deadpool-postgres with timeouts", &timed),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async { drop(black_box(pool.get().await.expect("a connection"))) })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = buffers, pg_checkout
}
criterion_main!(benches);
