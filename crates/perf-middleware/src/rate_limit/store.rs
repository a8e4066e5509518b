//! Per-key GCRA state in a sharded map with a bound on keys and no cleanup task.
//!
//! A key whose bucket has refilled (its TAT is in the past) is indistinguishable from a key
//! never seen, so forgetting it changes no answer. When a shard is full, an insert looks at
//! a sample of at most [`SAMPLE`] of its keys: it drops the refilled ones among them, or, if
//! every sampled key is still throttled, the one closest to refilled, which at worst grants
//! that key a few requests early. The work per insert is therefore bounded whatever the
//! shard holds (a flood of new keys into a shard of throttled ones costs a sample each, not
//! a scan), memory is bounded by `max_keys`, and idle keys leave without anyone running a
//! cleanup; [`KeyedStore::sweep`] drops every refilled key at once when asked.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use foldhash::fast::RandomState;
use perf_core::sync::{read, write};

use super::gcra;

const SHARDS: usize = 64;

/// Keys an insert into a full shard looks at, at most.
const SAMPLE: usize = 16;

type Shard<K> = RwLock<HashMap<K, AtomicU64, RandomState>>;

#[derive(Debug)]
pub(crate) struct KeyedStore<K> {
    shards: Box<[Shard<K>]>,
    hasher: RandomState,
    shard_capacity: usize,
}

impl<K: Hash + Eq + Clone> KeyedStore<K> {
    pub(crate) fn new(max_keys: usize) -> Self {
        KeyedStore {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
            shard_capacity: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Runs `f` on the TAT of `key`, creating it (as a full bucket) if needed.
    #[inline]
    pub(crate) fn with_tat<R>(
        &self,
        key: &K,
        now: impl Fn() -> u64,
        f: impl Fn(&AtomicU64) -> R,
    ) -> R {
        // The high bits pick the shard; the map uses the hash's low bits, so the two stay
        // independent.
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash >> 58) as usize % SHARDS];
        if let Some(tat) = read(shard).get(key) {
            return f(tat);
        }
        let mut map = write(shard);
        if !map.contains_key(key) && map.len() >= self.shard_capacity {
            make_room(&mut map, now());
        }
        f(map.entry(key.clone()).or_insert_with(|| AtomicU64::new(0)))
    }

    /// Keys currently held.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// Drops every refilled key now.
    pub(crate) fn sweep(&self, now: u64) {
        for shard in self.shards.iter() {
            write(shard).retain(|_, tat| !gcra::is_replenished(tat.load(Relaxed), now));
        }
    }
}

/// Frees at least one place in a full shard by looking at [`SAMPLE`] keys; returns how many
/// it looked at. The sample is the table's first occupied buckets, which are spread over
/// the hash space and change as keys come and go.
fn make_room<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, AtomicU64, RandomState>,
    now: u64,
) -> usize {
    let mut refilled: Vec<K> = Vec::new();
    let mut closest: Option<(u64, &K)> = None;
    let mut looked = 0;
    for (key, tat) in map.iter().take(SAMPLE) {
        looked += 1;
        let tat = tat.load(Relaxed);
        if gcra::is_replenished(tat, now) {
            refilled.push(key.clone());
        } else if closest.is_none_or(|(best, _)| tat < best) {
            closest = Some((tat, key));
        }
    }
    if refilled.is_empty() {
        refilled.extend(closest.map(|(_, key)| key.clone()));
    }
    for key in &refilled {
        map.remove(key);
    }
    looked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refilled_keys_make_room_first() {
        let store = KeyedStore::<u32>::new(SHARDS);
        // Fill one shard's worth of keys with future TATs (throttled), at time 0.
        for key in 0..10_000 {
            store.with_tat(&key, || 0, |tat| tat.store(100, Relaxed));
        }
        assert!(store.len() <= SHARDS, "bounded: {}", store.len());
        // At time 200 every held key has refilled and the next inserts displace them.
        store.sweep(200);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_full_shard_of_throttled_keys_costs_a_sample_per_insert() {
        let mut map: HashMap<u32, AtomicU64, RandomState> = HashMap::default();
        for key in 0..5_000 {
            map.insert(key, AtomicU64::new(1_000 + u64::from(key)));
        }
        // Every key throttled at time 0: one is evicted, after a bounded look.
        let looked = make_room(&mut map, 0);
        assert!(looked <= SAMPLE, "{looked}");
        assert_eq!(map.len(), 4_999);
        // Refilled keys among the sample all go.
        for tat in map.values() {
            tat.store(0, Relaxed);
        }
        let looked = make_room(&mut map, 10);
        assert_eq!(map.len(), 4_999 - looked);
        assert!(looked <= SAMPLE);
    }

    #[test]
    fn a_throttled_key_keeps_its_state() {
        let store = KeyedStore::<&str>::new(1_000);
        store.with_tat(&"a", || 0, |tat| tat.store(500, Relaxed));
        assert_eq!(store.with_tat(&"a", || 10, |tat| tat.load(Relaxed)), 500);
        store.sweep(400);
        assert_eq!(store.len(), 1);
        store.sweep(500);
        assert_eq!(store.len(), 0);
    }
}
