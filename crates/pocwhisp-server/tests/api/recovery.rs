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
