//! CPU profile capture with pprof: time-limited, one at a time, as pprof protobuf (for
//! `go tool pprof` and friends) and as a flamegraph SVG.
//!
//! Sampling runs on a blocking thread for the whole capture, so the async runtime is not
//! disturbed and the caller just awaits the result.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pprof::protos::Message;

/// The longest capture accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(60);

/// A finished capture.
#[derive(Debug, Clone)]
pub struct CpuProfile {
    /// The pprof protobuf (uncompressed `profile.proto`).
    pub pprof: Vec<u8>,
    /// A flamegraph of the samples, as SVG.
    pub flamegraph_svg: Vec<u8>,
    /// Samples taken.
    pub samples: usize,
}

/// Why a capture could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureError {
    /// Another capture is running; profiles cannot overlap.
    Busy,
    /// The duration is zero or longer than [`MAX_DURATION`].
    InvalidDuration,
    /// pprof failed.
    Profiler(String),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Busy => f.write_str("a CPU profile is already being captured"),
            CaptureError::InvalidDuration => {
                write!(
                    f,
                    "the duration must be between 1 ms and {} s",
                    MAX_DURATION.as_secs()
                )
            }
            CaptureError::Profiler(error) => write!(f, "profiler failed: {error}"),
        }
    }
}

impl Error for CaptureError {}

/// Whether a capture is running anywhere in the process. pprof's sampler (a `SIGPROF` timer)
/// is process-wide, so the one-at-a-time rule is too: a second profiler in the same process
/// (two servers, a library and its host) gets [`CaptureError::Busy`], not pprof's failure.
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// The right to sample, held by the sampling thread: it is given back when sampling ends,
/// even when the caller stopped waiting (a client that hung up must not block captures
/// forever).
struct Claim;

impl Claim {
    fn take() -> Option<Claim> {
        (!CAPTURING.swap(true, Ordering::AcqRel)).then_some(Claim)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CAPTURING.store(false, Ordering::Release);
    }
}

/// Captures CPU profiles, one at a time in the process.
#[derive(Debug, Clone, Default)]
pub struct CpuProfiler {
    _private: (),
}

impl CpuProfiler {
    /// A profiler.
    pub fn new() -> Self {
        CpuProfiler::default()
    }

    /// Samples the process's stacks `frequency` times a second for `duration`.
    ///
    /// # Errors
    ///
    /// [`CaptureError::Busy`] while another capture runs in the process, [`CaptureError::InvalidDuration`],
    /// or pprof's own failure.
    pub async fn capture(
        &self,
        duration: Duration,
        frequency: i32,
    ) -> Result<CpuProfile, CaptureError> {
        if duration.is_zero() || duration > MAX_DURATION {
            return Err(CaptureError::InvalidDuration);
        }
        let claim = Claim::take().ok_or(CaptureError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _claim = claim;
            sample(duration, frequency.clamp(1, 1000))
        })
        .await
        .map_err(|error| CaptureError::Profiler(error.to_string()))
        .and_then(|result| result)
    }
}

fn sample(duration: Duration, frequency: i32) -> Result<CpuProfile, CaptureError> {
    let failed = |error: pprof::Error| CaptureError::Profiler(error.to_string());
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(frequency)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(failed)?;
    std::thread::sleep(duration);
    let report = guard.report().build().map_err(failed)?;
    let samples = report.data.values().map(|count| *count as usize).sum();
    let mut flamegraph_svg = Vec::new();
    // An empty profile (an idle process) has no flamegraph; it is still a valid capture.
    if samples > 0 {
        report.flamegraph(&mut flamegraph_svg).map_err(failed)?;
    }
    let profile = report.pprof().map_err(failed)?;
    let mut pprof = Vec::new();
    profile
        .write_to_vec(&mut pprof)
        .map_err(|error| CaptureError::Profiler(error.to_string()))?;
    Ok(CpuProfile {
        pprof,
        flamegraph_svg,
        samples,
    })
}
