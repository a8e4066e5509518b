//! The dashboard in a real browser (Debian's headless Chromium through chromedriver): it
//! loads with no console errors, asks for the token, its charts receive points from the
//! stream while traffic runs, an alert raised on the server appears, the optimizer's result
//! is shown. A screenshot is written to the test artifacts directory.

use std::time::Duration;

use pocwhisp_server::config::{AlertRuleConfig, AlertSeverity};

use crate::helpers::{ADMIN, spawn_with};
use crate::webdriver::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_figures_alerts_and_actions_in_a_browser() {
    let app = spawn_with(|config| {
        config.monitoring.metrics_update_interval = Duration::from_millis(200);
        config.monitoring.retention = Duration::from_secs(60);
        // An alert that fires at the first sample: CPU at or above 0 %.
        config.alerts.rules = vec![AlertRuleConfig {
            name: "test_cpu_alert".to_owned(),
            metric: "cpu_usage_percent".to_owned(),
            above: Some(0.0),
            below: None,
            severity: AlertSeverity::Critical,
            hold: Duration::ZERO,
        }];
    })
    .await;
    // Traffic for the charts, for as long as the test runs.
    let load = {
        let (client, base) = (app.client.clone(), app.base.clone());
        tokio::spawn(async move {
            loop {
                let _ = client.get(format!("{base}/api/v1/live")).send().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let browser = Browser::start().await;
    browser.open(&format!("{}/dashboard", app.base)).await;
    browser
        .wait_for(
            "the token form",
            "return !document.getElementById('login').hidden",
        )
        .await;
    browser.type_into("#token", ADMIN).await;
    browser.click("#login button[type=submit]").await;

    let points = browser
        .wait_for(
            "three points on every chart",
            "const charts = [...document.querySelectorAll('canvas[data-chart]')]; \
             return charts.every(c => Number(c.dataset.points || 0) >= 3) && charts.length",
        )
        .await;
    assert_eq!(points, 7, "seven charts");
    let rate = browser
        .wait_for(
            "requests in the stream",
            "const last = ticks[ticks.length - 1]; \
             return last.values.throughput_rps > 0 && last.values.throughput_rps",
        )
        .await;
    assert!(rate.as_f64().unwrap() > 0.0);
    let alert = browser
        .wait_for(
            "the alert on the page",
            "const item = document.querySelector('#alerts li[data-alert=test_cpu_alert]'); \
             return item && item.dataset.severity + ': ' + item.textContent",
        )
        .await;
    assert!(alert.as_str().unwrap().starts_with("critical: "), "{alert}");
    let health = browser
        .script("return document.getElementById('status').textContent")
        .await;
    assert!(health.as_str().unwrap().starts_with("health: "), "{health}");

    browser.click("#optimize").await;
    let result = browser
        .wait_for(
            "the optimizer's result",
            "const r = document.getElementById('result'); return !r.hidden && r.textContent",
        )
        .await;
    let result = result.as_str().unwrap();
    assert!(
        result.contains("memory") && result.contains("cache"),
        "{result}"
    );

    browser.script("window.scrollTo(0, 0); return true").await;
    let screenshot = browser.screenshot().await;
    assert!(screenshot.starts_with(b"\x89PNG"));
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("dashboard.png"), &screenshot).unwrap();

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.quit().await;
    load.abort();
}

#[tokio::test]
async fn the_page_needs_no_token_but_its_data_does() {
    let app = spawn_with(|_| {}).await;
    for (path, content_type) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        // The transcription page's files, under the same policy.
        ("/", "text/html"),
        ("/page/app.js", "text/javascript"),
        ("/page/app.css", "text/css"),
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe"),
            "{policy}"
        );
    }
    let stream = app.get("/api/v1/performance/stream").send().await.unwrap();
    assert_eq!(stream.status(), 401);
    let bad = app
        .get("/api/v1/performance/stream?interval=1ms")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A tick arrives at once, as JSON with the figures, thresholds and components.
    let mut stream = app
        .get("/api/v1/performance/stream?interval=250ms")
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: tick\n"), "{text}");
    let data = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap();
    let tick: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(tick["values"]["cpu_usage_percent"].is_number(), "{tick}");
    assert!(!tick["thresholds"].as_array().unwrap().is_empty());
    assert_eq!(tick["components"]["storage"]["status"], "ok");
}
