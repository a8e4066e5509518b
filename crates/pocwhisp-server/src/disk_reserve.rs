//! The disk reserve: a file of `server.disk_reserve` bytes kept in the data directory. When a
//! write the operator needs on a full disk (deleting a session, storing a job's result) fails
//! for want of space, the reserve is given up and the write made again, so a full disk can
//! still be emptied through the API. While it is given up, uploads are refused (507) before
//! a byte is read; it is made again once the disk has room for it twice over.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// The reserve of one data directory; clones share it.
#[derive(Debug, Clone)]
pub struct DiskReserve {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    size: u64,
    /// Given up (or never made for want of room): the disk is full or nearly.
    released: AtomicBool,
}

/// Written a block at a time where it cannot be allocated at once, so that making it never
/// holds it in memory.
const BLOCK: usize = 1 << 20;

impl DiskReserve {
    /// The reserve of `data_dir`, `size` bytes (0: none); [`fill`](Self::fill) makes it.
    pub fn new(data_dir: &Path, size: u64) -> Self {
        DiskReserve {
            inner: Arc::new(Inner {
                path: data_dir.join("disk-reserve"),
                size,
                released: AtomicBool::new(size > 0),
            }),
        }
    }

    /// Makes the reserve when it is missing and the disk has room for it twice over; true
    /// when it is in place afterwards (always, with a size of 0).
    ///
    /// # Errors
    ///
    /// The file system's error other than a full disk (a full disk leaves it released).
    pub fn fill(&self) -> std::io::Result<bool> {
        let inner = &self.inner;
        if inner.size == 0 || !self.is_released() {
            return Ok(true);
        }
        let dir = inner.path.parent().unwrap_or(Path::new("."));
        let stats = rustix::fs::statvfs(dir)?;
        if stats.f_bavail.saturating_mul(stats.f_frsize) < inner.size.saturating_mul(2) {
            return Ok(false);
        }
        match write_reserve(&inner.path, inner.size) {
            Ok(()) => {
                inner.released.store(false, Relaxed);
                tracing::info!(path = %inner.path.display(), bytes = inner.size, "disk reserve in place");
                Ok(true)
            }
            Err(error) => {
                let _ = std::fs::remove_file(&inner.path);
                if error.kind() == std::io::ErrorKind::StorageFull {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Gives the reserve up to the write that needs it; true when that freed space (it was
    /// in place), false when there was none left to give.
    pub fn release(&self) -> bool {
        let inner = &self.inner;
        if inner.size == 0 || inner.released.swap(true, Relaxed) {
            return false;
        }
        tracing::warn!(path = %inner.path.display(), "the disk is full: disk reserve given up; uploads are refused until there is room");
        metrics::counter!("pocwhisp_disk_reserve_released_total").increment(1);
        match std::fs::remove_file(&inner.path) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "removing the disk reserve failed");
                false
            }
        }
    }

    /// Whether the reserve is given up: the disk filled, and uploads are refused.
    pub fn is_released(&self) -> bool {
        self.inner.released.load(Relaxed)
    }
}

/// Allocates the file's blocks at once where the file system can (no bytes written), else
/// writes zeros.
fn write_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => return file.sync_all(),
        Err(rustix::io::Errno::OPNOTSUPP) => {}
        Err(error) => return Err(error.into()),
    }
    let block = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let now = left.min(BLOCK as u64) as usize;
        file.write_all(&block[..now])?;
        left -= now as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_given_up_once_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::new(dir.path(), 3 * BLOCK as u64 + 5);
        assert!(reserve.is_released(), "not made yet");
        assert!(reserve.fill().unwrap());
        let file = dir.path().join("disk-reserve");
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            3 * BLOCK as u64 + 5
        );
        assert!(!reserve.is_released());
        assert!(reserve.release(), "space freed");
        assert!(!file.exists());
        assert!(reserve.is_released());
        assert!(!reserve.release(), "nothing left to give");
        assert!(reserve.fill().unwrap());
        assert!(file.exists() && !reserve.is_released());
    }

    #[test]
    fn a_reserve_of_zero_is_never_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::new(dir.path(), 0);
        assert!(!reserve.is_released());
        assert!(reserve.fill().unwrap());
        assert!(!reserve.release());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_disk_without_room_for_it_leaves_it_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let stats = rustix::fs::statvfs(dir.path()).unwrap();
        let reserve = DiskReserve::new(dir.path(), stats.f_bavail * stats.f_frsize);
        assert!(!reserve.fill().unwrap());
        assert!(reserve.is_released());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
