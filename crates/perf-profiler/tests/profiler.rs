//! The profiler's parts, each against figures it can be checked on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use perf_profiler::collect::LatencyRecorder;
use perf_profiler::health::{self, AlertEngine, AlertRule, Direction, Status, Threshold};
use perf_profiler::report::Report;
use perf_profiler::snapshot::{Snapshot, names};
use perf_profiler::{Profiler, ProfilerConfig, trends};
use tokio::time::advance;

const START: SystemTime = SystemTime::UNIX_EPOCH;

/// A snapshot `seconds` after the start with the given figures.
/// This thread's CPU time so far, from the scheduler's own account.
fn thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let nanos = schedstat
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Duration::from_nanos(nanos)
}

fn at(seconds: u64, figures: &[(&str, f64)]) -> Snapshot {
    let mut snapshot = Snapshot::at(START + Duration::from_secs(1_700_000_000 + seconds));
    for (name, value) in figures {
        snapshot.set(*name, *value);
    }
    snapshot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_report_plausible_figures_for_this_process() {
    let profiler = Profiler::new(ProfilerConfig::default()).unwrap();
    profiler.register_probe(|snapshot: &mut Snapshot| snapshot.set(names::CACHE_HIT_RATE, 0.9));
    profiler.snapshot();
    let between = std::time::Instant::now();
    // Burn 200 ms of this thread's CPU time (not of wall time: on a loaded machine a wall
    // clock loop may get a fraction of a core).
    let burned = thread_cpu();
    let mut x = 0u64;
    while thread_cpu() - burned < Duration::from_millis(200) {
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
    }
    std::hint::black_box(x);
    let snapshot = profiler.snapshot();
    let wall = between.elapsed();
    let value = |name| {
        snapshot
            .get(name)
            .unwrap_or_else(|| panic!("{name} not collected"))
    };
    let resident = value(names::RESIDENT_BYTES);
    assert!((1e6..1e11).contains(&resident), "resident {resident}");
    assert!(
        value(names::THREAD_COUNT) >= 2.0,
        "runtime workers are threads"
    );
    assert!(
        value(names::OPEN_FDS) >= 3.0,
        "at least stdin, stdout, stderr"
    );
    assert_eq!(value(names::TOKIO_WORKERS), 2.0);
    // The percentage over the wall time between the snapshots accounts for the CPU time
    // burned, however long the machine made us wait for it.
    let cpu = value(names::CPU_USAGE_PERCENT);
    let cpu_seconds = cpu / 100.0 * wall.as_secs_f64();
    assert!(
        (0.18..=wall.as_secs_f64() * 2.0 + 0.05).contains(&cpu_seconds),
        "{cpu}% over {wall:?} is {cpu_seconds} s of CPU; 0.2 s were burned"
    );
    assert!((0.0..100.0).contains(&value(names::MEMORY_USAGE_PERCENT)));
    assert_eq!(
        value(names::CACHE_HIT_RATE),
        0.9,
        "probes add their figures"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alive_tasks_follow_the_tasks_spawned_and_finished() {
    let profiler = Profiler::new(ProfilerConfig::default()).unwrap();
    let alive = |profiler: &Profiler| {
        profiler
            .snapshot()
            .get(names::TOKIO_ALIVE_TASKS)
            .expect("collected")
    };
    let before = alive(&profiler);
    let (release, released) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let mut released = released.clone();
            tokio::spawn(async move { released.wait_for(|go| *go).await.map(|_| ()) })
        })
        .collect();
    assert!(
        alive(&profiler) >= before + 50.0,
        "50 parked tasks are alive"
    );
    release.send(true).unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // A task's output reaches its handle a moment before the runtime drops the task: wait
    // for the count (a bounded number of turns), rather than bet on one turn being enough.
    for _ in 0..1000 {
        if alive(&profiler) <= before {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(alive(&profiler) <= before, "finished tasks are not");
}

#[tokio::test(start_paused = true)]
async fn latency_percentiles_throughput_and_errors_come_from_the_samples() {
    let recorder = LatencyRecorder::with_tokio_clock(Duration::from_secs(60));
    for i in 0..100 {
        let latency = if i < 90 { 10 } else { 200 };
        recorder.record(Duration::from_millis(latency), i % 25 == 0);
    }
    advance(Duration::from_secs(10)).await;
    let mut snapshot = Snapshot::at(START);
    recorder.collect(&mut snapshot);
    let p = |name| snapshot.get(name).unwrap();
    assert!((p(names::LATENCY_P50_MS) - 10.0).abs() < 0.1);
    assert!((p(names::LATENCY_P95_MS) - 200.0).abs() < 0.5);
    assert!((p(names::LATENCY_P99_MS) - 200.0).abs() < 0.5);
    assert_eq!(p(names::ERROR_RATE), 0.04);
    assert_eq!(p(names::THROUGHPUT_RPS), 10.0, "100 requests in 10 s");

    // Old samples leave: two windows later only new traffic counts.
    advance(Duration::from_secs(125)).await;
    recorder.record(Duration::from_millis(50), false);
    let mut later = Snapshot::at(START);
    recorder.collect(&mut later);
    assert!((later.get(names::LATENCY_P99_MS).unwrap() - 50.0).abs() < 0.1);
    assert_eq!(later.get(names::ERROR_RATE), Some(0.0));

    let timer = recorder.start();
    let mut busy = Snapshot::at(START);
    recorder.collect(&mut busy);
    assert_eq!(busy.get(names::ACTIVE_REQUESTS), Some(1.0));
    timer.finish(false);
}

#[test]
fn thresholds_give_a_status_and_a_reason_per_check() {
    let snapshot = at(
        0,
        &[
            (names::LATENCY_P95_MS, 650.0),
            (names::CACHE_HIT_RATE, 0.4),
            (names::CPU_USAGE_PERCENT, 35.0),
        ],
    );
    let report = health::check(&snapshot, &health::default_thresholds());
    let status = |metric: &str| {
        report
            .checks
            .iter()
            .find(|c| c.metric == metric)
            .unwrap()
            .status
    };
    assert_eq!(status(names::LATENCY_P95_MS), Status::Warning);
    assert_eq!(
        status(names::CACHE_HIT_RATE),
        Status::Critical,
        "hit rate is bad when low"
    );
    assert_eq!(status(names::CPU_USAGE_PERCENT), Status::Ok);
    assert_eq!(
        status(names::ERROR_RATE),
        Status::Ok,
        "not measured is not an outage"
    );
    assert_eq!(report.status, Status::Critical);
    let reason = &report
        .checks
        .iter()
        .find(|c| c.metric == names::CACHE_HIT_RATE)
        .unwrap()
        .reason;
    assert!(reason.contains("critical level 0.5"), "{reason}");
}

#[test]
fn alerts_fire_after_the_hold_time_resolve_with_hysteresis_and_ignore_flapping() {
    let mut engine = AlertEngine::new(vec![AlertRule {
        name: "high_cpu".into(),
        metric: names::CPU_USAGE_PERCENT.into(),
        direction: Direction::Above,
        value: 90.0,
        severity: Status::Critical,
        for_at_least: Duration::from_secs(60),
    }]);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    engine.on_alert(move |event| sink.lock().unwrap().push((event.firing, event.value)));
    let cpu = |seconds, value| at(seconds, &[(names::CPU_USAGE_PERCENT, value)]);

    // Flapping across the level every 30 s never holds for 60 s: no alert.
    for step in 0..10 {
        engine.observe(&cpu(step * 30, if step % 2 == 0 { 95.0 } else { 50.0 }));
    }
    assert!(heard.lock().unwrap().is_empty());

    // Held above for a minute: one alert, however many samples.
    for step in 0..=6 {
        engine.observe(&cpu(1000 + step * 10, 97.0));
    }
    assert_eq!(*heard.lock().unwrap(), [(true, 97.0)]);
    assert_eq!(engine.firing(), ["high_cpu"]);

    // A brief dip does not resolve it; a minute below does, once.
    engine.observe(&cpu(1100, 40.0));
    engine.observe(&cpu(1120, 96.0));
    for step in 0..=6 {
        engine.observe(&cpu(1200 + step * 10, 40.0));
    }
    assert_eq!(*heard.lock().unwrap(), [(true, 97.0), (false, 40.0)]);
    assert!(engine.firing().is_empty());
}

#[test]
fn trends_are_fitted_and_flagged_on_synthetic_series() {
    // Resident memory growing 40 MB an hour, sampled every 30 s for two hours.
    let growing: Vec<Snapshot> = (0..240)
        .map(|i| {
            at(
                i * 30,
                &[(
                    names::RESIDENT_BYTES,
                    500e6 + 40e6 * (i * 30) as f64 / 3600.0,
                )],
            )
        })
        .collect();
    let trend = trends::trend(names::RESIDENT_BYTES, &growing).unwrap();
    assert!(
        (trend.slope_per_hour - 40e6).abs() < 1.0,
        "{}",
        trend.slope_per_hour
    );
    assert_eq!(trends::flags(&growing), ["resident memory growing 40 MB/h"]);

    // A flat series raises nothing.
    let flat: Vec<Snapshot> = (0..60)
        .map(|i| at(i * 30, &[(names::LATENCY_P95_MS, 80.0)]))
        .collect();
    assert!(trends::flags(&flat).is_empty());
    assert_eq!(
        trends::trend(names::LATENCY_P95_MS, &flat)
            .unwrap()
            .slope_per_hour,
        0.0
    );

    // A step in latency is a change point, and rising.
    let step: Vec<Snapshot> = (0..30)
        .map(|i| {
            at(
                i * 60,
                &[(
                    names::LATENCY_P95_MS,
                    if i < 20 { 80.0 + (i % 3) as f64 } else { 400.0 },
                )],
            )
        })
        .collect();
    let flags = trends::flags(&step);
    assert!(
        flags.iter().any(|f| f.starts_with("p95 rising")),
        "{flags:?}"
    );
    assert!(
        flags.contains(&"request_latency_p95_ms changed abruptly".to_owned()),
        "{flags:?}"
    );
    assert!(trends::trend(names::LATENCY_P95_MS, &step).unwrap().ewma > 300.0);
}

#[test]
fn report_figures_equal_those_computed_from_the_samples() {
    let latencies = [120.0, 80.0, 650.0, 900.0, 1200.0];
    let snapshots: Vec<Snapshot> = latencies
        .iter()
        .enumerate()
        .map(|(i, &p95)| {
            at(
                i as u64 * 60,
                &[
                    (names::LATENCY_P95_MS, p95),
                    (names::CACHE_HIT_RATE, 0.6),
                    (names::DB_SLOW_QUERIES, i as f64 * 2.0),
                ],
            )
        })
        .collect();
    let report = Report::build(
        Duration::from_secs(3600),
        &snapshots,
        &health::default_thresholds(),
    );
    let p95 = report.metric(names::LATENCY_P95_MS).unwrap();
    assert_eq!(p95.samples, 5);
    assert_eq!(p95.average, latencies.iter().sum::<f64>() / 5.0);
    assert_eq!((p95.min, p95.max, p95.last), (80.0, 1200.0, 1200.0));
    assert_eq!((p95.p50, p95.p95), (650.0, 1200.0));
    let breach = report
        .breaches
        .iter()
        .find(|b| b.metric == names::LATENCY_P95_MS)
        .unwrap();
    assert_eq!((breach.warning_samples, breach.critical_samples), (3, 1));
    assert_eq!(report.samples, 5);
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.starts_with("P95 latency averaged 590 ms")),
        "{:?}",
        report.recommendations
    );
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.starts_with("cache hit rate averaged 60%"))
    );
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.starts_with("8 slow queries"))
    );

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["samples"], 5);
    let markdown = report.to_markdown();
    assert!(
        markdown.contains("| request_latency_p95_ms | 590.000 | 80.000 | 1200.000 |"),
        "{markdown}"
    );
    let csv = report.to_csv();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,cache_hit_rate,db_slow_queries_count,request_latency_p95_ms")
    );
    assert_eq!(lines.next(), Some("1700000000,0.6,0,120"));
    assert_eq!(csv.lines().count(), 6);

    let calm = Report::build(
        Duration::from_secs(60),
        &[at(0, &[(names::LATENCY_P95_MS, 40.0)])],
        &[],
    );
    assert_eq!(
        calm.recommendations,
        ["no action needed: every figure is within its target"]
    );
}

