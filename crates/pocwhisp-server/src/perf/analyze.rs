//! `perf analyze`: the server's figures, checks, alerts and components, and this host's
//! load and memory, turned into issues, warnings and recommendations.

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde_json::Value;

use super::{CRITICAL, Client, ClientError, WARNING, colour};

/// How serious a finding is, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Recommendation,
    Warning,
    Issue,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Recommendation => "recommendation",
            Level::Warning => "warning",
            Level::Issue => "issue",
        }
    }

    fn colour(self) -> Color {
        match self {
            Level::Recommendation => Color::Cyan,
            Level::Warning => Color::Yellow,
            Level::Issue => Color::Red,
        }
    }
}

/// A table in the tool's style: no colour unless on a terminal.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if !colour() {
        table.force_no_tty();
    }
    table
}

/// The figures shown, with their units.
const FIGURES: &[(&str, &str, f64)] = &[
    ("throughput_rps", "requests/s", 1.0),
    ("request_latency_p50_ms", "ms", 1.0),
    ("request_latency_p95_ms", "ms", 1.0),
    ("request_latency_p99_ms", "ms", 1.0),
    ("error_rate", "%", 100.0),
    ("cpu_usage_percent", "%", 1.0),
    ("memory_usage_percent", "%", 1.0),
    ("resident_bytes", "MiB", 1.0 / 1_048_576.0),
    ("cache_hit_rate", "%", 100.0),
    ("jobs_queued", "", 1.0),
    ("jobs_running", "", 1.0),
    ("db_connections", "", 1.0),
    ("db_slow_queries_count", "", 1.0),
    ("tokio_alive_tasks", "", 1.0),
];

/// This host's load per core and available memory share, from `/proc`.
fn host() -> (Option<f64>, Option<f64>) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .map(|load| load / cores);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
    };
    let available = match (field("MemAvailable:"), field("MemTotal:")) {
        (Some(available), Some(total)) if total > 0.0 => Some(available / total),
        _ => None,
    };
    (load, available)
}

/// What the figures suggest, beyond the thresholds.
fn recommendations(values: &Value, findings: &mut Vec<(Level, String, String)>) {
    let value = |name: &str| values[name].as_f64();
    let mut recommend = |area: &str, text: String| {
        findings.push((Level::Recommendation, area.to_owned(), text));
    };
    if let (Some(hit_rate), Some(rps)) = (value("cache_hit_rate"), value("throughput_rps"))
        && hit_rate < 0.85
        && rps > 1.0
    {
        recommend(
            "cache",
            format!(
                "hit rate {:.0} % is under the 85 % target: warm it (`perf optimize --type cache`, POST /api/v1/cache/warmup) or raise cache.capacity",
                hit_rate * 100.0
            ),
        );
    }
    if value("jobs_queued").is_some_and(|queued| queued > 10.0) {
        recommend(
            "jobs",
            "jobs are waiting: more request_pool.workers (one per core) or another instance on the same database".to_owned(),
        );
    }
    if value("memory_usage_percent").is_some_and(|used| used > 80.0) {
        recommend(
            "memory",
            "memory above 80 % of the limit: `perf optimize --type memory`, or a lower cache.capacity".to_owned(),
        );
    }
    if value("db_slow_queries_count").is_some_and(|slow| slow > 0.0) {
        recommend(
            "database",
            "slow queries were counted: `perf optimize --type db` refreshes the planner's statistics".to_owned(),
        );
    }
    if value("error_rate").is_some_and(|rate| rate > 0.01) {
        recommend(
            "errors",
            "over 1 % of requests fail: the server's log names each failed request with its cause"
                .to_owned(),
        );
    }
}

pub(crate) async fn run(client: &Client) -> Result<u8, ClientError> {
    let figures = client.get_json("/api/v1/performance/metrics").await?;
    let checked = client.get_json("/api/v1/performance/health").await?;
    let health = client.get_json_any_status("/api/v1/health").await?;
    let values = &figures["metrics"];

    let mut findings: Vec<(Level, String, String)> = Vec::new();
    for check in checked["health"]["checks"].as_array().into_iter().flatten() {
        let level = match check["status"].as_str() {
            Some("critical") => Level::Issue,
            Some("warning") => Level::Warning,
            _ => continue,
        };
        findings.push((
            level,
            check["metric"].as_str().unwrap_or_default().to_owned(),
            check["reason"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    for alert in checked["firing_alerts"].as_array().into_iter().flatten() {
        findings.push((
            Level::Warning,
            "alert".to_owned(),
            format!("`{}` is firing", alert.as_str().unwrap_or_default()),
        ));
    }
    for (name, component) in health["components"].as_object().into_iter().flatten() {
        let level = match component["status"].as_str() {
            Some("down") => Level::Issue,
            Some("degraded") => Level::Warning,
            _ => continue,
        };
        findings.push((
            level,
            name.clone(),
            component["detail"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    let (load, available) = host();
    if let Some(load) = load
        && load > 1.0
    {
        findings.push((
            Level::Warning,
            "host".to_owned(),
            format!("load is {load:.2} per core: more work than cores"),
        ));
    }
    if let Some(available) = available
        && available < 0.1
    {
        findings.push((
            Level::Warning,
            "host".to_owned(),
            format!("{:.0} % of memory available", available * 100.0),
        ));
    }
    recommendations(values, &mut findings);
    findings.sort_by_key(|finding| std::cmp::Reverse(finding.0));

    let mut figures_table = table(&["figure", "value"]);
    for (name, unit, scale) in FIGURES {
        if let Some(value) = values[*name].as_f64() {
            figures_table.add_row(vec![
                (*name).to_owned(),
                format!("{:.2} {unit}", value * scale),
            ]);
        }
    }
    if let Some(load) = load {
        figures_table.add_row(vec!["host load per core".to_owned(), format!("{load:.2}")]);
    }
    if let Some(available) = available {
        figures_table.add_row(vec![
            "host memory available".to_owned(),
            format!("{:.0} %", available * 100.0),
        ]);
    }
    println!(
        "server health: {}, taken at {}",
        checked["health"]["status"].as_str().unwrap_or("?"),
        figures["taken_at"].as_str().unwrap_or("?")
    );
    println!("{figures_table}");
    if findings.is_empty() {
        println!("no issues, warnings or recommendations");
    } else {
        let mut findings_table = table(&["level", "area", "finding"]);
        for (level, area, text) in &findings {
            let mut cell = Cell::new(level.label());
            if colour() {
                cell = cell.fg(level.colour());
            }
            findings_table.add_row(vec![cell, Cell::new(area), Cell::new(text)]);
        }
        println!("{findings_table}");
    }
    let worst = findings.iter().map(|(level, ..)| *level).max();
    Ok(match worst {
        Some(Level::Issue) => CRITICAL,
        Some(Level::Warning) => WARNING,
        _ => 0,
    })
}
