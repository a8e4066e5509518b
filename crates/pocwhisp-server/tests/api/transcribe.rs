//! `/api/v1/transcribe` with Debian's recorded speech: accuracy against the CLI, stereo,
//! damaged uploads (other formats are in `formats.rs`), modes, privacy between users, the cache, deletion,
//! quotas, callbacks and running without an engine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use pocwhisp_server::config::{EngineKind, Secret};

use crate::helpers::{
    ADMIN, JsonReply, OTHER_USER, USER, error_of, spawn_app, spawn_with, words_in, words_of_speaker,
};
use crate::speech::{cli_words, errors, joined_recordings, recording, references, sox};

const FIRST: &str = "sense_and_sensibility_01_austen_64kb-0870";
const SECOND: &str = "sense_and_sensibility_01_austen_64kb-0890";

fn wav(id: &str) -> Vec<u8> {
    std::fs::read(recording(id)).unwrap()
}

#[tokio::test]
async fn speech_through_the_api_is_heard_as_the_cli_hears_it() {
    let app = spawn_app().await;
    let (mut ours, mut cli, mut words) = (0, 0, 0);
    for (id, reference) in references() {
        let session = app.transcribe(USER, wav(&id)).await;
        assert_eq!(session["status"], "completed", "{session}");
        let heard = words_in(&session);
        let expected = cli_words(&recording(&id));
        assert_eq!(heard, expected, "{id}");
        ours += errors(&reference, &heard);
        cli += errors(&reference, &expected);
        words += reference.len();
        let metadata = &session["metadata"];
        assert_eq!(metadata["format"], "wav");
        assert_eq!(metadata["sample_rate"], 16_000);
        assert_eq!(metadata["engine"], "sphinx");
        assert!(session["summary"]["text"].is_string());
    }
    eprintln!(
        "word error rate through the API {:.3}, CLI {:.3}",
        ours as f64 / words as f64,
        cli as f64 / words as f64
    );
    assert!(ours <= cli, "{ours} errors against the CLI's {cli}");
}

#[tokio::test]
async fn a_stereo_file_gives_both_speakers_in_time_order() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    let stereo = dir.path().join("stereo.wav");
    sox(&[&"-M", &recording(FIRST), &recording(SECOND), &stereo]);
    let left = words_in(&app.transcribe(USER, wav(FIRST)).await);
    let right = words_in(&app.transcribe(USER, wav(SECOND)).await);
    let session = app.transcribe(USER, std::fs::read(&stereo).unwrap()).await;
    assert_eq!(session["metadata"]["channels"], 2);
    assert_eq!(words_of_speaker(&session, "left"), left);
    assert_eq!(words_of_speaker(&session, "right"), right);
    let starts: Vec<f64> = session["transcript"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| segment["start_time"].as_f64().unwrap())
        .collect();
    assert!(starts.is_sorted(), "{starts:?}");
}

/// A WAV header over `data` with the given fields, each of which the corpus lies in.
struct WavHeader {
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    fmt_size: u32,
    data_size: Option<u32>,
    riff_size: Option<u32>,
}

impl Default for WavHeader {
    fn default() -> Self {
        WavHeader {
            format: 1,
            channels: 1,
            rate: 16_000,
            bits: 16,
            fmt_size: 16,
            data_size: None,
            riff_size: None,
        }
    }
}