#[tokio::test(start_paused = true)]
async fn history_is_bounded_and_sampling_runs_on_its_interval() {
    let profiler = Profiler::new(ProfilerConfig {
        interval: Duration::from_secs(30),
        retention: Duration::from_secs(90),
        ..ProfilerConfig::default()
    })
    .unwrap();
    for i in 0..10 {
        profiler.record(at(i * 30, &[(names::CPU_USAGE_PERCENT, i as f64)]));
    }
    let kept = profiler.history(Duration::from_secs(3600));
    assert_eq!(kept.len(), 3, "90 s at 30 s");
    assert_eq!(kept[2].get(names::CPU_USAGE_PERCENT), Some(9.0));
    assert_eq!(profiler.history(Duration::from_secs(30)).len(), 2);

    let fresh = Profiler::new(ProfilerConfig::default()).unwrap();
    let sampler = fresh.spawn();
    tokio::task::yield_now().await;
    for _ in 0..2 {
        advance(Duration::from_secs(30)).await;
        tokio::task::yield_now().await;
    }
    drop(sampler);
    assert_eq!(
        fresh.history(Duration::from_secs(86_400)).len(),
        3,
        "now, +30 s, +60 s"
    );
    assert!(
        Profiler::new(ProfilerConfig {
            interval: Duration::ZERO,
            ..ProfilerConfig::default()
        })
        .is_err()
    );
}

