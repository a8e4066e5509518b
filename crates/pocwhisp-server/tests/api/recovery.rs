//! Crash recovery with the real binary: `kill -9` while jobs run, start again on the same
//! data directory, and every accepted upload is transcribed.

use std::time::Duration;

use tempfile::TempDir;

use crate::helpers::{ADMIN, JsonReply, USER, start_binary};
use crate::speech::joined_recordings;

#[tokio::test]
async fn uploads_accepted_before_a_kill_9_are_transcribed_after_the_restart() {
    let data = TempDir::new().unwrap();
    // A short lease, so that the restarted server takes the dead one's jobs over soon.
    let env = [("POCWHISP_JOBS__LEASE", "2s")];
    let (mut first, address) = start_binary(data.path(), &env).await;
    let client = reqwest::Client::new();
    // Three long files: more jobs than the two worker slots, so some wait in the queue.
    let scratch = TempDir::new().unwrap();
    let mut accepted = Vec::new();
    for n in 0..3 {
        let joined = joined_recordings(scratch.path(), n);
        let response = client
            .post(format!("{address}/api/v1/transcribe?mode=async"))
            .bearer_auth(USER)
            .header("content-type", "audio/wav")
            .body(std::fs::read(&joined).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        accepted.push(body["session_id"].as_str().unwrap().to_owned());
    }
    // Kill it while a job is running.
    let status_of = |address: String, id: String| {
        let client = client.clone();
        async move {
            let session: serde_json::Value = client
                .get(format!("{address}/api/v1/transcribe/{id}"))
                .bearer_auth(USER)
                .json_reply()
                .await;
            session["status"].as_str().unwrap().to_owned()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status_of(address.clone(), accepted[0].clone()).await != "processing" {
        assert!(
            std::time::Instant::now() < deadline,
            "the first job never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();

    let (_second, address) = start_binary(data.path(), &env).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    for id in &accepted {
        loop {
            let status = status_of(address.clone(), id.clone()).await;
            if status == "completed" {
                break;
            }
            assert_ne!(status, "failed", "{id}");
            assert!(
                std::time::Instant::now() < deadline,
                "{id} is still {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let list: serde_json::Value = client
        .get(format!("{address}/api/v1/transcribe"))
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(list["pagination"]["total"], 3, "{list}");
}

/// A partial upload left by a process killed while receiving it (kill -9, the OOM killer)
/// is removed once it has lain unwritten for ten minutes, and health counts it.
#[tokio::test]
async fn partial_uploads_abandoned_by_a_dead_process_are_swept() {
    let data = TempDir::new().unwrap();
    let tmp = data.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let abandoned = tmp.join("abandoned.part");
    std::fs::write(&abandoned, vec![0; 1 << 20]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&abandoned)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let recent = tmp.join("recent.part");
    std::fs::write(&recent, b"another instance's upload, arriving").unwrap();
    let (_server, address) = start_binary(data.path(), &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while abandoned.exists() {
        assert!(tokio::time::Instant::now() < deadline, "not swept at start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recent.exists(), "a file still being written is kept");
    let health: serde_json::Value = reqwest::Client::new()
        .get(format!("{address}/api/v1/health"))
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    let disk = health["components"]["disk"]["detail"].as_str().unwrap();
    assert!(
        disk.ends_with("1 abandoned partial uploads removed"),
        "{disk}"
    );
}

/// A file system of `mib` MiB mounted at `dir` for the test (tmpfs; needs root, which
/// `scripts/test` and CI have), unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: std::path::PathBuf, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(SmallDisk { dir })
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![1u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[1]);
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// A server whose data directory is a 24 MiB disk of its own with a disk reserve of
/// `reserve` bytes, and one session transcribed there: the disk (under a directory to drop
/// last), the server, the audio and the session's id.
async fn one_session_on_a_small_disk(
    reserve: u64,
) -> (TempDir, SmallDisk, crate::helpers::TestApp, Vec<u8>, String) {
    let outer = TempDir::new().unwrap();
    let Some(disk) = SmallDisk::mount(outer.path().join("disk"), 24) else {
        panic!("mounting a tmpfs needs root: run the suite as scripts/test does");
    };
    let data_dir = disk.dir.clone();
    let app = crate::helpers::spawn_with(|config| {
        config.server.data_dir = data_dir;
        config.server.disk_reserve = pocwhisp_server::config::ByteSize(reserve);
    })
    .await;
    let audio = std::fs::read(crate::speech::recording(
        "sense_and_sensibility_01_austen_64kb-0870",
    ))
    .unwrap();
    let session = app.transcribe(USER, audio.clone()).await;
    assert_eq!(session["status"], "completed", "{session}");
    let id = session["session_id"].as_str().unwrap().to_owned();
    (outer, disk, app, audio, id)
}

#[tokio::test]
async fn a_full_disk_can_be_emptied_through_the_api_and_uploads_resume_when_there_is_room() {
    let (_outer, disk, app, audio, id) = one_session_on_a_small_disk(4 << 20).await;

    let filler = disk.fill();
    // The reserve is still in place: the upload is read, and refused when the disk is.
    let refused = app
        .upload(USER, audio.clone(), "audio/wav", "?mode=async")
        .await;
    assert_eq!(refused.status(), 507, "no upload is stored on a full disk");
    assert_eq!(
        std::fs::read_dir(disk.dir.join("tmp")).unwrap().count(),
        0,
        "nothing half-written left behind"
    );

    // Deleting needs a database write: the reserve is given up for it.
    let deleted = app
        .request(reqwest::Method::DELETE, &format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200, "{}", deleted.text().await.unwrap());
    let gone = app
        .get(&format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // While the reserve is in use, uploads are refused before their body is read, and
    // health says why.
    let refused = app
        .upload(USER, audio.clone(), "audio/wav", "?mode=async")
        .await;
    let (status, body) = crate::helpers::error_of(refused).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (507, Some("insufficient_storage")),
        "{body}"
    );
    let health: serde_json::Value = app.admin_get("/api/v1/health").await.json().await.unwrap();
    assert_eq!(health["components"]["disk"]["status"], "down", "{health}");

    // Room again: the reserve is made again, and uploads are taken.
    std::fs::remove_file(filler).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let response = app
            .upload(USER, audio.clone(), "audio/wav", "?mode=async")
            .await;
        if response.status() == 202 {
            break;
        }
        assert_eq!(response.status(), 507);
        assert!(
            std::time::Instant::now() < deadline,
            "uploads never resumed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(disk.dir.join("disk-reserve").exists());
}

#[tokio::test]
async fn without_a_disk_reserve_a_delete_on_a_full_disk_is_refused_with_507_not_503() {
    let (_outer, disk, app, _, id) = one_session_on_a_small_disk(0).await;
    disk.fill();
    let response = app
        .request(reqwest::Method::DELETE, &format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::error_of(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (507, Some("insufficient_storage")),
        "{body}"
    );
}
