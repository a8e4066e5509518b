//! Crash recovery with the real binary: `kill -9` while jobs run, start again on the same
//! data directory, and every accepted upload is transcribed.

use std::time::Duration;

use tempfile::TempDir;

use crate::helpers::{JsonReply, USER, start_binary};
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
