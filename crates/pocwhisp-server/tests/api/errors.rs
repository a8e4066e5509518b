//! Every error is the JSON shape with the request id; bad input is a 4xx, never a 500.

use crate::helpers::{ADMIN, error_of, spawn_app};

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = spawn_app().await;
    let (status, body) = error_of(app.get("/api/v1/nothing-here").send().await.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let response = app
        .request(reqwest::Method::DELETE, "/api/v1/live")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn a_client_request_id_is_echoed_in_the_error() {
    let app = spawn_app().await;
    let response = app
        .get("/nope")
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    let (_, body) = error_of(response).await;
    assert_eq!(body["request_id"], "client-id-42");
}

#[tokio::test]
async fn bad_query_values_name_the_field_and_the_allowed_values() {
    let app = spawn_app().await;
    for (path, field, allowed) in [
        (
            "/api/v1/performance/report?period=2h",
            "period",
            "`1h`, `24h`, `7d`",
        ),
        (
            "/api/v1/performance/report?format=xml",
            "format",
            "`json`, `markdown`, `csv`",
        ),
        (
            "/api/v1/performance/trends?metric=nope",
            "metric",
            "cpu_usage_percent",
        ),
        ("/api/v1/performance/trends", "metric", "missing field"),
        ("/debug/pprof/profile?seconds=0", "seconds", "1 to 60"),
        (
            "/debug/pprof/profile?seconds=99999999999999999999999",
            "seconds",
            "seconds",
        ),
        ("/debug/pprof/flamegraph?seconds=-3", "seconds", "seconds"),
        (
            "/api/v1/performance/report?bogus=1",
            "bogus",
            "unknown field",
        ),
    ] {
        let method = reqwest::Method::GET;
        let response = app
            .request(method, path)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(response).await;
        let message = body["message"].as_str().unwrap();
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            message.contains(field) && message.contains(allowed),
            "{path}: {message}"
        );
    }
    let optimize = app
        .request(
            reqwest::Method::POST,
            "/api/v1/performance/optimize?type=everything",
        )
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(optimize).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("memory, gc, cache, pools, db")
    );
}

#[tokio::test]
async fn bad_percent_encoding_is_a_400() {
    let app = spawn_app().await;
    let response = app
        .get("/api/v1/performance/report?period=%ZZ%")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, 400);
}
