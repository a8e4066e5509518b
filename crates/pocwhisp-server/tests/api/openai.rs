//! `/v1/audio/transcriptions` and `/v1/models` as the OpenAI SDKs use them: every
//! `response_format` (subtitles parsed back), word timestamps, streaming, and OpenAI's
//! error shapes naming the parameter at fault.

use reqwest::multipart::{Form, Part};

use crate::helpers::{JsonReply, TestApp, USER, spawn_app};
use crate::speech::recording;

const SPEECH: &str = "sense_and_sensibility_01_austen_64kb-0870";

fn form(fields: &[(&str, &str)]) -> Form {
    let audio = std::fs::read(recording(SPEECH)).unwrap();
    let mut form = Form::new().part("file", Part::bytes(audio).file_name("speech.wav"));
    for (name, value) in fields {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    form
}

async fn transcribe(app: &TestApp, form: Form) -> reqwest::Response {
    app.request(reqwest::Method::POST, "/v1/audio/transcriptions")
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// OpenAI's error body of `response`: status, param, code.
async fn openai_error(response: reqwest::Response) -> (u16, Option<String>, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    (
        status,
        error["param"].as_str().map(str::to_owned),
        error["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The cues of an SRT or WebVTT file: (start, end) in seconds and the text.
fn cues(subtitles: &str, separator: char) -> Vec<(f64, f64, String)> {
    let seconds = |time: &str| {
        let (clock, millis) = time.trim().split_once(separator).unwrap();
        let parts: Vec<f64> = clock.split(':').map(|part| part.parse().unwrap()).collect();
        parts[0] * 3600.0 + parts[1] * 60.0 + parts[2] + millis.parse::<f64>().unwrap() / 1000.0
    };
    subtitles
        .split("\n\n")
        .filter_map(|block| {
            let lines: Vec<&str> = block.lines().collect();
            let at = lines.iter().position(|line| line.contains(" --> "))?;
            let (start, end) = lines[at].split_once(" --> ").unwrap();
            Some((seconds(start), seconds(end), lines[at + 1..].join(" ")))
        })
        .collect()
}

#[tokio::test]
async fn every_response_format_says_the_same_words() {
    let app = spawn_app().await;
    let models: serde_json::Value = app.get("/v1/models").bearer_auth(USER).json_reply().await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "sphinx");
    assert_eq!(models["data"][0]["object"], "model");

    let json: serde_json::Value = transcribe(&app, form(&[("model", "sphinx")]))
        .await
        .json()
        .await
        .unwrap();
    let text = json["text"].as_str().unwrap().to_owned();
    assert!(text.split_whitespace().count() > 10, "{json}");
    assert_eq!(
        json.as_object().unwrap().len(),
        1,
        "json is just the text: {json}"
    );

    let plain = transcribe(
        &app,
        form(&[("model", "sphinx"), ("response_format", "text")]),
    )
    .await;
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(plain.text().await.unwrap().trim(), text);

    for (format, separator) in [("srt", ','), ("vtt", '.')] {
        let response = transcribe(
            &app,
            form(&[("model", "sphinx"), ("response_format", format)]),
        )
        .await;
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        if format == "vtt" {
            assert!(body.starts_with("WEBVTT\n\n"), "{body}");
        } else {
            assert!(body.starts_with("1\n"), "{body}");
        }
        let cues = cues(&body, separator);
        assert!(!cues.is_empty(), "{body}");
        let mut last = 0.0;
        for (start, end, _) in &cues {
            assert!(*start >= last && end > start, "{format}: {cues:?}");
            last = *end;
        }
        let joined: Vec<&str> = cues.iter().map(|(_, _, text)| text.as_str()).collect();
        assert_eq!(joined.join(" "), text, "{format}");
    }

    let verbose: serde_json::Value = transcribe(
        &app,
        form(&[
            ("model", "sphinx"),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ]),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(verbose["task"], "transcribe");
    assert_eq!(verbose["language"], "english");
    assert_eq!(verbose["text"], text.as_str());
    assert!((verbose["duration"].as_f64().unwrap() - 7.1).abs() < 0.05);
    assert_eq!(verbose["usage"]["type"], "duration");
    let segments = verbose["segments"].as_array().unwrap();
    for (index, segment) in segments.iter().enumerate() {
        assert_eq!(segment["id"], index);
        for key in [
            "seek",
            "start",
            "end",
            "text",
            "tokens",
            "temperature",
            "avg_logprob",
            "compression_ratio",
            "no_speech_prob",
        ] {
            assert!(!segment[key].is_null(), "{key}: {segment}");
        }
        assert!(segment["avg_logprob"].as_f64().unwrap() <= 0.0);
    }
    let words = verbose["words"].as_array().unwrap();
    let spoken: Vec<&str> = words
        .iter()
        .map(|word| word["word"].as_str().unwrap())
        .collect();
    assert_eq!(spoken.join(" "), text);
    let mut last = 0.0;
    for word in words {
        let (start, end) = (
            word["start"].as_f64().unwrap(),
            word["end"].as_f64().unwrap(),
        );
        assert!(start >= last && end >= start, "{word}");
        last = end;
    }

    // The brackets some clients leave out, and fields OpenAI does not know: accepted.
    let unbracketed = transcribe(
        &app,
        form(&[
            ("model", "sphinx"),
            ("response_format", "verbose_json"),
            ("timestamp_granularities", "word"),
            ("chunking_strategy", "auto"),
            ("prompt", "a novel"),
            ("language", "en"),
        ]),
    )
    .await;
    assert_eq!(unbracketed.status(), 200);
    let body: serde_json::Value = unbracketed.json().await.unwrap();
    assert!(body["words"].is_array());

    // Every upload is a session of the caller's.
    let list: serde_json::Value = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(list["pagination"]["total"], 6);
}

#[tokio::test]
async fn streaming_sends_deltas_then_the_whole_text() {
    let app = spawn_app().await;
    let response = transcribe(&app, form(&[("model", "sphinx"), ("stream", "true")])).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    let events: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let (done, deltas) = events.split_last().unwrap();
    assert_eq!(done["type"], "transcript.text.done", "{body}");
    assert!(!deltas.is_empty(), "{body}");
    let streamed: String = deltas
        .iter()
        .map(|event| {
            assert_eq!(event["type"], "transcript.text.delta");
            event["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(streamed, done["text"].as_str().unwrap());
    let json: serde_json::Value = transcribe(&app, form(&[("model", "sphinx")]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["text"], done["text"]);
}

#[tokio::test]
async fn errors_are_openai_shaped_and_name_the_parameter() {
    let app = spawn_app().await;
    for (fields, param) in [
        (vec![], "model"),
        (vec![("model", "whisper-9000")], "model"),
        (
            vec![("model", "sphinx"), ("response_format", "docx")],
            "response_format",
        ),
        (
            vec![("model", "sphinx"), ("timestamp_granularities[]", "word")],
            "timestamp_granularities[]",
        ),
        (
            vec![
                ("model", "sphinx"),
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "syllable"),
            ],
            "timestamp_granularities[]",
        ),
        (
            vec![("model", "sphinx"), ("temperature", "hot")],
            "temperature",
        ),
        (vec![("model", "sphinx"), ("stream", "maybe")], "stream"),
        (vec![("model", "sphinx"), ("language", "fr")], "language"),
        (
            vec![("model", "sphinx"), ("language", "english")],
            "language",
        ),
        // whisper.cpp takes the prompt as a C string: a NUL would end it (whisper-rs panics).
        (
            vec![("model", "sphinx"), ("prompt", "Dash\0wood")],
            "prompt",
        ),
    ] {
        let (status, got, code) = openai_error(transcribe(&app, form(&fields)).await).await;
        assert_eq!((status, got.as_deref()), (400, Some(param)), "{fields:?}");
        assert_eq!(code, "invalid_parameter");
    }
    // No file.
    let no_file = Form::new().text("model", "sphinx");
    let (status, param, _) = openai_error(transcribe(&app, no_file).await).await;
    assert_eq!((status, param.as_deref()), (400, Some("file")));
    // A file that is not audio.
    let text = Form::new()
        .part(
            "file",
            Part::bytes(b"not audio at all\n".repeat(100)).file_name("notes.wav"),
        )
        .text("model", "sphinx");
    // OpenAI's answer, which its SDKs raise as `BadRequestError` (a 415 was only an
    // `APIStatusError`).
    let response = transcribe(&app, text).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']"
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], serde_json::Value::Null);
    // Not multipart.
    let raw = app
        .request(reqwest::Method::POST, "/v1/audio/transcriptions")
        .bearer_auth(USER)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(openai_error(raw).await.0, 400);
    // No token, and a made-up one.
    for token in [None, Some("sk-made-up")] {
        let mut request = app.request(reqwest::Method::POST, "/v1/audio/transcriptions");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .multipart(form(&[("model", "sphinx")]))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    let models = app.get("/v1/models").send().await.unwrap();
    assert_eq!(openai_error(models).await.0, 401);
    // Nothing refused was kept.
    let list: serde_json::Value = app
        .get("/api/v1/transcribe")
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(list["pagination"]["total"], 0);
}
