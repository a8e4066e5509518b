//! Request latency, throughput and error rate over a sliding window of HDR histograms.
//!
//! Two windows are kept: the current one and the one before. Figures are computed over both
//! (the last full window and the part of the current one so far), so they neither jump to
//! zero when a window turns over nor remember traffic from long ago.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use perf_core::sync::lock;
use tokio::time::Instant;

use crate::snapshot::{Snapshot, names};

/// Latencies up to an hour, in microseconds, to three significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

/// Records request latencies; `Clone` shares the record.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    shared: Arc<Shared>,
}

/// One allocation for both, so a [`RequestTimer`] clones one `Arc`.
#[derive(Debug)]
struct Shared {
    windows: Mutex<Windows>,
    active: AtomicI64,
}

#[derive(Debug)]
struct Windows {
    span: Duration,
    current: Window,
    previous: Window,
}

#[derive(Debug)]
struct Window {
    histogram: Histogram<u64>,
    errors: u64,
    started: Instant,
    /// How long the window ran; for the current one, until now.
    length: Duration,
}

impl Window {
    fn new(started: Instant) -> Self {
        Window {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"),
            errors: 0,
            started,
            length: Duration::ZERO,
        }
    }
}

impl LatencyRecorder {
    /// A recorder whose windows last `window` (60 s is a good default).
    pub fn new(window: Duration) -> Self {
        let now = Instant::now();
        LatencyRecorder {
            shared: Arc::new(Shared {
                windows: Mutex::new(Windows {
                    span: window.max(Duration::from_millis(1)),
                    current: Window::new(now),
                    previous: Window::new(now),
                }),
                active: AtomicI64::new(0),
            }),
        }
    }

    /// Records one finished request.
    #[inline]
    pub fn record(&self, latency: Duration, failed: bool) {
        self.record_at(latency, failed, Instant::now());
    }

    /// Records one request that finished at `now`.
    fn record_at(&self, latency: Duration, failed: bool, now: Instant) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_MICROS);
        let mut windows = self.lock();
        windows.rotate(now);
        windows.current.histogram.saturating_record(micros);
        windows.current.errors += u64::from(failed);
    }

    /// Starts timing a request; it counts as active until the timer finishes or drops.
    pub fn start(&self) -> RequestTimer {
        self.shared.active.fetch_add(1, Relaxed);
        RequestTimer {
            recorder: self.clone(),
            started: Instant::now(),
        }
    }

    /// Adds latency percentiles, throughput, error rate and active requests to `snapshot`.
    pub fn collect(&self, snapshot: &mut Snapshot) {
        snapshot.set(
            names::ACTIVE_REQUESTS,
            self.shared.active.load(Relaxed).max(0) as f64,
        );
        let mut windows = self.lock();
        let now = Instant::now();
        windows.rotate(now);
        let mut merged = windows.previous.histogram.clone();
        merged
            .add(&windows.current.histogram)
            .expect("histograms share bounds");
        let elapsed =
            windows.previous.length + now.saturating_duration_since(windows.current.started);
        let count = merged.len();
        if count > 0 {
            let ms = |quantile: f64| merged.value_at_quantile(quantile) as f64 / 1000.0;
            snapshot.set(names::LATENCY_P50_MS, ms(0.50));
            snapshot.set(names::LATENCY_P95_MS, ms(0.95));
            snapshot.set(names::LATENCY_P99_MS, ms(0.99));
            let errors = windows.previous.errors + windows.current.errors;
            snapshot.set(names::ERROR_RATE, errors as f64 / count as f64);
        }
        if !elapsed.is_zero() {
            snapshot.set(names::THROUGHPUT_RPS, count as f64 / elapsed.as_secs_f64());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        lock(&self.shared.windows)
    }
}

impl Windows {
    /// Turns the windows over if the current one is done; after a long silence both are
    /// emptied.
    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.current.started);
        if age < self.span {
            return;
        }
        if age >= self.span * 2 {
            self.previous = Window::new(now);
            self.current = Window::new(now);
            return;
        }
        let started = self.current.started + self.span;
        let mut finished = std::mem::replace(&mut self.current, Window::new(started));
        finished.length = self.span;
        self.previous = finished;
    }
}

/// Times one request; see [`LatencyRecorder::start`].
#[derive(Debug)]
#[must_use = "the request is timed until finish() or drop"]
pub struct RequestTimer {
    recorder: LatencyRecorder,
    started: Instant,
}

impl RequestTimer {
    /// Records the request as finished, failed or not.
    pub fn finish(self, failed: bool) {
        // One clock read serves as the end of the request and as the time of the record.
        let now = Instant::now();
        self.recorder
            .record_at(now.saturating_duration_since(self.started), failed, now);
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // Finished or cancelled, the request is no longer active; only `finish` records a
        // latency sample.
        self.recorder.shared.active.fetch_sub(1, Relaxed);
    }
}
