//! The Redis rate limiter against a real Redis: `REDIS_URL`, else 127.0.0.1:6379 (which
//! `scripts/test` starts). Each test has its own key prefix; the test that stops Redis runs
//! its own `redis-server` on a free port. Real time: the buckets live on Redis's clock.
#![cfg(feature = "redis")]

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use perf_breaker::CircuitBreaker;
use perf_middleware::rate_limit::redis::{Client, RedisRateLimiter};
use perf_middleware::rate_limit::{BearerToken, Quota, RateLimitLayer};
use test_support::redis::{PrivateRedis, shared_url, unique_prefix};
use tower::{Layer, ServiceExt, service_fn};

fn limiter(url: &str, prefix: &str, quota: Quota) -> RedisRateLimiter<()> {
    RedisRateLimiter::builder(quota)
        .prefix(prefix)
        .timeout(Duration::from_millis(500))
        .build(Client::open(url).unwrap())
        .unwrap()
}

#[tokio::test]
async fn two_limiters_on_one_redis_enforce_one_quota() {
    let prefix = unique_prefix("shared");
    // Two clients, two connections: as two processes would be.
    let first = limiter(&shared_url(), &prefix, Quota::per_hour(5));
    let second = limiter(&shared_url(), &prefix, Quota::per_hour(5));
    let mut admitted = Vec::new();
    for round in 0..5 {
        for limiter in [&first, &second] {
            let decision = limiter.check(&()).await;
            assert!(!limiter.is_degraded(), "Redis answered round {round}");
            if decision.is_allowed() {
                admitted.push(decision.remaining());
            }
        }
    }
    assert_eq!(admitted, [4, 3, 2, 1, 0], "five between them, counted down");
    let refused = first.check(&()).await;
    assert!(!refused.is_allowed());
    let retry = refused.retry_after();
    assert!(
        retry > Duration::from_secs(700) && retry <= Duration::from_secs(720),
        "one token per 12 minutes: {retry:?}"
    );
    assert_eq!(
        first.fallback().stats().keys,
        0,
        "no check was decided locally"
    );
}

#[tokio::test]
async fn tokens_come_back_at_the_quotas_rate() {
    let limiter = limiter(
        &shared_url(),
        &unique_prefix("refill"),
        Quota::per_second(10).burst(2),
    );
    assert!(limiter.check(&()).await.is_allowed());
    assert!(limiter.check(&()).await.is_allowed());
    let refused = limiter.check(&()).await;
    assert!(!refused.is_allowed());
    assert!(refused.retry_after() <= Duration::from_millis(100));
    tokio::time::sleep(refused.retry_after() + Duration::from_millis(5)).await;
    assert!(
        limiter.check(&()).await.is_allowed(),
        "one token after 100 ms"
    );
    assert!(!limiter.check(&()).await.is_allowed(), "and only one");
}

#[tokio::test]
async fn the_layer_takes_the_redis_limiter_and_answers_429() {
    let prefix = unique_prefix("layer");
    let service =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("ok".to_owned())) });
    let limiter = RedisRateLimiter::builder(Quota::per_hour(1))
        .prefix(&prefix)
        .build(Client::open(shared_url()).unwrap())
        .unwrap();
    let service = RateLimitLayer::new(limiter, BearerToken).layer(service);
    let request = |token: &str| {
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
    };
    let send = |token: &str| service.clone().oneshot(request(token));
    let first = send("a").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-limit"], "1");
    assert_eq!(first.headers()["ratelimit-remaining"], "0");
    let second = send("a").await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.headers()["retry-after"], "3600");
    let other = send("b").await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another token has its own bucket"
    );
}

#[tokio::test]
async fn redis_down_falls_back_to_a_share_of_the_quota_and_redis_back_is_used_again() {
    let mut redis = PrivateRedis::start();
    let breaker = CircuitBreaker::builder()
        .name("redis")
        .failure_threshold(2)
        .open_duration(Duration::from_millis(300))
        .build()
        .unwrap();
    let limiter = RedisRateLimiter::builder(Quota::per_hour(6))
        .prefix(unique_prefix("down"))
        .instances(3)
        .timeout(Duration::from_millis(200))
        .breaker(breaker)
        .build::<()>(Client::open(redis.url()).unwrap())
        .unwrap();
    assert!(limiter.check(&()).await.is_allowed());
    assert_eq!(limiter.check(&()).await.remaining(), 4, "counted in Redis");

    redis.stop();
    // Each of three instances may admit a third of the burst on its own: two.
    let decisions: Vec<bool> = checks(&limiter, 4).await;
    assert_eq!(decisions, [true, true, false, false]);
    assert!(limiter.is_degraded(), "the breaker opened");

    let _redis = PrivateRedis::start_on(redis.port());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let decision = limiter.check(&()).await;
        if !limiter.is_degraded() {
            // A fresh Redis holds no bucket: the whole burst, minus this request.
            assert!(decision.is_allowed());
            assert_eq!(decision.remaining(), 5);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn checks(limiter: &RedisRateLimiter<()>, count: usize) -> Vec<bool> {
    let mut decisions = Vec::with_capacity(count);
    for _ in 0..count {
        decisions.push(limiter.check(&()).await.is_allowed());
    }
    decisions
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let error = RedisRateLimiter::builder(Quota::per_second(1))
        .build::<()>(Client::open(shared_url()).unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("Tokio runtime"), "{error}");
}
