//! TtlCache behaviour on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use perf_cache::clock::TokioClock;
use perf_cache::ttl::{TtlCache, TtlCacheBuilder, TtlConfig};
use tokio::time::{advance, sleep};

type Cache = TtlCache<String, String, TokioClock>;

fn cache(configure: impl FnOnce(TtlConfig) -> TtlConfig) -> Cache {
    let config = configure(TtlConfig {
        ttl: Duration::from_secs(60),
        ttl_jitter: 0.0,
        ..TtlConfig::default()
    });
    TtlCacheBuilder::from_config(config)
        .clock(TokioClock::new())
        .build()
        .unwrap()
}

fn key(k: &str) -> String {
    k.to_owned()
}

/// A loader that counts its calls and answers `value` after `delay`.
fn loader(
    calls: &Arc<AtomicUsize>,
    value: &'static str,
    delay: Duration,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + use<>
{
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, SeqCst);
            sleep(delay).await;
            Ok(value.to_owned())
        })
    }
}

fn failing(
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce() -> std::future::Ready<Result<String, String>> {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, SeqCst);
        std::future::ready(Err("backend down".to_owned()))
    }
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_their_ttl() {
    let cache = cache(|c| c);
    cache.insert(key("a"), "1".into());
    cache.insert_with(key("b"), "2".into(), Duration::from_secs(5), &[]);
    advance(Duration::from_secs(5)).await;
    assert_eq!(cache.get("a").as_deref(), Some("1"));
    assert_eq!(cache.get("b"), None, "b lived 5 s");
    advance(Duration::from_secs(55)).await;
    assert_eq!(cache.get("a"), None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn ttl_jitter_spreads_expiry_within_bounds() {
    let cache = cache(|c| TtlConfig {
        ttl_jitter: 0.5,
        ..c
    });
    for i in 0..200 {
        cache.insert(format!("k{i}"), "v".into());
    }
    advance(Duration::from_secs(29)).await;
    assert_eq!(
        (0..200)
            .filter(|i| cache.get(&format!("k{i}")).is_some())
            .count(),
        200
    );
    advance(Duration::from_secs(31)).await;
    let alive = (0..200)
        .filter(|i| cache.get(&format!("k{i}")).is_some())
        .count();
    assert!(
        (20..180).contains(&alive),
        "about half alive at the nominal TTL, got {alive}"
    );
    advance(Duration::from_secs(31)).await;
    assert_eq!(
        (0..200)
            .filter(|i| cache.get(&format!("k{i}")).is_some())
            .count(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_run_one_loader() {
    let cache = cache(|c| c);
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let load = loader(&calls, "loaded", Duration::from_millis(100));
            tokio::spawn(async move { cache.get_or_load(&key("k"), load).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "loaded");
    }
    assert_eq!(calls.load(SeqCst), 1);
    // An expired entry is reloaded once too.
    advance(Duration::from_secs(61)).await;
    let reloads: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let load = loader(&calls, "reloaded", Duration::from_millis(100));
            tokio::spawn(async move { cache.get_or_load(&key("k"), load).await })
        })
        .collect();
    for task in reloads {
        assert_eq!(task.await.unwrap().unwrap(), "reloaded");
    }
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!(cache.stats().expirations, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_the_old_value_while_one_caller_reloads() {
    let cache = cache(|c| TtlConfig {
        stale_while_revalidate: Some(Duration::from_secs(30)),
        ..c
    });
    cache.insert(key("k"), "old".into());
    advance(Duration::from_secs(70)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let refresher = {
        let cache = cache.clone();
        let load = loader(&calls, "new", Duration::from_secs(2));
        tokio::spawn(async move { cache.get_or_load(&key("k"), load).await })
    };
    tokio::task::yield_now().await;
    // While the refresh runs, others get the stale value at once, without loading.
    let started = tokio::time::Instant::now();
    for _ in 0..5 {
        let value = cache
            .get_or_load(&key("k"), loader(&calls, "unused", Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(value, "old");
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(refresher.await.unwrap().unwrap(), "new");
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(cache.get("k").as_deref(), Some("new"));
    assert_eq!(cache.stats().stale_hits, 5);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_value_only_within_its_window() {
    let cache = cache(|c| TtlConfig {
        stale_if_error: Some(Duration::from_secs(60)),
        ..c
    });
    let calls = Arc::new(AtomicUsize::new(0));
    cache.insert(key("k"), "last good".into());
    advance(Duration::from_secs(90)).await;
    let served = cache.get_or_load(&key("k"), failing(&calls)).await;
    assert_eq!(served.as_deref(), Ok("last good"));
    // Past both the TTL and the error window, the error comes through.
    advance(Duration::from_secs(40)).await;
    let failed = cache.get_or_load(&key("k"), failing(&calls)).await;
    assert_eq!(failed, Err("backend down".to_owned()));
    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_errors), (2, 2));
    // With no old value at all, an error is an error.
    let missing = cache.get_or_load(&key("other"), failing(&calls)).await;
    assert!(missing.is_err());
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_prefix_and_tag() {
    let cache = cache(|c| c);
    let ttl = Duration::from_secs(60);
    cache.insert_with(key("transcript:1"), "a".into(), ttl, &["session:1"]);
    cache.insert_with(key("transcript:1:gzip"), "b".into(), ttl, &["session:1"]);
    cache.insert_with(key("transcript:2"), "c".into(), ttl, &["session:2"]);
    cache.insert_with(
        key("audio_meta:ff"),
        "d".into(),
        ttl,
        &["session:1", "audio"],
    );
    assert!(cache.invalidate("transcript:2"));
    assert!(!cache.invalidate("transcript:2"));
    assert_eq!(cache.invalidate_prefix("transcript:1"), 2);
    assert_eq!(cache.invalidate_tag("audio"), 1);
    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn capacity_shrinks_under_pressure_and_is_restored() {
    let cache: TtlCache<u32, u32, TokioClock> = TtlCache::builder()
        .capacity(1_000)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    // Half the capacity: quick_cache splits it over shards and keys land in them at random,
    // so a cache filled to the brim would evict from its fuller shards.
    for i in 0..500 {
        cache.insert(i, i);
    }
    assert_eq!(cache.len(), 500);
    cache.set_capacity(100);
    let stats = cache.stats();
    // Each shard's share is rounded up, so the bound is a few percent loose.
    assert!(stats.entries <= 110, "{}", stats.entries);
    assert_eq!(stats.capacity, 100);
    assert!(
        stats.evictions >= 390,
        "evictions counted: {}",
        stats.evictions
    );
    cache.restore_capacity();
    for i in 0..500 {
        cache.insert(i, i);
    }
    assert_eq!(cache.len(), 500);
    assert_eq!(cache.stats().capacity, 1_000);
}

#[tokio::test(start_paused = true)]
async fn a_byte_weigher_bounds_memory() {
    let cache: TtlCache<u32, Vec<u8>, TokioClock> = TtlCache::builder()
        .capacity(64 * 1024)
        .weigher(|_, value: &Vec<u8>| value.len() as u64)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    for i in 0..100 {
        cache.insert(i, vec![0; 4096]);
    }
    let stats = cache.stats();
    assert!(stats.weight <= 68 * 1024, "weight {}", stats.weight);
    assert!(stats.entries <= 17);
}

#[tokio::test(start_paused = true)]
async fn dead_entries_are_swept_on_writes_without_a_background_task() {
    let cache = cache(|c| TtlConfig {
        sweep_interval: Duration::from_secs(120),
        ..c
    });
    for i in 0..10 {
        cache.insert(format!("old{i}"), "v".into());
    }
    advance(Duration::from_secs(121)).await;
    assert_eq!(cache.len(), 10, "nothing runs between writes");
    cache.insert(key("new"), "v".into());
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.stats().expirations, 10);
    assert_eq!(cache.purge_expired(), 0);
}

#[tokio::test(start_paused = true)]
async fn hit_rate_counts_stale_hits_as_served() {
    let cache = cache(|c| c);
    cache.insert(key("a"), "1".into());
    for _ in 0..3 {
        cache.get("a");
    }
    cache.get("missing");
    assert_eq!(cache.stats().hit_rate, 0.75);
}

#[test]
fn invalid_configuration_is_a_build_error() {
    for (config, field) in [
        (
            TtlConfig {
                capacity: 0,
                ..TtlConfig::default()
            },
            "capacity",
        ),
        (
            TtlConfig {
                ttl: Duration::ZERO,
                ..TtlConfig::default()
            },
            "ttl",
        ),
        (
            TtlConfig {
                ttl_jitter: 1.0,
                ..TtlConfig::default()
            },
            "ttl_jitter",
        ),
        (
            TtlConfig {
                metrics_prefix: "0x".into(),
                ..TtlConfig::default()
            },
            "metrics_prefix",
        ),
    ] {
        let error = TtlCache::<u32, u32>::new(config).unwrap_err();
        assert_eq!(error.field(), field);
    }
}

#[cfg(feature = "serde")]
#[test]
fn configuration_reads_from_a_file_format() {
    let config: TtlConfig = serde_json::from_str(
        r#"{"name": "transcripts", "ttl": "5m", "stale_if_error": "1h", "capacity": 2048}"#,
    )
    .unwrap();
    assert_eq!(config.ttl, Duration::from_secs(300));
    assert_eq!(config.stale_if_error, Some(Duration::from_secs(3600)));
    assert_eq!(config.ttl_jitter, TtlConfig::default().ttl_jitter);
    let responses: perf_cache::response::ResponseCacheConfig =
        serde_json::from_str(r#"{"default_ttl": "2m", "max_body_bytes": 65536}"#).unwrap();
    assert_eq!(responses.default_ttl, Duration::from_secs(120));
    assert!(serde_json::from_str::<TtlConfig>(r#"{"tll": "5m"}"#).is_err());
}
