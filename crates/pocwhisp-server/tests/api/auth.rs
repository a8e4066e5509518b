//! The auth matrix: no token, a wrong token, a user on admin routes, an admin; public routes.

use reqwest::StatusCode;

use crate::helpers::{ADMIN, USER, error_of, spawn_app, start_binary};

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/performance/metrics"),
    ("GET", "/api/v1/performance/health"),
    ("GET", "/api/v1/performance/report"),
    ("GET", "/api/v1/performance/trends?metric=cpu_usage_percent"),
    ("POST", "/api/v1/performance/optimize?type=cache"),
    ("GET", "/api/v1/cache/stats"),
    ("POST", "/api/v1/cache/warmup"),
    ("DELETE", "/api/v1/cache"),
    ("GET", "/metrics"),
];

#[tokio::test]
async fn admin_routes_need_an_admin_token() {
    let app = spawn_app().await;
    for (method, path) in ADMIN_ROUTES {
        let method = method.parse().unwrap();
        let none = app
            .request(reqwest::Method::clone(&method), path)
            .send()
            .await
            .unwrap();
        assert_eq!(none.headers()["www-authenticate"], "Bearer", "{path}");
        let (status, body) = error_of(none).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );

        let wrong = app
            .request(method.clone(), path)
            .bearer_auth("made-up")
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(wrong).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            body["message"].as_str().unwrap().contains("not valid"),
            "{body}"
        );

        let user = app
            .request(method.clone(), path)
            .bearer_auth(USER)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(user).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("forbidden")),
            "{path}"
        );

        let admin = app
            .request(method, path)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        // Trends may have no samples yet (404); everything else answers.
        assert!(
            admin.status().is_success() || admin.status() == StatusCode::NOT_FOUND,
            "{path}: {}",
            admin.status()
        );
    }
}

#[tokio::test]
async fn health_routes_need_no_token_and_ignore_a_bad_one() {
    let app = spawn_app().await;
    for path in ["/api/v1/live", "/api/v1/ready", "/api/v1/health"] {
        assert_eq!(app.get(path).send().await.unwrap().status(), 200, "{path}");
        let with_bad_token = app.get(path).bearer_auth("made-up").send().await.unwrap();
        assert_eq!(with_bad_token.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_token_in_another_scheme_is_no_token() {
    let app = spawn_app().await;
    let basic = app
        .get("/metrics")
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(basic).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("Bearer"));
}

#[tokio::test]
async fn server_timing_goes_to_admins_only() {
    let app = spawn_app().await;
    let traced = |token: &'static str| {
        app.get("/api/v1/live")
            .bearer_auth(token)
            .header("x-trace", "true")
            .send()
    };
    let admin = traced(ADMIN).await.unwrap();
    assert!(admin.headers().contains_key("server-timing"));
    let user = traced(USER).await.unwrap();
    assert!(!user.headers().contains_key("server-timing"));
}

#[tokio::test]
async fn made_up_tokens_do_not_get_fresh_rate_limit_buckets() {
    let app = crate::helpers::spawn_with(|config| {
        config.rate_limit.requests_per_second = 1;
        config.rate_limit.burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        let response = app
            .get("/api/v1/live")
            .bearer_auth(format!("made-up-{n}"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "one bucket for the address"
    );
    let limited = app.get("/api/v1/live").send().await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    let (_, body) = error_of(limited).await;
    assert_eq!(body["error"], "rate_limited");
    // A verified token has a bucket of its own.
    let user = app
        .get("/api/v1/live")
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(user.status(), 200);
}

/// Tokens in the environment are text, whatever they look like: `0123` keeps its zero
/// (figment read it as the number 123) and `true` is a token, not a boolean.
#[tokio::test]
async fn tokens_from_the_environment_are_taken_as_written() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_child, base) = start_binary(
        data_dir.path(),
        &[
            ("POCWHISP_API_TOKEN", "0123,true"),
            ("POCWHISP_ADMIN_TOKEN", "000"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let status = |path: &'static str, token: &'static str| {
        let request = client.get(format!("{base}{path}")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status("/api/v1/transcribe", "0123").await, StatusCode::OK);
    assert_eq!(status("/api/v1/transcribe", "true").await, StatusCode::OK);
    assert_eq!(
        status("/api/v1/transcribe", "123").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status("/api/v1/cache/stats", "000").await, StatusCode::OK);
    assert_eq!(
        status("/api/v1/cache/stats", "0").await,
        StatusCode::UNAUTHORIZED
    );
}

/// Sessions stay with the token that uploaded them when the tokens in the environment are
/// reordered, removed or joined by others: identities were places in the list, so a new
/// token put first took over the first user's sessions. Sessions stored under such a
/// positional identity are given to their token at the next start.
#[tokio::test]
async fn sessions_stay_with_their_token_whatever_the_order_of_the_environment_s_list() {
    let data = tempfile::tempdir().unwrap();
    let audio = std::fs::read(crate::speech::recording(
        "sense_and_sensibility_01_austen_64kb-0870",
    ))
    .unwrap();
    let client = reqwest::Client::new();
    let dir = data.path();
    let start = |tokens: &'static str| async move {
        start_binary(dir, &[("POCWHISP_API_TOKEN", tokens)]).await
    };
    let upload = |base: &str, token: &'static str| {
        let request = client
            .post(format!("{base}/api/v1/transcribe?mode=async"))
            .bearer_auth(token)
            .header("content-type", "audio/wav")
            .body(audio.clone());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let body: serde_json::Value = response.json().await.unwrap();
            body["session_id"].as_str().unwrap().to_owned()
        }
    };
    let status = |base: &str, token: &'static str, id: &str| {
        let request = client
            .get(format!("{base}/api/v1/transcribe/{id}"))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };

    let (mut first, base) = start("alice-token,bob-token").await;
    let alices = upload(&base, "alice-token").await;
    let bobs = upload(&base, "bob-token").await;
    first.kill().await.unwrap();

    let (mut second, base) = start("carol-token,bob-token,alice-token").await;
    for (token, own, other) in [
        ("alice-token", &alices, &bobs),
        ("bob-token", &bobs, &alices),
    ] {
        assert_eq!(status(&base, token, own).await, StatusCode::OK, "{token}");
        assert_eq!(
            status(&base, token, other).await,
            StatusCode::NOT_FOUND,
            "{token}"
        );
    }
    for id in [&alices, &bobs] {
        assert_eq!(
            status(&base, "carol-token", id).await,
            StatusCode::NOT_FOUND
        );
    }
    second.kill().await.unwrap();

    // As a store written when identities were places: bob, second in the list, was user 2.
    let database = rusqlite::Connection::open(data.path().join("pocwhisp.sqlite3")).unwrap();
    database
        .execute(
            "UPDATE audio_sessions SET owner = 'env:user-2' WHERE id = ?1",
            [&bobs],
        )
        .unwrap();
    drop(database);
    let (_third, base) = start("alice-token,bob-token").await;
    assert_eq!(status(&base, "bob-token", &bobs).await, StatusCode::OK);
    assert_eq!(
        status(&base, "alice-token", &bobs).await,
        StatusCode::NOT_FOUND
    );
}
