//! Keyed breakers: isolation, the bound on keys, and idle eviction.

use std::time::Duration;

use perf_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
use tokio::time::advance;

fn keyed(max_keys: usize, idle: Duration) -> KeyedCircuitBreaker<u64> {
    KeyedCircuitBreaker::builder()
        .template(
            CircuitBreaker::builder()
                .tokio_clock()
                .failure_threshold(1)
                .jitter(0.0),
        )
        .max_keys(max_keys)
        .idle_timeout(idle)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_state() {
    let breakers = keyed(100, Duration::from_secs(60));
    breakers.get(&1).try_acquire().unwrap().failure();
    assert_eq!(breakers.get(&1).state(), State::Open);
    assert_eq!(breakers.get(&2).state(), State::Closed);
    // The same key returns the same breaker, not a fresh one.
    assert!(breakers.get(&1).try_acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn key_churn_cannot_grow_the_map_past_its_bound() {
    let breakers = keyed(200, Duration::from_secs(3600));
    for key in 0..20_000 {
        breakers.get(&key).try_acquire().unwrap().success();
    }
    assert!(breakers.len() <= 200, "held {} breakers", breakers.len());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_swept_when_new_keys_arrive() {
    let breakers = keyed(1_000, Duration::from_secs(60));
    for key in 0..100 {
        breakers.get(&key);
    }
    // Key 0 stays in use; the others go idle.
    for _ in 0..4 {
        advance(Duration::from_secs(20)).await;
        breakers.get(&0);
    }
    assert_eq!(breakers.len(), 100);
    // A new key triggers the lazy sweep; no background task was needed.
    breakers.get(&1_000);
    assert_eq!(breakers.len(), 2);
    assert!(breakers.peek(&0).is_some());
    assert!(breakers.peek(&1_000).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_not_forgotten_while_idle() {
    let breakers = keyed(1_000, Duration::from_secs(60));
    breakers.get(&7).try_acquire().unwrap().failure();
    breakers.get(&8).force_open();
    breakers.get(&9);
    advance(Duration::from_secs(20)).await;
    // Open for 30 s, idle for 20 s: nothing is swept but the closed key's turn has not come.
    breakers.sweep_idle();
    assert_eq!(breakers.len(), 3);
    advance(Duration::from_secs(45)).await;
    breakers.sweep_idle();
    // Key 7's open period has ended, yet it still holds the state until a probe decides;
    // key 8 is forced open; key 9 was closed and idle, so it went.
    let mut kept = breakers.open_keys();
    kept.sort_unstable();
    assert_eq!(kept, [7, 8]);
    assert!(breakers.peek(&9).is_none());
}

#[tokio::test(start_paused = true)]
async fn invalid_bounds_are_build_errors() {
    let error = KeyedCircuitBreaker::<u64>::builder()
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "max_keys");
    let error = KeyedCircuitBreaker::<u64>::builder()
        .idle_timeout(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "idle_timeout");
    let error = KeyedCircuitBreaker::<u64>::builder()
        .template(CircuitBreaker::builder().jitter(2.0))
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "jitter");
}
