//! Two server processes on one database and one Redis: one upload quota between them, a
//! session read by one is a hit on the other, a delete on one is seen by the other within a
//! second, and Redis stopping and starting again mid-run.

use std::time::{Duration, Instant};

use crate::database::{Pair, all_completed, session_id, upload_async};
use crate::helpers::{ADMIN, JsonReply, OTHER_USER, USER};
use test_support::redis::{PrivateRedis, shared_url, unique_prefix};

async fn cache_figures(client: &reqwest::Client, base: &str) -> serde_json::Value {
    client
        .get(format!("{base}/api/v1/cache/stats"))
        .bearer_auth(ADMIN)
        .json_reply()
        .await
}

async fn read_status(client: &reqwest::Client, base: &str, id: &str) -> u16 {
    client
        .get(format!("{base}/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn two_instances_share_the_quota_the_cached_sessions_and_their_deletion() {
    let prefix = unique_prefix("pair");
    let url = shared_url();
    let tokens = format!("{USER},{OTHER_USER}");
    let Pair {
        client,
        scratch,
        first: (_first, one),
        second: (_second, two),
        // Bound, not `..`: dropping them would drop the schema and the audio directory.
        schema: _schema,
        data: _data,
    } = Pair::start_with(
        "redis_pair",
        &[
            ("POCWHISP_REDIS_URL", url.as_str()),
            ("POCWHISP_REDIS__KEY_PREFIX", prefix.as_str()),
            ("POCWHISP_JOBS__UPLOADS_PER_HOUR", "3"),
            ("POCWHISP_API_TOKEN", tokens.as_str()),
        ],
    )
    .await;

    // Three uploads an hour for this caller, wherever they land.
    let mut statuses = Vec::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        let audio = std::fs::read(crate::speech::joined_recordings(scratch.path(), n % 3)).unwrap();
        let base = if n % 2 == 0 { &one } else { &two };
        let response = upload_async(&client, base, audio).await;
        statuses.push(response.status().as_u16());
        match response.status().as_u16() {
            202 => ids.push(session_id(response).await),
            429 => {}
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(
        statuses,
        [202, 202, 202, 429, 429],
        "one quota between the two"
    );
    all_completed(&client, &one, &ids).await;

    // The first instance read them all once finished (and shared them); the second finds
    // them in Redis instead of the database.
    let before = cache_figures(&client, &two).await["shared"]["l2_hits"]
        .as_u64()
        .unwrap();
    for id in &ids {
        assert_eq!(read_status(&client, &two, id).await, 200);
    }
    let after = cache_figures(&client, &two).await["shared"]["l2_hits"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        ids.len() as u64,
        "every read a hit from Redis"
    );

    // Deleted on the first: gone from the second's caches within a second (its response
    // cache held it for five minutes otherwise).
    let deleted = client
        .delete(format!("{one}/api/v1/transcribe/{}", ids[0]))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(1);
    while read_status(&client, &two, &ids[0]).await != 404 {
        assert!(
            Instant::now() < deadline,
            "still served a second after the delete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another caller does not see the shared copies.
    let other: serde_json::Value = client
        .get(format!("{two}/api/v1/transcribe/{}", ids[1]))
        .bearer_auth(OTHER_USER)
        .json_reply()
        .await;
    assert_eq!(other["error"], "not_found", "{other}");
}

async fn redis_health(client: &reqwest::Client, base: &str) -> (u16, serde_json::Value) {
    let response = client
        .get(format!("{base}/api/v1/health"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let health: serde_json::Value = response.json().await.unwrap();
    (status, health["components"]["redis"].clone())
}

#[tokio::test]
async fn redis_stopping_and_starting_again_mid_run_degrades_then_heals() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let prefix = unique_prefix("outage");
    let Pair {
        client,
        scratch,
        first: (_first, one),
        second: (_second, _two),
        schema: _schema,
        data: _data,
    } = Pair::start_with(
        "redis_outage",
        &[
            ("POCWHISP_REDIS_URL", url.as_str()),
            ("POCWHISP_REDIS__KEY_PREFIX", prefix.as_str()),
            ("POCWHISP_REDIS__INSTANCES", "2"),
            ("POCWHISP_REDIS__BREAKER__FAILURE_THRESHOLD", "2"),
            ("POCWHISP_REDIS__BREAKER__OPEN_DURATION", "1s"),
            ("POCWHISP_REDIS__BREAKER__MAX_OPEN_DURATION", "1s"),
            ("POCWHISP_JOBS__UPLOADS_PER_HOUR", "4"),
        ],
    )
    .await;
    let (status, component) = redis_health(&client, &one).await;
    assert_eq!(
        (status, component["status"].as_str()),
        (200, Some("ok")),
        "{component}"
    );

    redis.stop();
    // Requests go on (the general limit falls back to this instance's share); health says
    // why, without taking the instance out of a load balancer.
    let started = Instant::now();
    for _ in 0..5 {
        let listing = client
            .get(format!("{one}/api/v1/transcribe"))
            .bearer_auth(USER)
            .send()
            .await
            .unwrap();
        assert_eq!(listing.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no request waits long on Redis"
    );
    let (status, component) = redis_health(&client, &one).await;
    assert_eq!(
        (status, component["status"].as_str()),
        (200, Some("degraded")),
        "{component}"
    );
    assert!(
        component["detail"].as_str().unwrap().contains("down"),
        "{component}"
    );
    // Each of the two instances admits half the upload quota on its own.
    let mut statuses = Vec::new();
    for n in 0..3 {
        let audio = std::fs::read(crate::speech::joined_recordings(scratch.path(), n)).unwrap();
        statuses.push(upload_async(&client, &one, audio).await.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429]);

    let _back = PrivateRedis::start_on(redis.port());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, component) = redis_health(&client, &one).await;
        if component["status"] == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never went back to Redis: {component}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Back on Redis, whose buckets started empty: admitted again, where this instance's own
    // share was spent.
    let audio = std::fs::read(crate::speech::joined_recordings(scratch.path(), 3)).unwrap();
    assert_eq!(upload_async(&client, &one, audio).await.status(), 202);
}