impl WavHeader {
    fn over(&self, data: &[u8]) -> Vec<u8> {
        let block = self.channels.wrapping_mul(self.bits / 8);
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&self.format.to_le_bytes());
        fmt.extend_from_slice(&self.channels.to_le_bytes());
        fmt.extend_from_slice(&self.rate.to_le_bytes());
        fmt.extend_from_slice(&self.rate.wrapping_mul(u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&self.bits.to_le_bytes());
        fmt.resize(self.fmt_size as usize, 0);
        let mut body = b"WAVEfmt ".to_vec();
        body.extend_from_slice(&self.fmt_size.to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(b"data");
        let data_size = self.data_size.unwrap_or(data.len() as u32);
        body.extend_from_slice(&data_size.to_le_bytes());
        body.extend_from_slice(data);
        let mut file = b"RIFF".to_vec();
        let riff_size = self.riff_size.unwrap_or(body.len() as u32);
        file.extend_from_slice(&riff_size.to_le_bytes());
        file.extend_from_slice(&body);
        file
    }
}

#[tokio::test]
async fn damaged_and_unsuitable_uploads_get_a_4xx_that_says_why() {
    let app = spawn_with(|config| {
        config.audio.max_upload.0 = 2 << 20;
    })
    .await;
    let speech = wav(SECOND);
    let samples = &speech[44..];
    let mut noise = Vec::with_capacity(50_000);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..50_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        noise.push(state as u8);
    }
    let header = WavHeader::default;
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "random bytes",
            noise.clone(),
            "audio/wav",
            415,
            "not a recognised audio format",
        ),
        (
            "RIFF then noise",
            [b"RIFF".as_slice(), &noise].concat(),
            "audio/wav",
            415,
            "not a recognised",
        ),
        (
            "a truncated header",
            speech[..30].to_vec(),
            "audio/wav",
            400,
            "damaged",
        ),
        (
            "a header and no samples",
            speech[..44].to_vec(),
            "audio/wav",
            400,
            "no audio samples",
        ),
        (
            "an unknown format code",
            WavHeader {
                format: 0x1234,
                ..header()
            }
            .over(samples),
            "audio/wav",
            415,
            "encoding",
        ),
        (
            "a data chunk longer than the file",
            WavHeader {
                data_size: Some(0x7fff_fff0),
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "damaged",
        ),
        (
            "a RIFF size shorter than its chunks",
            WavHeader {
                riff_size: Some(5),
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "damaged",
        ),
        (
            "a fmt chunk longer than it is",
            WavHeader {
                fmt_size: 1000,
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "damaged",
        ),
        (
            "a fmt chunk cut short",
            WavHeader {
                fmt_size: 4,
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "damaged",
        ),
        (
            "a sample rate of zero",
            WavHeader {
                rate: 0,
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "contradict",
        ),
        (
            "a sample rate of 1 Hz",
            WavHeader {
                rate: 1,
                ..header()
            }
            .over(samples),
            "audio/wav",
            422,
            "sample rate",
        ),
        (
            "a sample rate of 4 GHz",
            WavHeader {
                rate: 4_000_000_000,
                ..header()
            }
            .over(samples),
            "audio/wav",
            422,
            "sample rate",
        ),
        (
            "zero channels",
            WavHeader {
                channels: 0,
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "channel",
        ),
        (
            "nine channels",
            WavHeader {
                channels: 9,
                bits: 16,
                ..header()
            }
            .over(&samples[..samples.len() / 18 * 18]),
            "audio/wav",
            422,
            "channels",
        ),
        (
            "7-bit samples",
            WavHeader {
                bits: 7,
                ..header()
            }
            .over(samples),
            "audio/wav",
            400,
            "bits per sample",
        ),
        (
            "half a second",
            header().over(&samples[..16_000]),
            "audio/wav",
            422,
            "shortest",
        ),
        ("an empty body", Vec::new(), "audio/wav", 400, "empty"),
        (
            "a text file sent as audio",
            b"this is not audio\n".repeat(200),
            "audio/mpeg",
            415,
            "not a recognised",
        ),
        (
            "audio sent as text",
            speech.clone(),
            "text/plain",
            415,
            "content type",
        ),
        (
            "more than audio.max_upload",
            vec![0; 3 << 20],
            "audio/wav",
            413,
            "larger than",
        ),
    ];
    for (name, body, content_type, status, says) in cases {
        let response = app.upload(USER, body, content_type, "").await;
        let (got, error) = error_of(response).await;
        assert_eq!(got, status, "{name}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
    }
    // Multipart without the audio, and with it under another name.
    for form in [
        reqwest::multipart::Form::new().text("note", "no audio here"),
        reqwest::multipart::Form::new().part(
            "recording",
            reqwest::multipart::Part::bytes(speech.clone()).file_name("a.wav"),
        ),
    ] {
        let response = app
            .request(reqwest::Method::POST, "/api/v1/transcribe")
            .bearer_auth(USER)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (status, error) = error_of(response).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (400, Some("missing_file"))
        );
    }
    // Nothing was stored, and the server is as healthy as before.
    let list: serde_json::Value = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(list["pagination"]["total"], 0, "{list}");
    let health = app.get("/api/v1/health").send().await.unwrap();
    assert_eq!(health.status(), 200);
    let session = app.transcribe(USER, speech).await;
    assert_eq!(session["status"], "completed");
    let leftovers: Vec<_> = std::fs::read_dir(app.data_dir.path().join("tmp"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "refused uploads leave no temporary file: {leftovers:?}"
    );
}

#[tokio::test]
async fn multipart_uploads_keep_the_file_name() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(wav(FIRST))
            .file_name("meeting.wav")
            .mime_str("audio/wav")
            .unwrap(),
    );
    let response = app
        .request(reqwest::Method::POST, "/api/v1/transcribe")
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session: serde_json::Value = response.json().await.unwrap();
    assert_eq!(session["original_name"], "meeting.wav");
    assert_eq!(session["status"], "completed");
}

/// The events of a `text/event-stream` body: (event name, data as JSON).
fn server_events(body: &str) -> Vec<(String, serde_json::Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name).map(str::trim_start))
            };
            Some((
                field("event:")?.to_owned(),
                serde_json::from_str(field("data:")?).unwrap(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_upload_sends_its_words_as_decoded_then_the_session() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    let joined = std::fs::read(joined_recordings(dir.path(), 0)).unwrap();
    let response = app.upload(USER, joined, "audio/wav", "?mode=stream").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = server_events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"accepted"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    assert!(
        names[1..names.len() - 1]
            .iter()
            .all(|name| *name == "words"),
        "{names:?}"
    );
    assert!(
        names.len() > 3,
        "several utterances, each as it is decoded: {names:?}"
    );
    let id = events[0].1["session_id"].as_str().unwrap();
    let session = &events.last().unwrap().1;
    assert_eq!(session["session_id"], id);
    // The words streamed are the transcript's, in order.
    let streamed: Vec<String> = events[1..events.len() - 1]
        .iter()
        .flat_map(|(_, data)| data["text"].as_str().unwrap().split_whitespace())
        .map(str::to_owned)
        .collect();
    assert_eq!(streamed, words_in(session));
    assert_eq!(
        &app.finished(USER, id).await["transcript"],
        &session["transcript"]
    );
}

#[tokio::test]
async fn a_finished_transcript_downloads_as_text_srt_and_webvtt_for_its_owner_only() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    let joined = std::fs::read(joined_recordings(dir.path(), 1)).unwrap();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(joined).file_name("board \"meeting\" 1.wav"),
    );
    let accepted: serde_json::Value = app
        .request(reqwest::Method::POST, "/api/v1/transcribe?mode=async")
        .bearer_auth(USER)
        .multipart(form)
        .json_reply()
        .await;
    let id = accepted["session_id"].as_str().unwrap();
    let download = |token: &'static str, format: &str| {
        app.get(&format!(
            "/api/v1/transcribe/{id}/transcript?format={format}"
        ))
        .bearer_auth(token)
        .send()
    };
    // Twenty-five seconds of speech are not transcribed within the moment after the upload.
    let early = download(USER, "srt").await.unwrap();
    assert_eq!(early.status(), 409);
    let session = app.finished(USER, id).await;
    let segments = session["transcript"]["segments"].as_array().unwrap();
    let srt = download(USER, "srt").await.unwrap();
    assert_eq!(srt.status(), 200);
    assert_eq!(
        srt.headers()["content-disposition"],
        "attachment; filename=\"boardmeeting1.srt\""
    );
    let srt = srt.text().await.unwrap();
    let cues: Vec<&str> = srt.split("\n\n").filter(|cue| !cue.is_empty()).collect();
    assert_eq!(cues.len(), segments.len(), "{srt}");
    assert!(cues[0].starts_with("1\n00:00:"), "{srt}");
    let vtt = download(USER, "vtt").await.unwrap().text().await.unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:"), "{vtt}");
    let text = download(USER, "txt").await.unwrap().text().await.unwrap();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        words_in(&session)
    );
    assert_eq!(download(OTHER_USER, "txt").await.unwrap().status(), 404);
    assert_eq!(download(USER, "docx").await.unwrap().status(), 400);
}

