//! The Whisper engine behind the API: OpenAI's model names, the language and task a client
//! asks for (kept with the session, part of the reuse key), translations, the errors OpenAI
//! gives, and a server without its model that starts degraded and says how to fix it.

use reqwest::multipart::{Form, Part};

use crate::helpers::{OTHER_USER, TestApp, USER, error_of, spawn_with, words_in};
use crate::speech::{GERMAN, models_dir, normalized, recording, spoken, wer};
use pocwhisp_server::config::EngineKind;

const SPEECH: &str = "sense_and_sensibility_01_austen_64kb-0880";

async fn whisper_app() -> TestApp {
    spawn_with(|config| {
        config.engine.kind = EngineKind::Whisper;
        config.models.dir = Some(models_dir());
    })
    .await
}

fn form(audio: Vec<u8>, fields: &[(&str, &str)]) -> Form {
    let mut form = Form::new().part("file", Part::bytes(audio).file_name("speech.wav"));
    for (name, value) in fields {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    form
}

async fn post(app: &TestApp, path: &str, form: Form) -> reqwest::Response {
    app.request(reqwest::Method::POST, path)
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openai_clients_get_whisper_under_the_name_they_send() {
    let app = whisper_app().await;
    let models: serde_json::Value = app
        .get("/v1/models")
        .bearer_auth(USER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["base", "whisper-1"]);
    let audio = std::fs::read(recording(SPEECH)).unwrap();
    let response = post(
        &app,
        "/v1/audio/transcriptions",
        form(
            audio,
            &[("model", "whisper-1"), ("response_format", "verbose_json")],
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["text"], "He was not an ill-disposed young man.");
    // The decoder's own scores, stored with the segment.
    let segment = &body["segments"][0];
    let (logprob, no_speech) = (
        segment["avg_logprob"].as_f64().unwrap(),
        segment["no_speech_prob"].as_f64().unwrap(),
    );
    assert!(
        (-1.0..0.0).contains(&logprob) && (0.0..0.5).contains(&no_speech),
        "{segment}"
    );
    assert_ne!(
        no_speech, 0.0,
        "whisper.cpp's own probability, not the 0 given for engines without one: {segment}"
    );
    assert_eq!(
        (&body["task"], &body["language"]),
        (&"transcribe".into(), &"english".into())
    );
}

#[tokio::test]
async fn a_language_the_model_lacks_is_refused_naming_the_ones_it_has() {
    let app = whisper_app().await;
    let audio = std::fs::read(recording(SPEECH)).unwrap();
    let response = post(
        &app,
        "/v1/audio/transcriptions",
        form(audio, &[("model", "whisper-1"), ("language", "xx")]),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(
        (&error["type"], &error["param"]),
        (&"invalid_request_error".into(), &"language".into())
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("en, zh, de") && message.contains("`xx`"),
        "{message}"
    );
}

#[tokio::test]
async fn speech_is_translated_on_both_doors_and_the_task_is_kept() {
    let app = whisper_app().await;
    let dir = tempfile::tempdir().unwrap();
    let german = std::fs::read(spoken(dir.path(), "de", GERMAN)).unwrap();
    let response = post(
        &app,
        "/v1/audio/translations",
        form(
            german.clone(),
            &[("model", "whisper-1"), ("response_format", "verbose_json")],
        ),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (&body["task"], &body["language"]),
        (&"translate".into(), &"english".into())
    );
    let translated = normalized(body["text"].as_str().unwrap());
    assert!(
        wer(&normalized(GERMAN), &translated) > 0.8,
        "German words came back: {translated:?}"
    );
    // The native door: the same audio and task reuse the transcript, kept with its session.
    let response = app
        .upload(USER, german.clone(), "audio/wav", "?task=translate")
        .await;
    assert_eq!(response.status(), 200);
    let session: serde_json::Value = response.json().await.unwrap();
    assert_eq!(session["metadata"]["task"], "translate");
    assert_eq!(normalized(&words_in(&session).join(" ")), translated);
    // Asked to transcribe, the same audio is decoded again, in German.
    let session = app.transcribe(OTHER_USER, german).await;
    assert_eq!(session["metadata"]["task"], "transcribe");
    assert_eq!(session["metadata"]["language"], "de");
    assert!(
        wer(
            &normalized(GERMAN),
            &normalized(&words_in(&session).join(" "))
        ) <= 0.5
    );
}

/// A server whose models directory is `dir`, and what its `/api/v1/ready` says.
async fn ready_with_models_in(dir: &std::path::Path) -> (TestApp, serde_json::Value) {
    let dir = dir.to_path_buf();
    let app = spawn_with(|config| {
        config.engine.kind = EngineKind::Whisper;
        config.models.dir = Some(dir);
    })
    .await;
    let ready = app
        .get("/api/v1/ready")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (app, ready)
}

#[tokio::test]
async fn without_its_model_the_server_is_degraded_and_names_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let (app, ready) = ready_with_models_in(empty.path()).await;
    assert_eq!(ready["status"], "degraded");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("pocwhisp-server models install base"),
        "{ready}"
    );
    let audio = std::fs::read(recording(SPEECH)).unwrap();
    let (status, body) = error_of(app.upload(USER, audio, "audio/wav", "").await).await;
    assert_eq!(status, 503);
    assert!(
        body["message"].as_str().unwrap().contains("not installed"),
        "{body}"
    );
    // A tampered file is no better than none.
    let spec = pocwhisp_server::models::spec("base").unwrap();
    std::fs::write(
        pocwhisp_server::models::path(empty.path(), spec),
        vec![0u8; 1024],
    )
    .unwrap();
    let (_, ready) = ready_with_models_in(empty.path()).await;
    assert_eq!(ready["status"], "degraded");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("partial or altered"),
        "{ready}"
    );
}
