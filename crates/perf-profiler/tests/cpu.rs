//! CPU profile capture. Real time: the profiler samples real CPU use.
#![cfg(feature = "cpu-profile")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use perf_profiler::cpu::{CaptureError, CpuProfiler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_a_busy_process_has_samples_a_flamegraph_and_a_pprof() {
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::clone(&stop);
    let spinner = std::thread::spawn(move || {
        let mut x = 0u64;
        while !spinning.load(SeqCst) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    });
    let profiler = CpuProfiler::new();
    let capture = tokio::spawn({
        let profiler = profiler.clone();
        async move { profiler.capture(Duration::from_millis(400), 250).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        CpuProfiler::new()
            .capture(Duration::from_millis(100), 100)
            .await
            .unwrap_err(),
        CaptureError::Busy,
        "captures never overlap, even from another profiler: pprof's sampler is process-wide"
    );
    let profile = capture.await.unwrap().unwrap();
    stop.store(true, SeqCst);
    spinner.join().unwrap();
    assert!(profile.samples > 10, "{} samples", profile.samples);
    assert!(String::from_utf8_lossy(&profile.flamegraph_svg).contains("<svg"));
    assert!(profile.pprof.len() > 100);
    assert_eq!(
        profiler.capture(Duration::ZERO, 100).await.unwrap_err(),
        CaptureError::InvalidDuration
    );
    assert_eq!(
        profiler
            .capture(Duration::from_secs(600), 100)
            .await
            .unwrap_err(),
        CaptureError::InvalidDuration
    );

    // A caller that stops waiting does not leave the profiler busy once sampling ends.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        profiler.capture(Duration::from_millis(300), 100),
    )
    .await;
    assert!(abandoned.is_err(), "the caller gave up");
    assert_eq!(
        profiler
            .capture(Duration::from_millis(10), 100)
            .await
            .unwrap_err(),
        CaptureError::Busy,
        "the abandoned capture is still sampling"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    profiler
        .capture(Duration::from_millis(10), 100)
        .await
        .expect("free again when the abandoned sampling ended");
}