#[tokio::test]
async fn async_uploads_answer_202_with_a_location_and_finish() {
    let app = spawn_app().await;
    let response = app
        .upload(USER, wav(FIRST), "audio/wav", "?mode=async")
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: serde_json::Value = response.json().await.unwrap();
    let id = accepted["session_id"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/transcribe/{id}"));
    assert_eq!(accepted["location"], location);
    assert_eq!(accepted["status"], "queued");
    let session = app.finished(USER, id).await;
    assert_eq!(session["status"], "completed");
    assert!(session["processed_at"].is_string());

    for query in [
        "?mode=later",
        "?mode=",
        "?callback=http://x",
        "?mode=sync&mode=async",
    ] {
        let (status, error) =
            error_of(app.upload(USER, wav(FIRST), "audio/wav", query).await).await;
        assert_eq!(status, 400, "{query}: {error}");
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_lose_its_upload() {
    let app = spawn_app().await;
    // Five recordings back to back: long enough that the transcription outlasts the client.
    let dir = tempfile::TempDir::new().unwrap();
    let joined = joined_recordings(dir.path(), 0);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/api/v1/transcribe", app.base))
        .bearer_auth(USER)
        .header("content-type", "audio/wav")
        .body(std::fs::read(&joined).unwrap())
        .send()
        .await;
    assert!(gave_up.is_err_and(|error| error.is_timeout()));
    let list: serde_json::Value = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(
        list["pagination"]["total"], 1,
        "the upload was stored: {list}"
    );
    let id = list["sessions"][0]["session_id"].as_str().unwrap();
    let session = app.finished(USER, id).await;
    assert_eq!(session["status"], "completed");
    assert!(words_in(&session).len() > 50);
}

#[tokio::test]
async fn users_see_only_their_own_sessions_and_admins_see_all() {
    let app = spawn_app().await;
    let mine = app.transcribe(USER, wav(FIRST)).await;
    let id = mine["session_id"].as_str().unwrap();
    let path = format!("/api/v1/transcribe/{id}");
    // The owner's read is cached; another user's read of the same URL must not be served it.
    for _ in 0..2 {
        let read = app.get(&path).bearer_auth(USER).send().await.unwrap();
        assert_eq!(read.status(), 200);
    }
    let theirs = app.get(&path).bearer_auth(OTHER_USER).send().await.unwrap();
    let (status, _) = error_of(theirs).await;
    assert_eq!(status, 404);
    let list = |token: &'static str| {
        let request = app.get("/api/v1/transcribe").bearer_auth(token);
        async move {
            let body: serde_json::Value = request.json_reply().await;
            body["pagination"]["total"].as_u64().unwrap()
        }
    };
    assert_eq!(list(OTHER_USER).await, 0);
    assert_eq!(list(USER).await, 1);
    assert_eq!(list(ADMIN).await, 1);
    let deleted = app
        .request(reqwest::Method::DELETE, &path)
        .bearer_auth(OTHER_USER)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(deleted).await.0, 404);
    let admin = app.get(&path).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(admin.status(), 200);
    // Without a token, nothing.
    let anonymous = app.get(&path).send().await.unwrap();
    assert_eq!(error_of(anonymous).await.0, 401);
    let forged = app.get(&path).bearer_auth("made-up").send().await.unwrap();
    assert_eq!(error_of(forged).await.0, 401);
}

#[tokio::test]
async fn reads_are_cached_privately_with_etags_until_deleted() {
    let app = spawn_app().await;
    let session = app.transcribe(USER, wav(FIRST)).await;
    let path = format!(
        "/api/v1/transcribe/{}",
        session["session_id"].as_str().unwrap()
    );
    let first = app.get(&path).bearer_auth(USER).send().await.unwrap();
    assert_eq!(first.headers()["cache-control"], "private, max-age=300");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let second = app.get(&path).bearer_auth(USER).send().await.unwrap();
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(second.headers()["etag"].to_str().unwrap(), etag);
    let revalidated = app
        .get(&path)
        .bearer_auth(USER)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    let deleted = app
        .request(reqwest::Method::DELETE, &path)
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = app.get(&path).bearer_auth(USER).send().await.unwrap();
    assert_eq!(error_of(gone).await.0, 404, "the cached copy went with it");
}

/// Another spelling of a session's path (an escaped letter, a doubled slash) is the same
/// resource: it shares the cached copy, and nothing of it is served once it is deleted.
#[tokio::test]
async fn every_spelling_of_a_path_is_one_cache_entry_and_goes_with_the_delete() {
    let app = spawn_app().await;
    let session = app.transcribe(USER, wav(FIRST)).await;
    let id = session["session_id"].as_str().unwrap();
    let path = format!("/api/v1/transcribe/{id}");
    let spellings = [
        format!("/api/v1/transcribe/%{:02x}{}", id.as_bytes()[0], &id[1..]),
        format!("/api/v1//transcribe/{id}"),
        format!("/api/%76%31/transcribe/{id}"),
    ];
    let first = app.get(&path).bearer_auth(USER).send().await.unwrap();
    assert_eq!(first.status(), 200);
    for spelling in &spellings {
        let read = app.get(spelling).bearer_auth(USER).send().await.unwrap();
        assert_eq!(read.status(), 200, "{spelling}");
        assert_eq!(read.headers()["x-cache"], "HIT", "{spelling}");
    }
    let deleted = app
        .request(reqwest::Method::DELETE, &spellings[0])
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    for spelling in spellings.iter().chain([&path]) {
        let gone = app.get(spelling).bearer_auth(USER).send().await.unwrap();
        assert_eq!(error_of(gone).await.0, 404, "{spelling}");
    }
}

/// The same audio is stored once and its file goes with the last session; its transcript
/// is reused for the uploader's own sessions only, and a user is told only of their own: that
/// another user uploaded the same audio shows neither in a transcript's figures nor in what
/// a delete answers.
#[tokio::test]
async fn the_same_audio_is_stored_once_and_users_learn_only_of_their_own_sessions() {
    let app = spawn_app().await;
    let first = app.transcribe(USER, wav(FIRST)).await;
    let again = app.transcribe(USER, wav(FIRST)).await;
    let other = app.transcribe(OTHER_USER, wav(FIRST)).await;
    assert_eq!(first["metadata"]["sha256"], other["metadata"]["sha256"]);
    let processing_time =
        |session: &serde_json::Value| session["metadata"]["processing_time"].as_f64().unwrap();
    // A reused transcript takes a read of the store; a decode takes seconds.
    assert!(
        processing_time(&again) * 10.0 < processing_time(&first),
        "the user's own transcript is reused: {again}"
    );
    assert!(
        processing_time(&other) > processing_time(&again) * 10.0,
        "another user's audio is transcribed for them: {other}"
    );
    assert_eq!(words_in(&first), words_in(&other));
    let audio_files = || {
        let hash = first["metadata"]["sha256"].as_str().unwrap();
        let dir = app.data_dir.path().join("audio").join(&hash[..2]);
        std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).count())
    };
    assert_eq!(audio_files(), 1);
    let delete = |token: &'static str, session: &serde_json::Value| {
        let path = format!(
            "/api/v1/transcribe/{}",
            session["session_id"].as_str().unwrap()
        );
        let request = app
            .request(reqwest::Method::DELETE, &path)
            .bearer_auth(token);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        delete(USER, &first).await["audio_deleted"],
        false,
        "the user's other session has it"
    );
    assert_eq!(
        delete(USER, &again).await["audio_deleted"],
        true,
        "gone for this user, though another user's session keeps the file"
    );
    assert_eq!(audio_files(), 1);
    assert_eq!(delete(OTHER_USER, &other).await["audio_deleted"], true);
    assert_eq!(audio_files(), 0);
}

