//! `perf monitor`: samples the server's figures every interval for a duration, with a live
//! table and a progress bar on a terminal, and writes the samples as JSON or CSV.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Client, ClientError, SampleFormat, analyze::table};

/// The figures the live table shows.
const LIVE: &[&str] = &[
    "throughput_rps",
    "request_latency_p95_ms",
    "error_rate",
    "cpu_usage_percent",
    "resident_bytes",
    "cache_hit_rate",
    "jobs_queued",
];

pub(crate) async fn run(
    client: &Client,
    duration: Duration,
    interval: Duration,
    output: Option<PathBuf>,
    format: Option<SampleFormat>,
) -> Result<u8, ClientError> {
    if interval.is_zero() || interval > duration {
        return Err(ClientError::Output(
            "--interval must be longer than zero and no longer than --duration".to_owned(),
        ));
    }
    let format = match (&output, format) {
        (_, Some(format)) => Some(format),
        (Some(path), None) => Some(
            if path.extension().is_some_and(|extension| extension == "csv") {
                SampleFormat::Csv
            } else {
                SampleFormat::Json
            },
        ),
        (None, None) => None,
    };
    let count = (duration.as_secs_f64() / interval.as_secs_f64()).floor() as u64 + 1;
    // Drawn on standard error, and only on a terminal (indicatif hides it otherwise).
    let progress = ProgressBar::new(count);
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples, {elapsed} of the run {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut samples: Vec<Value> = Vec::new();
    let mut ticks = tokio::time::interval(interval);
    for _ in 0..count {
        ticks.tick().await;
        let sample = client.get_json("/api/v1/performance/metrics").await?;
        let mut live = table(&["figure", "now"]);
        for name in LIVE {
            if let Some(value) = sample["metrics"][*name].as_f64() {
                live.add_row(vec![(*name).to_owned(), format!("{value:.2}")]);
            }
        }
        progress.suspend(|| println!("{}\n{live}", sample["taken_at"].as_str().unwrap_or("")));
        progress.inc(1);
        samples.push(sample);
    }
    progress.finish_and_clear();
    if let (Some(path), Some(format)) = (output, format) {
        let text = match format {
            SampleFormat::Json => serde_json::to_string_pretty(&samples)
                .map_err(|error| ClientError::Output(error.to_string()))?,
            SampleFormat::Csv => csv(&samples),
        };
        std::fs::write(&path, text)
            .map_err(|error| ClientError::Output(format!("{}: {error}", path.display())))?;
        eprintln!("{} samples written to {}", samples.len(), path.display());
    }
    Ok(0)
}

/// One row per sample: its time, then every figure any sample had, in name order.
fn csv(samples: &[Value]) -> String {
    let names: BTreeSet<&str> = samples
        .iter()
        .filter_map(|sample| sample["metrics"].as_object())
        .flat_map(|metrics| metrics.keys().map(String::as_str))
        .collect();
    let mut text = String::from("taken_at");
    for name in &names {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for sample in samples {
        text.push_str(sample["taken_at"].as_str().unwrap_or_default());
        for name in &names {
            text.push(',');
            if let Some(value) = sample["metrics"][*name].as_f64() {
                text.push_str(&value.to_string());
            }
        }
        text.push('\n');
    }
    text
}
