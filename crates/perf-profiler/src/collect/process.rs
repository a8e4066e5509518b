//! Process figures from Linux's `/proc`: CPU use, resident memory, threads, file
//! descriptors. Elsewhere the collector returns nothing rather than guessing.

use std::fs;
use std::time::Instant;

use crate::snapshot::{Snapshot, names};

/// Clock ticks per second in `/proc/<pid>/stat`: USER_HZ, which Linux fixes at 100 on every
/// architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the current process; CPU use is measured between consecutive calls.
#[derive(Debug)]
pub struct ProcessCollector {
    previous: Option<(Instant, u64)>,
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
        if let Some(ticks) = cpu_ticks() {
            if let Some((then, before)) = self.previous {
                let seconds = now.duration_since(then).as_secs_f64();
                if seconds > 0.0 {
                    let used = ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
                    snapshot.set(names::CPU_USAGE_PERCENT, 100.0 * used / seconds);
                }
            }
            self.previous = Some((now, ticks));
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

/// utime + stime of `/proc/self/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn cpu_ticks() -> Option<u64> {
    let stat = read("/proc/self/stat")?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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