#[tokio::test]
async fn listings_page_filter_and_refuse_bad_values() {
    let app = spawn_app().await;
    for id in [FIRST, SECOND, FIRST] {
        app.transcribe(USER, wav(id)).await;
    }
    let page = |query: &str| {
        let request = app
            .get(&format!("/api/v1/transcribe{query}"))
            .bearer_auth(USER);
        async move { request.send().await.unwrap() }
    };
    let body: serde_json::Value = page("?limit=2").await.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(body["pagination"]["total"], 3);
    let body: serde_json::Value = page("?limit=2&offset=2").await.json().await.unwrap();
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);
    let body: serde_json::Value = page("?status=completed").await.json().await.unwrap();
    assert_eq!(body["pagination"]["total"], 3);
    let body: serde_json::Value = page("?status=failed").await.json().await.unwrap();
    assert_eq!(body["pagination"]["total"], 0);
    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?offset=-1",
        "?status=lost",
        "?colour=blue",
        "?limit=99999999999999999999",
    ] {
        let (status, error) = error_of(page(query).await).await;
        assert_eq!(status, 400, "{query}: {error}");
    }
    let (status, _) = error_of(
        app.get("/api/v1/transcribe/not-a-uuid")
            .bearer_auth(USER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn uploads_over_the_hourly_quota_get_429_for_that_caller_only() {
    let app = spawn_with(|config| config.jobs.uploads_per_hour = 2).await;
    for _ in 0..2 {
        let response = app
            .upload(USER, wav(FIRST), "audio/wav", "?mode=async")
            .await;
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["ratelimit-limit"], "2");
    }
    let refused = app
        .upload(USER, wav(FIRST), "audio/wav", "?mode=async")
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1700..=1800).contains(&retry_after), "{retry_after}");
    let (status, error) = error_of(refused).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (429, Some("rate_limited"))
    );
    let other = app
        .upload(OTHER_USER, wav(FIRST), "audio/wav", "?mode=async")
        .await;
    assert_eq!(other.status(), 202);
    // Reads are not uploads.
    let list = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
}