#[test]
fn a_threshold_below_is_critical_past_its_lower_level() {
    let threshold = Threshold::new("free_disk_percent", Direction::Below, 20.0, 10.0);
    assert_eq!(threshold.status(25.0), Status::Ok);
    assert_eq!(threshold.status(15.0), Status::Warning);
    assert_eq!(threshold.status(5.0), Status::Critical);
}

#[tokio::test]
async fn the_layer_counts_server_errors_and_inner_errors_as_failures() {
    use http::{Request, Response};
    use perf_profiler::collect::LatencyLayer;
    use tower::{Layer, Service, ServiceExt, service_fn};

    let recorder = LatencyRecorder::new(Duration::from_secs(60));
    let mut service =
        LatencyLayer::new(recorder.clone()).layer(service_fn(|request: Request<()>| async move {
            match request.uri().path() {
                "/500" => Ok(Response::builder().status(500).body(()).unwrap()),
                "/404" => Ok(Response::builder().status(404).body(()).unwrap()),
                "/err" => Err("connection reset"),
                _ => Ok(Response::new(())),
            }
        }));
    for path in ["/", "/404", "/500", "/err"] {
        let _ = service
            .ready()
            .await
            .unwrap()
            .call(Request::get(path).body(()).unwrap())
            .await;
    }
    let mut snapshot = Snapshot::at(START);
    recorder.collect(&mut snapshot);
    assert_eq!(
        snapshot.get(names::ERROR_RATE),
        Some(0.5),
        "the 5xx and the error; not the 404"
    );
    assert_eq!(snapshot.get(names::ACTIVE_REQUESTS), Some(0.0));
}

#[test]
fn records_from_several_threads_add_up() {
    let recorder = LatencyRecorder::new(Duration::from_secs(3600));
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let recorder = recorder.clone();
            scope.spawn(move || {
                for i in 0..1000u64 {
                    let timer = recorder.start();
                    drop(timer);
                    recorder.record(Duration::from_millis(1 + thread), i % 100 == 0);
                }
            });
        }
    });
    let mut snapshot = Snapshot::at(START);
    recorder.collect(&mut snapshot);
    assert_eq!(snapshot.get(names::ERROR_RATE), Some(0.01), "40 of 4000");
    assert_eq!(snapshot.get(names::ACTIVE_REQUESTS), Some(0.0));
    let p99 = snapshot.get(names::LATENCY_P99_MS).unwrap();
    assert!((p99 - 4.0).abs() < 0.01, "{p99}");
}
