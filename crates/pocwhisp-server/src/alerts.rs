//! Alert delivery: each alert the profiler fires or resolves is POSTed as JSON to
//! `alerts.webhook_url`, with the database retry preset (3 tries, 0.5 s to 5 s) for a
//! receiver that is away. Alerts wait in a bounded queue; when the receiver cannot keep up,
//! the newest are dropped and counted rather than held in memory without bound.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use perf_breaker::retry::Retry;
use perf_profiler::Profiler;
use perf_profiler::health::AlertEvent;
use serde::Serialize;
use tokio::task::JoinHandle;

/// An alert as the webhook receives it.
#[derive(Debug, Serialize)]
struct AlertJson<'a> {
    rule: &'a str,
    metric: &'a str,
    value: f64,
    severity: String,
    /// `firing` or `resolved`.
    state: &'static str,
    /// RFC 3339.
    at: String,
}

/// Posts the profiler's alerts to `url` until the handle is aborted.
pub(crate) fn spawn_webhook(profiler: &Profiler, url: String) -> JoinHandle<()> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<AlertEvent>(256);
    profiler.on_alert(move |event| {
        if sender.try_send(event.clone()).is_err() {
            metrics::counter!("pocwhisp_alerts_dropped_total").increment(1);
        }
    });
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let retry = Retry::new(3, Duration::from_millis(500), Duration::from_secs(5));
    tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            let body = Bytes::from(
                serde_json::to_vec(&AlertJson {
                    rule: &event.rule,
                    metric: &event.metric,
                    value: event.value,
                    severity: event.severity.to_string(),
                    state: if event.firing { "firing" } else { "resolved" },
                    at: crate::store::rfc3339(event.at),
                })
                .unwrap_or_default(),
            );
            let delivered = retry
                .run(
                    |_| {
                        let request = Request::post(&url)
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::new(body.clone()));
                        let client = client.clone();
                        async move {
                            let request = request.map_err(|error| error.to_string())?;
                            match tokio::time::timeout(
                                Duration::from_secs(10),
                                client.request(request),
                            )
                            .await
                            {
                                Ok(Ok(response)) if response.status().is_success() => Ok(()),
                                Ok(Ok(response)) => {
                                    Err(format!("the receiver answered {}", response.status()))
                                }
                                Ok(Err(error)) => Err(error.to_string()),
                                Err(_) => Err("no answer within 10 s".to_owned()),
                            }
                        }
                    },
                    |_| true,
                )
                .await;
            let outcome = if delivered.is_ok() {
                "delivered"
            } else {
                "failed"
            };
            metrics::counter!("pocwhisp_alert_deliveries_total", "outcome" => outcome).increment(1);
            if let Err(error) = delivered {
                tracing::warn!(rule = %event.rule, %error, "delivering an alert failed");
            }
        }
    })
}