#[tokio::test]
async fn a_user_s_backlog_is_capped_with_429_and_other_users_go_first() {
    let app = spawn_with(|config| {
        config.jobs.max_unfinished_per_user = 2;
        config.request_pool.workers = 1;
    })
    .await;
    let session_of = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        body["session_id"].as_str().unwrap().to_owned()
    };
    // A long job holds the only worker while the rest are sent.
    let scratch = tempfile::TempDir::new().unwrap();
    let long = std::fs::read(joined_recordings(scratch.path(), 0)).unwrap();
    let first = session_of(app.upload(USER, long, "audio/wav", "?mode=async").await).await;
    let second = session_of(
        app.upload(USER, wav(FIRST), "audio/wav", "?mode=async")
            .await,
    )
    .await;
    let refused = app
        .upload(USER, wav(SECOND), "audio/wav", "?mode=async")
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let (status, error) = error_of(refused).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (429, Some("rate_limited")),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("at most 2"),
        "{error}"
    );
    // Another user is not held behind that backlog: their job is next, not the oldest.
    let other = session_of(
        app.upload(OTHER_USER, wav(SECOND), "audio/wav", "?mode=async")
            .await,
    )
    .await;
    let other = app.finished(OTHER_USER, &other).await;
    let second = app.finished(USER, &second).await;
    assert!(
        other["processed_at"].as_str() < second["processed_at"].as_str(),
        "{other} {second}"
    );
    app.finished(USER, &first).await;
    let again = app
        .upload(USER, wav(SECOND), "audio/wav", "?mode=async")
        .await;
    assert_eq!(again.status(), 202, "room again once they finished");
}

