//! Process figures from Linux's `/proc`: CPU use, resident memory, threads, file
//! descriptors. Elsewhere the collector returns nothing rather than guessing.

use std::fs;
use std::time::Instant;

use crate::snapshot::{Snapshot, names};

/// Reads the current process; CPU use is measured between consecutive calls.
#[derive(Debug)]
pub struct ProcessCollector {
    previous: Option<(Instant, f64)>,
    memory_limit: Option<u64>,
}

impl ProcessCollector {
    /// A collector; memory use is a percentage of `memory_limit`, or of the cgroup limit,
    /// or of the machine's memory when none is given.
    pub fn new(memory_limit: Option<u64>) -> Self {
        ProcessCollector {
            previous: None,
            memory_limit: memory_limit.or_else(detect_memory_limit),
        }
    }

    /// Adds the process figures to `snapshot`.
    pub fn collect(&mut self, snapshot: &mut Snapshot) {
        let now = Instant::now();
        if let Some(cpu) = cpu_seconds() {
            if let Some((then, before)) = self.previous {
                let seconds = now.duration_since(then).as_secs_f64();
                if seconds > 0.0 {
                    let used = (cpu - before).max(0.0);
                    snapshot.set(names::CPU_USAGE_PERCENT, 100.0 * used / seconds);
                }
            }
            self.previous = Some((now, cpu));
        }
        if let Some(status) = read("/proc/self/status") {
            if let Some(resident) = status_field(&status, "VmRSS:") {
                let bytes = resident * 1024;
                snapshot.set(names::RESIDENT_BYTES, bytes as f64);
                if let Some(limit) = self.memory_limit.filter(|&l| l > 0) {
                    snapshot.set(
                        names::MEMORY_USAGE_PERCENT,
                        100.0 * bytes as f64 / limit as f64,
                    );
                }
            }
            if let Some(threads) = status_field(&status, "Threads:") {
                snapshot.set(names::THREAD_COUNT, threads as f64);
            }
        }
        if let Ok(entries) = fs::read_dir("/proc/self/fd") {
            snapshot.set(names::OPEN_FDS, entries.count() as f64);
        }
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// The CPU time every thread of the process has used, to the nanosecond. (`/proc/self/stat`
/// counts in 10 ms ticks: two snapshots a few milliseconds apart, as an on-demand one right
/// after a scheduled one, read one tick as several cores busy.) Through the C library, whose
/// clock call every environment supports, valgrind included.
#[cfg(unix)]
#[allow(unsafe_code)]
fn cpu_seconds() -> Option<f64> {
    let mut used = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `used` is a live, writable timespec for the call's duration, and the clock id
    // is one the C library defines; nothing else is read or written.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut used) };
    (status == 0).then_some(used.tv_sec as f64 + used.tv_nsec as f64 * 1e-9)
}

#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

fn status_field(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// The cgroup v2 memory limit, or the machine's memory.
fn detect_memory_limit() -> Option<u64> {
    let cgroup =
        read("/sys/fs/cgroup/memory.max").and_then(|limit| limit.trim().parse::<u64>().ok());
    cgroup.or_else(|| {
        read("/proc/meminfo")
            .and_then(|info| status_field(&info, "MemTotal:"))
            .map(|kib| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    /// Snapshots milliseconds apart, around one thread kept busy: each reads about one core,
    /// never more cores than the machine has, and not zero.
    #[cfg(unix)]
    #[test]
    fn cpu_use_between_close_snapshots_is_what_was_used() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let mut collector = ProcessCollector::new(None);
        collector.collect(&mut Snapshot::at(SystemTime::now()));
        let mut readings = Vec::new();
        for _ in 0..20 {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(3) {
                std::hint::spin_loop();
            }
            let mut snapshot = Snapshot::at(SystemTime::now());
            collector.collect(&mut snapshot);
            readings.push(snapshot.get(names::CPU_USAGE_PERCENT).expect("a reading"));
        }
        readings.sort_by(f64::total_cmp);
        assert!(
            readings[readings.len() - 1] <= 100.0 * cores * 1.05,
            "{readings:?} on {cores} cores"
        );
        // A busy thread on a machine shared with other tests: at least a third of a core.
        assert!(readings[readings.len() / 2] > 33.0, "{readings:?}");
    }
}
