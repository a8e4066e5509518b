//! Intake: an upload is streamed to a temporary file in the data directory while its
//! SHA-256 is computed, so even a 1 GiB upload never sits in memory; once checked, it is
//! fsynced and renamed to its hash (`audio/ab/abcd…`). The same audio uploaded twice is
//! stored once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::AsyncWriteExt;

/// An upload being written.
#[derive(Debug)]
pub struct Receiving {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

/// An upload written in full to a temporary file.
#[derive(Debug)]
pub struct Received {
    /// The temporary file.
    pub path: PathBuf,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// Why an upload could not be received.
#[derive(Debug)]
#[non_exhaustive]
pub enum IntakeError {
    /// More than the limit.
    TooLarge(u64),
    /// The disk refused.
    Io(std::io::Error),
}

impl std::fmt::Display for IntakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntakeError::TooLarge(limit) => {
                write!(f, "the upload is larger than the {limit} bytes accepted")
            }
            IntakeError::Io(error) => write!(f, "cannot store the upload: {error}"),
        }
    }
}

impl std::error::Error for IntakeError {}

impl From<std::io::Error> for IntakeError {
    fn from(error: std::io::Error) -> Self {
        IntakeError::Io(error)
    }
}

impl Receiving {
    /// Starts a temporary file in `data_dir/tmp` for an upload of at most `limit` bytes.
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub async fn start(data_dir: &Path, limit: u64) -> Result<Self, IntakeError> {
        let dir = data_dir.join("tmp");
        private_dir(&dir).await?;
        let path = dir.join(format!("{}.part", uuid::Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
        Ok(Receiving {
            file,
            path,
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Appends `chunk`.
    ///
    /// # Errors
    ///
    /// [`IntakeError::TooLarge`] past the limit, or the file system's error.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), IntakeError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(IntakeError::TooLarge(self.limit));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// The upload is complete: flushed and synced to disk.
    ///
    /// # Errors
    ///
    /// The file system's error.
    pub async fn finish(mut self) -> Result<Received, IntakeError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let sha256 = hex(&self.hasher.finalize_reset());
        Ok(Received {
            path: std::mem::take(&mut self.path),
            sha256,
            size: self.size,
        })
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        // Abandoned (an error, a client gone): the partial file goes.
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A temporary file not written for this long belongs to an upload that will never finish:
/// one cut off by the end of a process (a crash, a kill, the OOM killer), since a client that
/// goes away takes its file with it ([`Receiving`]'s drop). An upload still arriving writes
/// its file with every chunk it receives.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);

/// Abandoned temporary files: removed from `data_dir/tmp` by [`UploadSweeper::sweep`], and
/// counted.
#[derive(Debug, Default)]
pub struct UploadSweeper {
    removed: AtomicUsize,
}

impl UploadSweeper {
    /// Removes the temporary files under `data_dir/tmp` not written for `idle`; returns how
    /// many went.
    ///
    /// # Errors
    ///
    /// The file system's, reading the directory.
    pub async fn sweep(&self, data_dir: &Path, idle: Duration) -> std::io::Result<usize> {
        let mut entries = match tokio::fs::read_dir(data_dir.join("tmp")).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error),
        };
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_none_or(|extension| extension != "part") {
                continue;
            }
            let written = entry
                .metadata()
                .await
                .and_then(|metadata| metadata.modified());
            let abandoned =
                written.is_ok_and(|written| written.elapsed().is_ok_and(|age| age >= idle));
            if abandoned && tokio::fs::remove_file(&path).await.is_ok() {
                removed += 1;
            }
        }
        self.removed.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    /// Abandoned files removed since this sweeper was made.
    pub fn removed(&self) -> usize {
        self.removed.load(Ordering::Relaxed)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Where audio with `sha256` lives, relative to the data directory.
pub fn stored_name(sha256: &str) -> String {
    format!("audio/{}/{sha256}", &sha256[..2])
}

/// Moves a checked upload to its content address (or drops it if that content is stored
/// already) and syncs the directory, so the rename survives a crash. Returns the stored
/// name.
///
/// # Errors
///
/// The file system's error.
pub async fn keep(data_dir: &Path, received: Received) -> Result<String, IntakeError> {
    let name = stored_name(&received.sha256);
    let target = data_dir.join(&name);
    let dir = target
        .parent()
        .expect("a stored name has a directory")
        .to_path_buf();
    private_dir(&dir).await?;
    if tokio::fs::try_exists(&target).await? {
        tokio::fs::remove_file(&received.path).await?;
    } else {
        tokio::fs::rename(&received.path, &target).await?;
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
    }
    Ok(name)
}

/// Creates `dir` and any parent missing, each for the server's user alone: audio and
/// transcripts are private. A directory already there keeps its mode; the data directory's
/// own is taken to `0700` at start ([`private_data_dir`]), which closes everything in it.
///
/// # Errors
///
/// The file system's error.
pub async fn private_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
}

/// Creates the data directory for the server's user alone, or takes the one already there
/// to that mode (an older release made it `0755`).
///
/// # Errors
///
/// The file system's error.
pub async fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    private_dir(dir).await?;
    tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await
}

/// Serialises, per audio hash, storing a file with its session against deleting the last
/// session that uses it: otherwise a delete could remove the file an upload of the same
/// audio has just found in place, between that upload finding it and storing its session.
#[derive(Debug)]
pub struct AudioLocks {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for AudioLocks {
    fn default() -> Self {
        AudioLocks {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl AudioLocks {
    /// Holds the lock of the audio with `sha256` (hex) until the guard drops.
    pub async fn lock(&self, sha256: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = u8::from_str_radix(sha256.get(..2).unwrap_or("00"), 16).unwrap_or(0);
        self.stripes[usize::from(stripe) % self.stripes.len()]
            .lock()
            .await
    }
}

/// Drops a received upload that failed its checks.
pub async fn discard(received: Received) {
    let _ = tokio::fs::remove_file(&received.path).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_hashed_limited_and_stored_once() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut upload = Receiving::start(dir.path(), 1024).await.unwrap();
        upload.write(b"hello ").await.unwrap();
        upload.write(b"world").await.unwrap();
        let received = upload.finish().await.unwrap();
        assert_eq!(
            received.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(received.size, 11);
        let name = keep(dir.path(), received).await.unwrap();
        assert_eq!(
            tokio::fs::read(dir.path().join(&name)).await.unwrap(),
            b"hello world"
        );

        let mut again = Receiving::start(dir.path(), 1024).await.unwrap();
        again.write(b"hello world").await.unwrap();
        let again = again.finish().await.unwrap();
        let temp = again.path.clone();
        assert_eq!(keep(dir.path(), again).await.unwrap(), name);
        assert!(!temp.exists(), "the duplicate is not kept");

        let mut big = Receiving::start(dir.path(), 4).await.unwrap();
        assert!(matches!(
            big.write(b"12345").await,
            Err(IntakeError::TooLarge(4))
        ));
        drop(big);
        let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "abandoned uploads leave nothing");
    }

    #[tokio::test]
    async fn partial_uploads_left_by_a_dead_process_are_swept_and_live_ones_kept() {
        let dir = tempfile::TempDir::new().unwrap();
        let sweeper = UploadSweeper::default();
        assert_eq!(sweeper.sweep(dir.path(), ABANDONED_AFTER).await.unwrap(), 0);
        // A process killed while receiving leaves its file; another upload is arriving.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let dead = tmp.join("dead.part");
        std::fs::write(&dead, vec![0; 4096]).unwrap();
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&dead)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        let mut live = Receiving::start(dir.path(), 1024).await.unwrap();
        live.write(b"arriving").await.unwrap();
        let other = tmp.join("notes.txt");
        std::fs::write(&other, b"not an upload").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();

        assert_eq!(sweeper.sweep(dir.path(), ABANDONED_AFTER).await.unwrap(), 1);
        assert!(!dead.exists());
        assert!(other.exists(), "only uploads' files are swept");
        live.write(b" still").await.unwrap();
        assert_eq!(live.finish().await.unwrap().size, 14);
        assert_eq!(sweeper.removed(), 1);
    }
}
