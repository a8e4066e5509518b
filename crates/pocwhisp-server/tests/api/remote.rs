//! The remote engine against two more instances of this server as its OpenAI-compatible
//! remotes, over loopback with real speech: the same words as local recognition, stereo as
//! two speakers, work moving off a server that stopped, 503 at once with every server down,
//! and recovery when one comes back.

use std::time::{Duration, Instant};

use pocwhisp_server::config::{EngineKind, RemoteEndpoint, Secret};

use crate::helpers::{ADMIN, JsonReply, TestApp, USER, error_of, spawn_app, spawn_with, words_in};
use crate::speech::{joined_recordings, recording, references, sox};

fn wav(id: &str) -> Vec<u8> {
    std::fs::read(recording(id)).unwrap()
}

/// A server whose engine is the remotes at `urls`, with short breaker and retry periods.
async fn front(urls: &[&str]) -> TestApp {
    let endpoints: Vec<RemoteEndpoint> = urls
        .iter()
        .map(|url| RemoteEndpoint {
            url: (*url).to_owned(),
            api_key: Some(Secret::new(USER)),
        })
        .collect();
    spawn_with(move |config| {
        config.engine.kind = EngineKind::Openai;
        let remote = &mut config.engine.openai;
        remote.endpoints = endpoints;
        remote.model = "sphinx".to_owned();
        remote.breaker.open_duration = Duration::from_secs(1);
        remote.breaker.max_open_duration = Duration::from_secs(2);
        remote.retry.first = Duration::from_millis(200);
        remote.retry.max = Duration::from_secs(1);
        config.jobs.uploads_per_hour = 100_000;
    })
    .await
}

/// The engine's health component of `app`.
async fn engine_health(app: &TestApp) -> serde_json::Value {
    let health: serde_json::Value = app
        .get("/api/v1/health")
        .bearer_auth(ADMIN)
        .json_reply()
        .await;
    health["components"]["engine"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remotes_transcribe_and_fail_over_and_come_back() {
    let one = spawn_app().await;
    let two = spawn_app().await;
    let (one_address, two_address) = (one.address, two.address);
    let app = front(&[&one.base, &two.base]).await;
    let models: serde_json::Value = app.get("/v1/models").bearer_auth(USER).json_reply().await;
    assert_eq!(models["data"][0]["id"], "sphinx");

    // The same words as the remote's own recognition, and stereo as two speakers.
    let (first, second) = (&references()[0].0, &references()[1].0);
    let local = words_in(&one.transcribe(USER, wav(first)).await);
    let remote = app.transcribe(USER, wav(first)).await;
    assert_eq!(words_in(&remote), local);
    assert_eq!(remote["metadata"]["engine"], "openai");
    let dir = tempfile::TempDir::new().unwrap();
    let stereo = dir.path().join("stereo.wav");
    sox(&[&"-M", &recording(first), &recording(second), &stereo]);
    let both = app.transcribe(USER, std::fs::read(&stereo).unwrap()).await;
    let speakers: Vec<&str> = both["transcript"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| segment["speaker"].as_str().unwrap())
        .collect();
    assert!(
        speakers.contains(&"left") && speakers.contains(&"right"),
        "{speakers:?}"
    );

    // One remote stops: work moves to the other.
    drop(one);
    for n in 0..3 {
        let audio = std::fs::read(joined_recordings(dir.path(), n)).unwrap();
        let session = app.transcribe(USER, audio).await;
        assert_eq!(session["status"], "completed", "{session}");
    }
    let engine = engine_health(&app).await;
    assert_eq!(engine["status"], "degraded", "{engine}");

    // Both stop: once the breakers know, uploads are refused at once.
    drop(two);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = Vec::new();
    let refused = loop {
        let audio = std::fs::read(joined_recordings(dir.path(), 3)).unwrap();
        let started = Instant::now();
        let response = app.upload(USER, audio, "audio/wav", "?mode=async").await;
        if response.status() == 503 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "refused at once"
            );
            break response;
        }
        assert_eq!(response.status(), 202);
        pending.push(response.json::<serde_json::Value>().await.unwrap()["session_id"].clone());
        assert!(Instant::now() < deadline, "uploads were never refused");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(refused.headers().contains_key("retry-after"));
    let (_, error) = error_of(refused).await;
    assert!(
        error["message"].as_str().unwrap().contains("failing"),
        "{error}"
    );
    let engine = engine_health(&app).await;
    assert_eq!(engine["status"], "down", "{engine}");
    assert!(
        engine["detail"]
            .as_str()
            .unwrap()
            .contains(&two_address.to_string()),
        "{engine}"
    );

    // One comes back on its address: traffic returns to it by itself, and the uploads
    // accepted while the breakers were learning complete.
    let _back = spawn_with(move |config| config.server.listen = two_address).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.upload(USER, wav(second), "audio/wav", "").await;
        if response.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in pending {
        let session = app.finished(USER, id.as_str().unwrap()).await;
        assert_eq!(session["status"], "completed", "{session}");
    }
    // The one still away is the one health names.
    let engine = engine_health(&app).await;
    let detail = engine["detail"].as_str().unwrap();
    assert_eq!(engine["status"], "degraded", "{engine}");
    assert!(detail.contains(&one_address.to_string()), "{detail}");
    assert!(!detail.contains(&two_address.to_string()), "{detail}");
}
