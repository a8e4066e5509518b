//! The operations routes, each doing its real work.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{ADMIN, JsonReply, USER, error_of, spawn_app, spawn_with};

#[tokio::test]
async fn liveness_readiness_and_dependencies() {
    let app = spawn_app().await;
    let live: serde_json::Value = app.get("/api/v1/live").json_reply().await;
    assert_eq!(live["status"], "alive");
    let ready: serde_json::Value = app.get("/api/v1/ready").json_reply().await;
    assert_eq!(ready["status"], "ready");
    let health: serde_json::Value = app
        .get("/api/v1/health")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    assert_eq!(health["components"]["storage"]["status"], "ok", "{health}");
    let disk = health["components"]["disk"]["detail"].as_str().unwrap();
    assert!(disk.contains("% free"), "{disk}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    // What was found (the data directory's path, hosts, errors) maps the deployment: not
    // for anyone without an admin token, whose answer has the statuses alone.
    let data_dir = app.data_dir.path().to_str().unwrap();
    assert!(health.to_string().contains(data_dir));
    for token in [None, Some(USER)] {
        let mut request = app.get("/api/v1/health");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let health: serde_json::Value = request.json_reply().await;
        assert_eq!(health["components"]["disk"]["status"], "ok", "{health}");
        for component in health["components"].as_object().unwrap().values() {
            assert!(component.get("detail").is_none(), "{token:?}: {health}");
        }
        assert!(!health.to_string().contains(data_dir));
    }
}

#[tokio::test]
async fn the_snapshot_has_its_documented_names_and_real_request_figures() {
    let app = spawn_app().await;
    let hit_rate = |figures: &serde_json::Value| figures["metrics"]["cache_hit_rate"].clone();
    let before: serde_json::Value = app
        .admin_get("/api/v1/performance/metrics")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        hit_rate(&before).is_null(),
        "no rate before the first lookup"
    );
    for _ in 0..20 {
        app.get("/api/v1/live").send().await.unwrap();
    }
    // A read through the response cache: a lookup, so a rate.
    let missing = format!(
        "/api/v1/transcribe/{}",
        "0".repeat(8) + "-0000-4000-8000-000000000000"
    );
    app.get(&missing).bearer_auth(ADMIN).send().await.unwrap();
    let figures: serde_json::Value = app
        .admin_get("/api/v1/performance/metrics")
        .await
        .json()
        .await
        .unwrap();
    let metrics = &figures["metrics"];
    for name in [
        "cpu_usage_percent",
        "thread_count",
        "tokio_workers",
        "tokio_alive_tasks",
        "heap_alloc_bytes",
        "resident_bytes",
        "request_latency_p50_ms",
        "request_latency_p95_ms",
        "request_latency_p99_ms",
        "throughput_rps",
        "error_rate",
        "cache_hit_rate",
        "active_requests",
    ] {
        assert!(metrics[name].is_number(), "{name} missing: {figures}");
    }
    assert!(metrics["request_latency_p50_ms"].as_f64().unwrap() > 0.0);
    assert!(
        metrics["active_requests"].as_f64().unwrap() >= 1.0,
        "this request is in flight"
    );
}

