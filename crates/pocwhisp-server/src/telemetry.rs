//! Logs and metrics: the tracing subscriber (human or JSON lines), and the process-wide
//! Prometheus recorder every crate's `metrics` calls record into.

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Starts logging to stderr: `RUST_LOG` if set, else the configured level. Later calls (a
/// second server in one test process) keep the first subscriber.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The Prometheus recorder, installed on first use. Metric handles are resolved against the
/// recorder when a layer or pool is built, so this runs before anything else is built.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = perf_middleware::metrics::install_prometheus()
                .expect("the one recorder of the process installs once");
            describe();
            handle
        })
        .clone()
}

/// The server's own series (the crates describe theirs).
fn describe() {
    metrics::describe_gauge!(
        "pocwhisp_jobs_queued",
        "Transcription jobs waiting in the store, across every instance"
    );
    metrics::describe_gauge!(
        "pocwhisp_jobs_running",
        "Transcription jobs held by a worker, across every instance"
    );
    metrics::describe_gauge!("pocwhisp_sessions", "Sessions stored");
    metrics::describe_counter!(
        "pocwhisp_jobs_finished_total",
        "Transcription jobs this process finished, by outcome (completed, failed, retried, deferred: the engine was unreachable or memory short, cancelled, unstored: the result could not be written and the job is retried)"
    );
    metrics::describe_histogram!(
        "pocwhisp_job_duration_seconds",
        metrics::Unit::Seconds,
        "Time from claim to the stored transcript, for jobs this process completed"
    );
    metrics::describe_counter!(
        "pocwhisp_alert_deliveries_total",
        "Alerts posted to alerts.webhook_url, by outcome (delivered, failed)"
    );
    metrics::describe_counter!(
        "pocwhisp_alerts_dropped_total",
        "Alerts dropped because the webhook queue was full"
    );
    metrics::describe_counter!(
        "pocwhisp_connections_refused_total",
        "Connections closed as they were accepted because their client address (an IPv6 /64) already held server.max_connections_per_client"
    );
    metrics::describe_gauge!(
        "pocwhisp_decoding_reserved_bytes",
        "Bytes jobs hold for decoded audio and the engine's copy of it, counted against memory.limit"
    );
    metrics::describe_counter!(
        "pocwhisp_disk_reserve_released_total",
        "Times the disk reserve was given up to a delete or a job's end that found the disk full"
    );
    metrics::describe_counter!(
        "pocwhisp_callbacks_total",
        "Callback delivery attempts, by outcome (delivered, retried, failed)"
    );
}
