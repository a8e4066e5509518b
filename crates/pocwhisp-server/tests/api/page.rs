//! The transcription page in a real browser (Debian's headless Chromium through chromedriver,
//! with a fake microphone playing a recording): sign in, upload a file and see its words,
//! download its subtitles, record from the microphone and transcribe that, delete a
//! session. A screenshot of the finished page is written to the test artifacts directory.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::{JsonReply, USER, spawn_app, words_in};
use crate::speech::{ffmpeg, recording};
use crate::webdriver::Browser;

const SPEECH: &str = "sense_and_sensibility_01_austen_64kb-0870";

/// The words shown on the page for the transcript, speakers' labels aside.
const SHOWN_WORDS: &str = "return [...document.querySelectorAll('#segments li')] \
     .map(li => li.lastChild.lastChild.textContent).join(' ').split(/\\s+/).filter(Boolean)";

/// Waits (20 s at most) for a finished download in `dir` whose name ends with `extension`.
async fn downloaded(dir: &Path, extension: &str) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().ends_with(extension));
        if let Some(entry) = found {
            let name = entry.file_name().to_string_lossy().into_owned();
            return (name, std::fs::read_to_string(entry.path()).unwrap());
        }
        assert!(Instant::now() < deadline, "no {extension} download");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_transcribes_a_file_and_a_recording_downloads_and_deletes() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    // A phone's voice memo to upload.
    let memo = dir.path().join("voice memo.m4a");
    ffmpeg(&[
        &"-i",
        &recording(SPEECH),
        &"-c:a",
        &"aac",
        &"-b:a",
        &"128k",
        &memo,
    ]);
    let browser = Browser::start_with(
        &[
            "--use-fake-ui-for-media-stream".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            format!(
                "--use-file-for-fake-audio-capture={}",
                recording(SPEECH).display()
            ),
        ],
        Some(&downloads),
    )
    .await;
    browser.open(&format!("{}/", app.base)).await;
    browser
        .wait_for(
            "the sign-in form",
            "return !document.getElementById('sign-in').hidden",
        )
        .await;
    // A wrong token is said in words.
    browser.type_into("#token", "not-a-token").await;
    browser.click("#sign-in button[type=submit]").await;
    let refused = browser
        .wait_for(
            "the refusal",
            "const e = document.getElementById('sign-in-error'); return !e.hidden && e.textContent",
        )
        .await;
    assert_eq!(refused, "That token is not valid.");
    // The browser logs the refused check; nothing else went wrong.
    let logged = browser.console_errors().await;
    assert!(
        logged.iter().all(|line| line.contains("status of 401")),
        "{logged:?}"
    );
    browser.type_into("#token", USER).await;
    browser.click("#sign-in button[type=submit]").await;
    browser
        .wait_for(
            "the page, and the form gone",
            "return document.getElementById('app').offsetParent !== null \
             && document.getElementById('sign-in').offsetParent === null",
        )
        .await;

    // Upload the file: its words appear, with times.
    browser.type_into("#file", memo.to_str().unwrap()).await;
    browser.click("#submit").await;
    browser
        .wait_for(
            "the transcript",
            "return document.getElementById('status').textContent === 'Transcribed.' \
             && document.querySelectorAll('#segments li').length",
        )
        .await;
    let id = browser.script("return current.session_id").await;
    let id = id.as_str().unwrap();
    let session: serde_json::Value = app
        .get(&format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(session["metadata"]["format"], "m4a");
    let shown = browser.script(SHOWN_WORDS).await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    assert_eq!(shown, words_in(&session));
    let first_time = browser
        .script("return document.querySelector('#segments .when').textContent")
        .await;
    assert!(
        first_time.as_str().unwrap().starts_with("0:0"),
        "{first_time}"
    );

    // Its subtitles download under the upload's name, as the API renders them.
    browser.click("[data-download=srt]").await;
    let (name, srt) = downloaded(&downloads, ".srt").await;
    assert_eq!(name, "voicememo.srt");
    let expected = app
        .get(&format!("/api/v1/transcribe/{id}/transcript?format=srt"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(srt, expected);

    // Record four seconds from the (fake) microphone, then transcribe the recording: the
    // browser's own format (WebM with Opus, from Chromium).
    browser.click("#record").await;
    browser
        .wait_for(
            "four seconds of recording",
            "const t = document.getElementById('recording-time').textContent; \
             return /Recording 0:0[4-9]/.test(t)",
        )
        .await;
    browser.click("#record").await;
    let ready = browser
        .wait_for(
            "the recording",
            "const c = document.getElementById('chosen').textContent; \
             return c.startsWith('Ready: recording-') && c",
        )
        .await;
    assert!(ready.as_str().unwrap().contains(".webm"), "{ready}");
    browser.click("#submit").await;
    let recorded = browser
        .wait_for(
            "the recording's transcript",
            &format!(
                "return document.getElementById('status').textContent === 'Transcribed.' \
                 && current.session_id !== '{id}' && JSON.stringify(current)"
            ),
        )
        .await;
    // (As text: a session's `error` field would read as WebDriver's own.)
    let recorded: serde_json::Value = serde_json::from_str(recorded.as_str().unwrap()).unwrap();
    assert_eq!(recorded["metadata"]["format"], "webm", "{recorded}");
    let seconds = recorded["metadata"]["duration"].as_f64().unwrap();
    assert!((3.5..12.0).contains(&seconds), "{seconds} s recorded");
    // The fake microphone plays the recording: some of its words are heard.
    let heard = words_in(&recorded);
    let spoken = words_in(&session);
    assert!(
        heard.iter().any(|word| spoken.contains(word)),
        "{heard:?} against {spoken:?}"
    );

    // Both are listed; the recording is deleted from the list.
    let rows = browser
        .wait_for(
            "two sessions listed",
            "const n = document.querySelectorAll('#sessions tbody tr').length; return n === 2 && n",
        )
        .await;
    assert_eq!(rows, 2);
    let recorded_id = recorded["session_id"].as_str().unwrap();
    browser
        .click(&format!(
            "#sessions tr[data-session='{recorded_id}'] button.danger"
        ))
        .await;
    let question = browser.accept_dialog().await;
    assert!(question.starts_with("Delete recording-"), "{question}");
    browser
        .wait_for(
            "one session listed",
            "return document.querySelectorAll('#sessions tbody tr').length === 1",
        )
        .await;
    let gone = app
        .get(&format!("/api/v1/transcribe/{recorded_id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // The file's session opens again from the list.
    browser
        .click(&format!("#sessions tr[data-session='{id}'] button.quiet"))
        .await;
    browser
        .wait_for(
            "the file's transcript again",
            &format!(
                "return current && current.session_id === '{id}' \
                 && document.getElementById('result').offsetParent !== null"
            ),
        )
        .await;
    browser.script("window.scrollTo(0, 0); return true").await;
    let screenshot = browser.screenshot().await;
    assert!(screenshot.starts_with(b"\x89PNG"));
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("page.png"), &screenshot).unwrap();
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.quit().await;
}
