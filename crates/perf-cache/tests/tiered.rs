//! The tiered cache with an in-memory L2 standing in for a shared cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use perf_cache::l2::{SharedCache, SharedCacheFuture, TieredCache, TieredConfig};
use perf_cache::ttl::TtlCache;

/// A shared cache in a map; `down` makes every operation fail.
#[derive(Default)]
struct MapL2 {
    entries: Mutex<HashMap<String, Bytes>>,
    down: AtomicBool,
    /// Every operation hangs, as a shared cache behind a dead network path does.
    hung: AtomicBool,
}

impl MapL2 {
    async fn check(&self) -> Result<(), perf_cache::l2::SharedCacheError> {
        if self.hung.load(SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(SeqCst) {
            Err("connection refused".into())
        } else {
            Ok(())
        }
    }
}

impl SharedCache for MapL2 {
    fn get<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            self.check().await?;
            Ok(self.entries.lock().unwrap().get(key).cloned())
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, _ttl: Duration) -> SharedCacheFuture<'a, ()> {
        Box::pin(async move {
            self.check().await?;
            self.entries.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> SharedCacheFuture<'a, ()> {
        Box::pin(async move {
            self.check().await?;
            self.entries.lock().unwrap().remove(key);
            Ok(())
        })
    }
}

fn tiered(l2: &Arc<MapL2>) -> TieredCache<perf_cache::clock::FastClock> {
    let l1 = TtlCache::builder().build().unwrap();
    TieredCache::new(
        l1,
        Arc::clone(l2) as Arc<dyn SharedCache>,
        TieredConfig::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn reads_through_l1_then_l2_then_the_loader() {
    let l2 = Arc::new(MapL2::default());
    let loads = AtomicUsize::new(0);
    let load = || async {
        loads.fetch_add(1, SeqCst);
        Ok::<_, std::io::Error>(Bytes::from_static(b"transcript"))
    };
    // A first process loads and fills both levels.
    let first = tiered(&l2);
    assert_eq!(
        first.get_or_load("transcript:1", load).await.unwrap(),
        "transcript"
    );
    assert_eq!(loads.load(SeqCst), 1);
    assert!(l2.entries.lock().unwrap().contains_key("transcript:1"));
    // A second process (its own L1) finds it in L2 without loading.
    let second = tiered(&l2);
    assert_eq!(
        second.get_or_load("transcript:1", load).await.unwrap(),
        "transcript"
    );
    assert_eq!((loads.load(SeqCst), second.l2_hits()), (1, 1));
    // And then in its own L1.
    second.get_or_load("transcript:1", load).await.unwrap();
    assert_eq!(second.l2_hits(), 1);
    assert_eq!(second.l1().stats().hits, 1);
    // Invalidation clears both levels.
    second.invalidate("transcript:1").await;
    assert!(l2.entries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_l2_outage_degrades_to_l1_instead_of_failing() {
    let l2 = Arc::new(MapL2::default());
    l2.down.store(true, SeqCst);
    let cache = tiered(&l2);
    let value = cache
        .get_or_load("k", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"v"))
        })
        .await
        .unwrap();
    assert_eq!(value, "v");
    assert_eq!(cache.l2_errors(), 2, "the failed read and the failed write");
    assert_eq!(cache.l1().get("k"), Some(Bytes::from_static(b"v")));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_l2_degrades_to_the_loader_within_the_timeout() {
    let l2 = Arc::new(MapL2::default());
    l2.hung.store(true, SeqCst);
    let cache = tiered(&l2);
    let started = tokio::time::Instant::now();
    let value = cache
        .get_or_load("k", || async { Ok::<_, ()>(Bytes::from_static(b"v")) })
        .await
        .unwrap();
    assert_eq!(value, "v");
    // One timed-out read and one timed-out write, 100 ms each on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    assert_eq!(cache.l2_errors(), 2);
    cache.invalidate("k").await;
    assert_eq!(cache.l2_errors(), 3);
    assert!(
        TieredCache::new(
            TtlCache::builder().build().unwrap(),
            l2 as Arc<dyn SharedCache>,
            TieredConfig {
                l2_timeout: Duration::ZERO,
                ..TieredConfig::default()
            }
        )
        .is_err()
    );
}
