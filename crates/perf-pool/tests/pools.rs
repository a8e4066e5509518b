//! Buffer and object pools, and the registry.

use perf_pool::buffer::{BufferPool, BufferPoolConfig};
use perf_pool::manager::PoolManager;
use perf_pool::object::ObjectPool;

fn pool(max_retained_bytes: u64) -> BufferPool {
    BufferPool::new(BufferPoolConfig {
        classes: vec![1024, 4096],
        max_retained_bytes,
        ..BufferPoolConfig::default()
    })
    .unwrap()
}

#[test]
fn buffers_come_in_classes_and_are_reused_cleared() {
    let pool = pool(1 << 20);
    let mut small = pool.get(10);
    assert_eq!(small.capacity(), 1024);
    small.extend_from_slice(b"header");
    drop(small);
    let large = pool.get(2000);
    assert_eq!(
        large.capacity(),
        4096,
        "a 1 KiB buffer is not handed out for 2000 bytes"
    );
    let again = pool.get(1000);
    assert!(again.is_empty());
    assert_eq!(again.capacity(), 1024);
    let stats = pool.stats();
    assert_eq!((stats.gets, stats.hits, stats.misses), (3, 1, 2));
}

#[test]
fn retained_bytes_are_capped_and_can_be_shrunk() {
    // 16 KiB shared by two classes: the 4 KiB class keeps two buffers.
    let pool = pool(16 * 1024);
    let buffers: Vec<_> = (0..4).map(|_| pool.get(4096)).collect();
    drop(buffers);
    let stats = pool.stats();
    assert_eq!(
        (stats.returns, stats.dropped, stats.retained_bytes),
        (2, 2, 8192)
    );
    assert_eq!(pool.shrink_to(4096), 4096);
    assert_eq!(pool.stats().retained_bytes, 4096);
    pool.set_max_retained_bytes(0);
    assert_eq!(pool.stats().retained, 0);
}

#[test]
fn oversized_grown_and_frozen_buffers_do_not_come_back() {
    let pool = pool(1 << 20);
    drop(pool.get(1 << 20));
    let mut grown = pool.get(100);
    grown.extend_from_slice(&[0; 10_000]);
    drop(grown);
    let mut frozen = pool.get(100);
    frozen.extend_from_slice(b"segment");
    assert_eq!(frozen.freeze(), "segment");
    let stats = pool.stats();
    assert_eq!((stats.returns, stats.dropped, stats.retained), (0, 2, 0));
}

#[test]
fn a_buffer_that_shrank_below_its_class_is_not_taken_back() {
    let pool = pool(1 << 20);
    let mut buffer = pool.get(4096);
    buffer.extend_from_slice(&[1; 4096]);
    // `split_to` leaves the guard with what remains after the first 4000 bytes: a buffer
    // of 96 bytes that the 4 KiB class must not hand out again.
    let head = buffer.split_to(4000);
    assert_eq!(head.len(), 4000);
    drop(buffer);
    assert_eq!(pool.stats().dropped, 1);
    let again = pool.get(4096);
    assert!(again.capacity() >= 4096, "{}", again.capacity());
}

#[test]
fn counts_add_up_across_threads() {
    let pool = pool(64 << 20);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for i in 0..1000 {
                    let mut buffer = pool.get(512 + i % 3000);
                    buffer.extend_from_slice(b"x");
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.gets, 4000);
    assert_eq!(stats.hits + stats.misses, 4000);
    assert_eq!(stats.returns, 4000);
    assert!(
        stats.hits > 3900,
        "nearly every get is served from the pool: {}",
        stats.hits
    );
}

#[test]
fn invalid_classes_are_build_errors() {
    for classes in [vec![], vec![0, 10], vec![4096, 1024]] {
        let error = BufferPool::new(BufferPoolConfig {
            classes,
            max_retained_bytes: 1,
            ..BufferPoolConfig::default()
        })
        .unwrap_err();
        assert_eq!(error.field(), "classes");
    }
}

#[test]
fn objects_are_reset_capped_and_trimmed() {
    let pool = ObjectPool::builder(|| Vec::<u32>::with_capacity(8))
        .reset(|v| v.clear())
        .max_idle(2)
        .prefill(1)
        .build()
        .unwrap();
    let mut held: Vec<_> = (0..4).map(|_| pool.get()).collect();
    for object in &mut held {
        object.push(7);
    }
    drop(held);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses), (1, 3));
    assert_eq!((stats.returns, stats.dropped, stats.retained), (2, 2, 2));
    assert!(pool.get().is_empty(), "reset before reuse");
    assert_eq!(pool.trim_to(0), 2);
    assert_eq!(pool.stats().retained, 0);
    let error = ObjectPool::builder(String::new)
        .max_idle(1)
        .prefill(2)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "prefill");
}

#[test]
fn the_manager_reports_every_pool() {
    let manager = PoolManager::default();
    let contexts = ObjectPool::builder(String::new).build().unwrap();
    manager.register_objects("request_contexts", &contexts);
    drop(contexts.get());
    drop(manager.get_buffer(100));
    drop(manager.get_buffer(100));
    let snapshot = manager.snapshot();
    assert_eq!(
        snapshot.keys().collect::<Vec<_>>(),
        ["buffers", "request_contexts"]
    );
    assert_eq!((snapshot["buffers"].gets, snapshot["buffers"].hits), (2, 1));
    assert_eq!(snapshot["request_contexts"].misses, 1);
}

#[cfg(feature = "serde")]
#[test]
fn configurations_read_from_a_file_format() {
    use std::time::Duration;

    use perf_pool::pg::PgPoolConfig;
    use perf_pool::task::TaskPoolConfig;

    // The server's database keys, production values.
    let pg: PgPoolConfig = serde_json::from_str(
        r#"{"url": "postgres://app@db:5432/pocwhisp", "max_open_conns": 100, "max_idle_conns": 10,
            "conn_max_lifetime": "1h", "conn_max_idle_time": "10m"}"#,
    )
    .unwrap();
    assert_eq!((pg.max_open_conns, pg.max_idle_conns), (100, 10));
    assert_eq!(pg.conn_max_idle_time, Some(Duration::from_secs(600)));
    pg.validate().unwrap();
    let tasks: TaskPoolConfig = serde_json::from_str(
        r#"{"max_concurrent": 8, "kind_limits": {"transcription": 2}, "queue_timeout": "5s"}"#,
    )
    .unwrap();
    assert_eq!(tasks.kind_limits["transcription"], 2);
    assert_eq!(tasks.queue_size, 5000);
    let buffers: BufferPoolConfig =
        serde_json::from_str(r#"{"max_retained_bytes": 1048576}"#).unwrap();
    assert_eq!(buffers.classes.len(), 5);
    assert!(serde_json::from_str::<PgPoolConfig>(r#"{"max_open": 3}"#).is_err());
}
