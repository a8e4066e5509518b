//! Request latency, throughput and error rate over a sliding window of HDR histograms.
//!
//! Two windows are kept: the current one and the one before. Figures are computed over both
//! (the last full window and the part of the current one so far), so they neither jump to
//! zero when a window turns over nor remember traffic from long ago.
//!
//! Recording is striped by thread: each thread records into a stripe of its own (as many as
//! cores, at most eight), so two threads never wait on one lock, and a record is one
//! uncontended lock and a histogram increment. Windows are numbered from the recorder's
//! start, so every stripe turns over at the same instants and a reading merges them. Time
//! comes from perf-core's `FastClock`, or tokio's clock for paused-clock tests
//! ([`LatencyRecorder::with_tokio_clock`]).

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use perf_core::clock::{AnyClock, Clock, FastClock, TokioClock};
use perf_core::per_thread::thread_number;
use perf_core::sync::lock;

use crate::snapshot::{Snapshot, names};

/// Latencies up to an hour, in microseconds, to three significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

/// Records request latencies; `Clone` shares the record.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    shared: Arc<Shared>,
}

/// One allocation for everything, so a [`RequestTimer`] clones one `Arc`.
#[derive(Debug)]
struct Shared {
    stripes: Box<[Stripe]>,
    /// The length of a window, in nanoseconds.
    span: u64,
    clock: AnyClock,
}

/// One thread's share: its windows and its count of requests in progress (a request that
/// starts on one thread and ends on another leaves +1 here and -1 there; the sum is right).
#[derive(Debug)]
#[repr(align(64))]
struct Stripe {
    windows: Mutex<Windows>,
    active: AtomicI64,
}

#[derive(Debug)]
struct Windows {
    /// The number of the current window: nanoseconds since the start over the span.
    number: u64,
    current: Window,
    previous: Window,
}

#[derive(Debug)]
struct Window {
    histogram: Histogram<u64>,
    errors: u64,
}

impl Window {
    fn new() -> Self {
        Window {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"),
            errors: 0,
        }
    }
}

impl Windows {
    /// Turns the windows over to window `number`; after a long silence both are emptied.
    fn rotate(&mut self, number: u64) {
        if number == self.number {
            return;
        }
        if number == self.number + 1 {
            self.previous = std::mem::replace(&mut self.current, Window::new());
        } else {
            self.previous = Window::new();
            self.current = Window::new();
        }
        self.number = number;
    }
}

/// Stripes: the machine's parallelism as a power of two, at most 8 (each stripe holds two
/// histograms of about 190 KB).
fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 8)
            .next_power_of_two()
    })
}

impl LatencyRecorder {
    /// A recorder whose windows last `window` (60 s is a good default).
    pub fn new(window: Duration) -> Self {
        Self::with_clock(window, AnyClock::Fast(FastClock::new()))
    }

    /// The same recorder on tokio's clock, so tests can pause and advance it.
    pub fn with_tokio_clock(window: Duration) -> Self {
        Self::with_clock(window, AnyClock::Tokio(TokioClock::new()))
    }

    fn with_clock(window: Duration, clock: AnyClock) -> Self {
        let span =
            u64::try_from(window.max(Duration::from_millis(1)).as_nanos()).unwrap_or(u64::MAX);
        LatencyRecorder {
            shared: Arc::new(Shared {
                stripes: (0..stripe_count())
                    .map(|_| Stripe {
                        windows: Mutex::new(Windows {
                            number: 0,
                            current: Window::new(),
                            previous: Window::new(),
                        }),
                        active: AtomicI64::new(0),
                    })
                    .collect(),
                span,
                clock,
            }),
        }
    }

    /// Records one finished request.
    #[inline]
    pub fn record(&self, latency: Duration, failed: bool) {
        self.record_at(latency, failed, self.shared.clock.now_nanos());
    }

    /// Records one request that finished at `now` (nanoseconds on the recorder's clock).
    fn record_at(&self, latency: Duration, failed: bool, now: u64) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_MICROS);
        let mut windows = self.my_windows();
        windows.rotate(now / self.shared.span);
        windows.current.histogram.saturating_record(micros);
        windows.current.errors += u64::from(failed);
    }

    fn my_stripe(&self) -> &Stripe {
        let stripes = &self.shared.stripes;
        &stripes[thread_number() & (stripes.len() - 1)]
    }

    fn my_windows(&self) -> MutexGuard<'_, Windows> {
        lock(&self.my_stripe().windows)
    }

    /// Starts timing a request; it counts as active until the timer finishes or drops.
    pub fn start(&self) -> RequestTimer {
        self.my_stripe().active.fetch_add(1, Relaxed);
        RequestTimer {
            recorder: self.clone(),
            started: self.shared.clock.now_nanos(),
        }
    }

    /// Adds latency percentiles, throughput, error rate and active requests to `snapshot`.
    pub fn collect(&self, snapshot: &mut Snapshot) {
        let shared = &*self.shared;
        let active: i64 = shared
            .stripes
            .iter()
            .map(|stripe| stripe.active.load(Relaxed))
            .sum();
        snapshot.set(names::ACTIVE_REQUESTS, active.max(0) as f64);
        let now = shared.clock.now_nanos();
        let number = now / shared.span;
        let mut merged = Window::new().histogram;
        let mut errors = 0;
        for stripe in shared.stripes.iter() {
            let mut windows = lock(&stripe.windows);
            windows.rotate(number);
            for window in [&windows.previous, &windows.current] {
                merged
                    .add(&window.histogram)
                    .expect("histograms share bounds");
                errors += window.errors;
            }
        }
        // The previous window ran in full (unless this is the first); the current one since
        // its start.
        let elapsed = now - number.saturating_sub(1) * shared.span;
        let count = merged.len();
        if count > 0 {
            let ms = |quantile: f64| merged.value_at_quantile(quantile) as f64 / 1000.0;
            snapshot.set(names::LATENCY_P50_MS, ms(0.50));
            snapshot.set(names::LATENCY_P95_MS, ms(0.95));
            snapshot.set(names::LATENCY_P99_MS, ms(0.99));
            snapshot.set(names::ERROR_RATE, errors as f64 / count as f64);
        }
        if elapsed > 0 {
            snapshot.set(
                names::THROUGHPUT_RPS,
                count as f64 / Duration::from_nanos(elapsed).as_secs_f64(),
            );
        }
    }
}

/// Times one request; see [`LatencyRecorder::start`].
#[derive(Debug)]
#[must_use = "the request is timed until finish() or drop"]
pub struct RequestTimer {
    recorder: LatencyRecorder,
    /// Nanoseconds on the recorder's clock.
    started: u64,
}

impl RequestTimer {
    /// Records the request as finished, failed or not.
    pub fn finish(self, failed: bool) {
        // One clock read serves as the end of the request and as the time of the record.
        let now = self.recorder.shared.clock.now_nanos();
        self.recorder.record_at(
            Duration::from_nanos(now.saturating_sub(self.started)),
            failed,
            now,
        );
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        // Finished or cancelled, the request is no longer active; only `finish` records a
        // latency sample.
        self.recorder.my_stripe().active.fetch_sub(1, Relaxed);
    }
}