#[tokio::test]
async fn reports_come_in_three_formats_and_trends_have_samples() {
    let app = spawn_with(|config| {
        config.monitoring.metrics_update_interval = Duration::from_millis(100);
        config.monitoring.retention = Duration::from_secs(60);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    let json: serde_json::Value = app
        .admin_get("/api/v1/performance/report?period=1h&format=json")
        .await
        .json()
        .await
        .unwrap();
    assert!(json["samples"].as_u64().unwrap() >= 3, "{json}");
    assert!(json["recommendations"].as_array().is_some());
    let markdown = app
        .admin_get("/api/v1/performance/report?format=markdown")
        .await;
    assert!(
        markdown.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert!(markdown.text().await.unwrap().starts_with('#'));
    let csv = app
        .admin_get("/api/v1/performance/report?period=24h&format=csv")
        .await
        .text()
        .await
        .unwrap();
    // One row per sample, one column per figure.
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("timestamp,") && header.contains("resident_bytes"),
        "{csv}"
    );
    assert!(csv.lines().count() > 3, "{csv}");

    let trend: serde_json::Value = app
        .admin_get("/api/v1/performance/trends?metric=resident_bytes&period=1h")
        .await
        .json()
        .await
        .unwrap();
    let points = trend["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{trend}");
    assert_eq!(trend["samples"].as_u64().unwrap() as usize, points.len());
    assert!(
        points.iter().all(|point| point[1].as_f64().unwrap() > 1e6),
        "real resident sizes"
    );

    let health: serde_json::Value = app
        .admin_get("/api/v1/performance/health")
        .await
        .json()
        .await
        .unwrap();
    assert!(health["health"]["checks"].as_array().unwrap().len() >= 5);
    assert!(health["firing_alerts"].is_array());
}

#[tokio::test]
async fn optimize_runs_each_action_with_before_and_after_figures() {
    let app = spawn_app().await;
    let optimized: serde_json::Value = app
        .request(Method::POST, "/api/v1/performance/optimize")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    let actions = optimized["actions"].as_array().unwrap();
    let kinds: Vec<&str> = actions
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["memory", "pools", "cache", "db"], "{optimized}");
    for action in actions {
        assert!(action["error"].is_null(), "{action}");
        assert!(
            action["outcome"]["before"]
                .as_object()
                .is_some_and(|o| !o.is_empty()),
            "{action}"
        );
        assert!(
            action["outcome"]["after"]
                .as_object()
                .is_some_and(|o| !o.is_empty()),
            "{action}"
        );
        assert!(action["took_ms"].as_f64().is_some());
    }
    assert!(
        actions[0]["outcome"]["before"]["heap_resident_bytes"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let gc: serde_json::Value = app
        .request(Method::POST, "/api/v1/performance/optimize?type=gc")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    assert_eq!(gc["actions"].as_array().unwrap().len(), 1);
    assert_eq!(gc["actions"][0]["kind"], "memory");
}

#[tokio::test]
async fn cache_stats_warmup_and_purge() {
    let app = spawn_app().await;
    let stats: serde_json::Value = app
        .admin_get("/api/v1/cache/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["hit_rate_target"], 0.85);
    assert_eq!(stats["capacity_bytes"], 64 << 20);
    let warmup: serde_json::Value = app
        .request(Method::POST, "/api/v1/cache/warmup")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    assert_eq!(warmup["failures"], 0);
    let stats: serde_json::Value = app
        .admin_get("/api/v1/cache/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["last_warmup"]["started_at"], warmup["started_at"]);
    let purged: serde_json::Value = app
        .request(Method::DELETE, "/api/v1/cache")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    assert_eq!(purged["entries"], 0);
}

#[tokio::test]
async fn prometheus_text_has_the_servers_metrics() {
    let app = spawn_app().await;
    app.get("/api/v1/live").send().await.unwrap();
    let response = app.admin_get("/metrics").await;
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for name in [
        "pocwhisp_http_requests_total",
        "pocwhisp_http_request_duration_seconds_bucket",
        "pocwhisp_cache_hits_total",
        "pocwhisp_pool_gets_total",
        "pocwhisp_load_shed_in_flight",
        "pocwhisp_rate_limit_keys",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    let unprefixed: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter(|line| !line.starts_with("pocwhisp_"))
        .collect();
    assert!(
        unprefixed.is_empty(),
        "every metric is pocwhisp_: {unprefixed:?}"
    );
}

/// CPU captures are one at a time per process (pprof's sampler is process-wide), and the tests
/// share a process: the tests that capture take turns.
static CPU_CAPTURES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_cpu_profile_is_captured_once_at_a_time() {
    let _turn = CPU_CAPTURES.lock().await;
    let app = spawn_app().await;
    let first = app
        .get("/debug/pprof/profile?seconds=2")
        .bearer_auth(ADMIN)
        .send();
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.get("/debug/pprof/flamegraph?seconds=1")
            .bearer_auth(ADMIN)
            .send()
            .await
    };
    let (first, second) = tokio::join!(first, second);
    let first = first.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/octet-stream");
    let profile = first.bytes().await.unwrap();
    assert!(profile.len() > 10, "a pprof protobuf");
    let (status, body) = error_of(second.unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")));
    let svg = app.admin_get("/debug/pprof/flamegraph?seconds=1").await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg"), "{svg}");
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_router_serves() {
    let _turn = CPU_CAPTURES.lock().await;
    let app = spawn_app().await;
    let document: serde_json::Value = app.get("/api/v1/openapi.json").json_reply().await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            operations += 1;
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            // Every documented operation is routed: not a 404 or a 405 (a query that cannot
            // be satisfied may be a 400; a capture is asked for one second).
            let url = match path.as_str() {
                "/debug/pprof/profile" | "/debug/pprof/flamegraph" => format!("{path}?seconds=1"),
                _ => path.clone(),
            };
            let response = app
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            if path == "/api/v1/performance/stream" {
                // Endless by design: its first event is enough.
                assert_eq!(status, 200);
                continue;
            }
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(!body.contains("no route for"), "{method} {path}: {body}");
        }
    }
    assert_eq!(operations, 31, "{:?}", paths.keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    // On PostgreSQL, so that the pool's and the database breaker's series are there too.
    let schema = crate::postgres::TestSchema::create("promtool").await;
    let url = schema.url();
    let app = spawn_with(move |config| {
        config.monitoring.metrics_update_interval = Duration::from_millis(100);
        config.monitoring.retention = Duration::from_secs(60);
        config.database.url = Some(pocwhisp_server::config::Secret::new(url));
    })
    .await;
    for _ in 0..100 {
        if app.get("/api/v1/ready").send().await.unwrap().status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in [
        "/api/v1/live",
        "/nope",
        "/api/v1/health",
        "/api/v1/performance/metrics",
    ] {
        app.get(path).bearer_auth(ADMIN).send().await.unwrap();
    }
    let list = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let text = app.admin_get("/metrics").await.text().await.unwrap();
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool, from Debian's prometheus package (scripts/test installs it)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn alerts_are_posted_to_the_webhook_as_they_fire() {
    let received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let seen = std::sync::Arc::clone(&received);
    let receiver = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |axum::Json(alert): axum::Json<serde_json::Value>| {
            let seen = std::sync::Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(alert);
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let _app = spawn_with(move |config| {
        config.monitoring.metrics_update_interval = Duration::from_millis(100);
        config.monitoring.retention = Duration::from_secs(60);
        config.alerts.webhook_url = Some(format!("http://{address}/alerts"));
        config.alerts.rules = vec![pocwhisp_server::config::AlertRuleConfig {
            name: "always".to_owned(),
            metric: "cpu_usage_percent".to_owned(),
            above: Some(0.0),
            below: None,
            severity: pocwhisp_server::config::AlertSeverity::Warning,
            hold: Duration::ZERO,
        }];
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(alert) = received.lock().unwrap().first().cloned() {
            assert_eq!(alert["rule"], "always");
            assert_eq!(alert["state"], "firing");
            assert_eq!(alert["severity"], "warning");
            assert_eq!(alert["metric"], "cpu_usage_percent");
            assert!(alert["at"].as_str().unwrap().ends_with('Z'));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
