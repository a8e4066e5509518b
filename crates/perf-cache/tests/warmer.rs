//! The cache warmer: schedule, reports and failures, on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use perf_cache::warmer::{CacheWarmer, CacheWarmerConfig};
use tokio::time::{advance, sleep};

#[tokio::test(start_paused = true)]
async fn runs_now_and_on_every_interval_until_dropped() {
    let warmer = CacheWarmer::new(CacheWarmerConfig {
        interval: Duration::from_secs(300),
    })
    .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    warmer.register("sessions", move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, SeqCst);
            Ok(10)
        }
    });
    let schedule = warmer.spawn();
    tokio::task::yield_now().await;
    assert_eq!(runs.load(SeqCst), 1, "the first run is immediate");
    advance(Duration::from_secs(300)).await;
    tokio::task::yield_now().await;
    advance(Duration::from_secs(300)).await;
    tokio::task::yield_now().await;
    assert_eq!(runs.load(SeqCst), 3);
    drop(schedule);
    advance(Duration::from_secs(900)).await;
    tokio::task::yield_now().await;
    assert_eq!(runs.load(SeqCst), 3, "no runs after the handle is dropped");
    assert_eq!(warmer.last_report().unwrap().warmed, 10);
}

#[tokio::test(start_paused = true)]
async fn a_report_names_what_was_warmed_and_what_failed() {
    let warmer = CacheWarmer::default();
    warmer.register("transcripts", || async {
        sleep(Duration::from_millis(300)).await;
        Ok(42)
    });
    warmer.register("audio metadata", || async {
        Err("database unavailable".into())
    });
    warmer.register("summaries", || async {
        sleep(Duration::from_millis(100)).await;
        panic!("bug in a warm-up function")
    });
    let report = warmer.run().await;
    assert_eq!((report.warmed, report.failures), (42, 2));
    assert_eq!(
        report.took,
        Duration::from_millis(300),
        "functions run concurrently"
    );
    let outcome: Vec<(&str, usize, Option<&str>)> = report
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), t.warmed, t.error.as_deref()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("transcripts", 42, None),
            ("audio metadata", 0, Some("database unavailable")),
            ("summaries", 0, Some("panicked")),
        ]
    );
    assert_eq!(report.tasks[0].took, Duration::from_millis(300));
    assert_eq!(warmer.last_report(), Some(report));
}

#[tokio::test]
async fn an_empty_warmer_reports_nothing_done() {
    let report = CacheWarmer::default().run().await;
    assert_eq!(
        (report.warmed, report.failures, report.tasks.len()),
        (0, 0, 0)
    );
}
