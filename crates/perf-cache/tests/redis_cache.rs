//! `RedisCache` as the L2 of `TieredCache`s standing for separate processes (each its own
//! client and connection), against a real Redis: `REDIS_URL`, else 127.0.0.1:6379 (which
//! `scripts/test` starts), each test under its own prefix. The test that stops Redis runs its
//! own `redis-server` on a free port. Real time: Redis keeps its own clock.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use perf_breaker::CircuitBreaker;
use perf_cache::clock::FastClock;
use perf_cache::l2::redis::{Client, Invalidation, RedisCache};
use perf_cache::l2::{SharedCache, TieredCache, TieredConfig};
use perf_cache::ttl::TtlCache;
use test_support::redis::{PrivateRedis, shared_url, unique_prefix};

fn redis(url: &str, prefix: &str) -> RedisCache {
    RedisCache::builder(Client::open(url).unwrap())
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn tiered(l2: RedisCache) -> Arc<TieredCache<FastClock>> {
    let config = TieredConfig {
        l2_timeout: Duration::from_secs(1),
        ..TieredConfig::default()
    };
    Arc::new(TieredCache::new(TtlCache::builder().build().unwrap(), Arc::new(l2), config).unwrap())
}

async fn load_counting(cache: &TieredCache<FastClock>, key: &str, loads: &AtomicUsize) -> Bytes {
    cache
        .get_or_load(key, || async {
            loads.fetch_add(1, SeqCst);
            Ok::<_, std::convert::Infallible>(Bytes::from_static(b"loaded"))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn what_one_process_loaded_is_a_hit_for_another() {
    let prefix = unique_prefix("shared");
    let first = tiered(redis(&shared_url(), &prefix));
    let second = tiered(redis(&shared_url(), &prefix));
    let loads = AtomicUsize::new(0);
    assert_eq!(load_counting(&first, "session-1", &loads).await, "loaded");
    assert_eq!(load_counting(&second, "session-1", &loads).await, "loaded");
    assert_eq!(
        loads.load(SeqCst),
        1,
        "the second process did not load it again"
    );
    assert_eq!(second.l2_hits(), 1);
    assert_eq!((first.l2_errors(), second.l2_errors()), (0, 0));
    // `insert` and `get` go through both levels too.
    first.insert("session-2", Bytes::from_static(b"kept")).await;
    assert_eq!(second.get("session-2").await.as_deref(), Some(&b"kept"[..]));
    assert_eq!(second.get("session-3").await, None);
}

#[tokio::test]
async fn a_delete_in_one_process_drops_the_copies_of_the_others_within_a_second() {
    let prefix = unique_prefix("invalidate");
    let first = tiered(redis(&shared_url(), &prefix));
    let second_l2 = redis(&shared_url(), &prefix);
    let second = tiered(second_l2.clone());
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let subscription = second_l2.subscribe({
        let second = Arc::clone(&second);
        let heard = Arc::clone(&heard);
        move |invalidation| {
            match &invalidation {
                Invalidation::Key(key) => {
                    second.l1().invalidate(key.as_str());
                }
                Invalidation::All => second.l1().clear(),
            }
            heard.lock().unwrap().push(invalidation);
        }
    });
    // Subscribed once the first `All` arrives.
    wait_for(|| !heard.lock().unwrap().is_empty()).await;
    let loads = AtomicUsize::new(0);
    load_counting(&first, "k", &loads).await;
    load_counting(&second, "k", &loads).await;
    assert!(
        second.l1().get("k").is_some(),
        "the second holds its own copy"
    );

    first.invalidate("k").await;
    wait_for(|| second.l1().get("k").is_none()).await;
    assert_eq!(
        heard.lock().unwrap().as_slice(),
        [Invalidation::All, Invalidation::Key("k".to_owned())]
    );
    load_counting(&second, "k", &loads).await;
    assert_eq!(loads.load(SeqCst), 2, "gone from L2 as well: loaded again");
    subscription.abort();
}

#[tokio::test]
async fn values_written_in_another_format_are_misses() {
    let prefix = unique_prefix("format");
    let client = || Client::open(shared_url()).unwrap();
    let old = RedisCache::builder(client())
        .prefix(&prefix)
        .format_version(1)
        .build()
        .unwrap();
    let new = RedisCache::builder(client())
        .prefix(&prefix)
        .format_version(2)
        .build()
        .unwrap();
    old.set(
        "k",
        Bytes::from_static(b"v1 layout"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(new.get("k").await.unwrap(), None);
    assert_eq!(
        old.get("k").await.unwrap().as_deref(),
        Some(&b"v1 layout"[..])
    );
    // Bytes some other program wrote under the key are no value either.
    let mut raw = client().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{prefix}:k"))
        .arg("plain")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    assert_eq!(old.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn values_expire_after_their_ttl() {
    let cache = redis(&shared_url(), &unique_prefix("ttl"));
    cache
        .set("k", Bytes::from_static(b"v"), Duration::from_millis(150))
        .await
        .unwrap();
    assert!(cache.get("k").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn redis_down_is_a_miss_served_by_l1_and_the_loader_until_it_is_back() {
    let mut server = PrivateRedis::start();
    let breaker = CircuitBreaker::builder()
        .name("redis")
        .failure_threshold(2)
        .open_duration(Duration::from_millis(300))
        .build()
        .unwrap();
    let l2 = RedisCache::builder(Client::open(server.url()).unwrap())
        .prefix(unique_prefix("down"))
        .timeout(Duration::from_millis(200))
        .breaker(breaker)
        .build()
        .unwrap();
    let cache = tiered(l2.clone());
    let loads = AtomicUsize::new(0);
    load_counting(&cache, "cached", &loads).await;

    server.stop();
    assert_eq!(load_counting(&cache, "cached", &loads).await, "loaded");
    assert_eq!(loads.load(SeqCst), 1, "L1 still answers");
    for key in ["a", "b", "c"] {
        assert_eq!(load_counting(&cache, key, &loads).await, "loaded");
    }
    assert_eq!(loads.load(SeqCst), 4, "misses are loaded, not failed");
    assert!(l2.is_degraded(), "the breaker opened");
    let started = std::time::Instant::now();
    assert!(l2.get("a").await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "an open breaker does not wait"
    );

    let _server = PrivateRedis::start_on(server.port());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while l2
        .set("back", Bytes::from_static(b"yes"), Duration::from_secs(60))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!l2.is_degraded());
    assert_eq!(l2.get("back").await.unwrap().as_deref(), Some(&b"yes"[..]));
}

async fn wait_for(condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