/// What a callback receiver saw: the signature header and the body of each POST.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that answers 503 to the first POST and 200 after.
async fn receiver() -> (std::net::SocketAddr, Received) {
    let received: Received = Arc::default();
    let seen = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let seen = Arc::clone(&seen);
            async move {
                let signature = headers
                    .get("x-pocwhisp-signature")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                seen.push((signature, body.to_vec()));
                if seen.len() == 1 {
                    http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

#[tokio::test]
async fn callbacks_are_signed_retried_and_recorded() {
    let (address, received) = receiver().await;
    let app = spawn_with(|config| {
        config.jobs.callback_hosts =
            vec![address.to_string(), format!("localhost:{}", address.port())];
        config.jobs.callback_secret = Some(Secret::new("callback-key"));
    })
    .await;
    let url = format!("http://{address}/hook");
    let query = format!("?callback_url={url}");
    let response = app.upload(USER, wav(FIRST), "audio/wav", &query).await;
    assert_eq!(response.status(), 200);
    let id = response.json::<serde_json::Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first delivery is refused (503) and retried after about a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (signature, body) = received.lock().unwrap()[1].clone();
    // `t=<unix seconds>,sha256=<hex>`, over `<t>.<body>`: a receiver refuses old times.
    let (sent, _) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(','))
        .unwrap_or_else(|| panic!("{signature}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(sent.parse::<u64>().unwrap()) < 60,
        "{signature}"
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"callback-key").unwrap();
    mac.update(format!("{sent}.").as_bytes());
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(signature, format!("t={sent},sha256={expected}"));
    let delivered: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered["session_id"], id.as_str());
    assert_eq!(delivered["status"], "completed");

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let session: serde_json::Value = app
            .get(&format!("/api/v1/transcribe/{id}"))
            .bearer_auth(USER)
            .json_reply()
            .await;
        let codes: Vec<_> = session["deliveries"]
            .as_array()
            .map(|deliveries| {
                deliveries
                    .iter()
                    .map(|d| d["status_code"].clone())
                    .collect()
            })
            .unwrap_or_default();
        if codes == [503, 200] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{session}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A listed name that resolves to this machine is looked up when the delivery is made,
    // and not called.
    let calls = received.lock().unwrap().len();
    let query = format!("?callback_url=http://localhost:{}/hook", address.port());
    let response = app.upload(USER, wav(FIRST), "audio/wav", &query).await;
    assert_eq!(response.status(), 200);
    let id = response.json::<serde_json::Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let error = loop {
        let session: serde_json::Value = app
            .get(&format!("/api/v1/transcribe/{id}"))
            .bearer_auth(USER)
            .json_reply()
            .await;
        if let Some(error) = session["deliveries"]
            .as_array()
            .and_then(|deliveries| deliveries.first())
            .map(|first| first["error"].to_string())
        {
            break error;
        }
        assert!(std::time::Instant::now() < deadline, "{session}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("no public address"), "{error}");
    assert_eq!(
        received.lock().unwrap().len(),
        calls,
        "the receiver was not called"
    );

    // Nothing but the allowed hosts and ports is ever called, and a refusal does not tell
    // which they are.
    for bad in [
        &format!("http://127.0.0.1:{}/hook", address.port() ^ 1) as &str,
        "http://127.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "https://127.0.0.1/hook",
        "http://127.0.0.1.evil.example/hook",
        "ftp://127.0.0.1/hook",
        "not a url",
    ] {
        let query = format!("?callback_url={}", bad.replace(' ', "%20"));
        let (status, error) =
            error_of(app.upload(USER, wav(FIRST), "audio/wav", &query).await).await;
        assert_eq!(status, 400, "{bad}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("callback_url"), "{error}");
        assert!(!message.contains("127.0.0.1"), "{error}");
    }
}

#[tokio::test]
async fn without_an_engine_the_server_serves_and_says_why_uploads_are_refused() {
    let app = spawn_with(|config| config.engine.kind = EngineKind::None).await;
    let ready: serde_json::Value = app.get("/api/v1/ready").json_reply().await;
    assert_eq!(ready["status"], "degraded");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap()
            .contains("POCWHISP_ENGINE"),
        "{ready}"
    );
    let health = app.get("/api/v1/health").send().await.unwrap();
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["components"]["engine"]["status"], "down");
    let refused = app.upload(USER, wav(FIRST), "audio/wav", "").await;
    assert!(refused.headers().contains_key("retry-after"));
    let (status, error) = error_of(refused).await;
    assert_eq!(status, 503);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("POCWHISP_ENGINE"),
        "{error}"
    );
    let list = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200, "reads still work");
}

#[tokio::test]
async fn audio_longer_than_the_limit_is_too_large_on_both_doors() {
    let app = spawn_with(|config| config.audio.max_duration = Duration::from_secs(2)).await;
    let audio = std::fs::read(recording("sense_and_sensibility_01_austen_64kb-0880")).unwrap();
    let (status, body) = error_of(app.upload(USER, audio.clone(), "audio/wav", "").await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("file_too_large")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("longer than"),
        "{body}"
    );
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio).file_name("a.wav"),
        )
        .text("model", "sphinx");
    let response = app
        .request(reqwest::Method::POST, "/v1/audio/transcriptions")
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

/// Everything the server keeps (the database and its log, the audio, the directories) is
/// for the server's user alone: audio and transcripts are private, also from the other
/// accounts of the machine.
#[tokio::test]
async fn what_the_server_keeps_on_disk_is_readable_by_its_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    app.transcribe(USER, wav(FIRST)).await;
    let mut pending = vec![app.data_dir.path().to_path_buf()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let metadata = std::fs::metadata(&path).unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        if metadata.is_dir() {
            pending.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|entry| entry.unwrap().path()),
            );
        }
        seen += 1;
    }
    // The directory, the database and its log, the audio and its directories at least.
    assert!(seen >= 6, "{seen} paths");
}
