//! Every format OpenAI's transcription API accepts, made from Debian's recorded speech by
//! sox and ffmpeg: each decodes to the sound of the WAV and gives its words (the same
//! formats through the OpenAI SDK and Whisper are in tests/sdk/openai_sdk.py); more than two
//! channels are mixed down; truncated, lying and pretending files get the documented 4xx on
//! both doors.

use std::path::{Path, PathBuf};

use reqwest::multipart::{Form, Part};

use crate::helpers::{TestApp, USER, error_of, spawn_app, words_in};
use crate::speech::{at_engine_rate, errors, ffmpeg, joined_recordings, recording, sox};

const SPEECH: &str = "sense_and_sensibility_01_austen_64kb-0890";

/// A file made from the recording: where, what the server should call its format, and
/// whether its codec is lossy.
struct Made {
    path: PathBuf,
    format: &'static str,
    lossy: bool,
}

/// What makes each format from a WAV: its file name, the format the server names, whether it
/// is lossy, the tool, and the tool's output options.
const RECIPES: [(&str, &str, bool, &str, &[&str]); 9] = [
    ("speech.flac", "flac", false, "sox", &[]),
    (
        "speech-44k-24bit.wav",
        "wav",
        false,
        "sox",
        &["-b", "24", "-r", "44100"],
    ),
    // At 128 kb/s: sox's default for 16 kHz mono, 32 kb/s, loses words.
    ("speech.mp3", "mp3", true, "sox", &["-C", "128"]),
    ("speech-vorbis.ogg", "ogg", true, "sox", &[]),
    // A phone's voice memo: AAC in MP4.
    (
        "speech.m4a",
        "m4a",
        true,
        "ffmpeg",
        &["-c:a", "aac", "-b:a", "128k"],
    ),
    // A video call's recording: a picture track first, then the sound.
    (
        "speech-with-video.mp4",
        "m4a",
        true,
        "ffmpeg",
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=64x64:r=5",
            "-map",
            "1:v",
            "-map",
            "0:a",
            "-shortest",
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ],
    ),
    // What browsers' MediaRecorder gives: Opus in WebM (Chrome) and in Ogg (Firefox).
    (
        "speech.webm",
        "webm",
        true,
        "ffmpeg",
        &["-c:a", "libopus", "-b:a", "48k"],
    ),
    (
        "speech-opus.ogg",
        "ogg",
        true,
        "ffmpeg",
        &["-c:a", "libopus", "-b:a", "48k"],
    ),
    (
        "speech.mpeg",
        "mp3",
        true,
        "ffmpeg",
        &["-f", "mp3", "-c:a", "libmp3lame", "-b:a", "128k"],
    ),
];

/// `source` in every format, written to `dir`.
fn every_format(dir: &Path, source: &Path) -> Vec<Made> {
    RECIPES
        .iter()
        .map(|&(name, format, lossy, tool, options)| {
            let path = dir.join(name);
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = Vec::new();
            if tool == "ffmpeg" {
                args.push(&"-i");
            }
            args.push(&source);
            args.extend(
                options
                    .iter()
                    .map(|option| option as &dyn AsRef<std::ffi::OsStr>),
            );
            args.push(&path);
            if tool == "ffmpeg" {
                ffmpeg(&args);
            } else {
                sox(&args);
            }
            Made {
                path,
                format,
                lossy,
            }
        })
        .collect()
}

/// The length in seconds of a WAV of 16-bit mono at 16 kHz, as sox writes it (a 44-byte
/// header).
fn seconds_of(wav: &Path) -> f64 {
    (std::fs::metadata(wav).unwrap().len() - 44) as f64 / 32_000.0
}

/// How alike two recordings' loudness over time is: the correlation of their energy in
/// 20 ms frames (in decibels), at the best shift within 200 ms (lossy encoders delay the
/// start). 1 is the same shape; a wrong sample rate or channel layout gives little.
fn envelope_likeness(original: &[i16], decoded: &[i16]) -> f64 {
    let envelope = |samples: &[i16]| -> Vec<f64> {
        samples
            .chunks_exact(320)
            .map(|frame| {
                let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
                10.0 * (energy / 320.0 + 1.0).log10()
            })
            .collect()
    };
    let (a, b) = (envelope(original), envelope(decoded));
    let correlation = |a: &[f64], b: &[f64]| {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
        let (ma, mb) = (mean(a), mean(b));
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let var = |x: &[f64], m: f64| x.iter().map(|v| (v - m).powi(2)).sum::<f64>();
        cov / (var(a, ma) * var(b, mb)).sqrt()
    };
    (0..10)
        .flat_map(|shift| [correlation(&a[shift..], &b), correlation(&a, &b[shift..])])
        .fold(f64::MIN, f64::max)
}

/// Uploads `audio` as a form with `name` on `/api/v1/transcribe` and waits for the session.
async fn transcribe_file(app: &TestApp, name: &str, audio: Vec<u8>) -> serde_json::Value {
    let form = Form::new().part("file", Part::bytes(audio).file_name(name.to_owned()));
    let response = app
        .request(reqwest::Method::POST, "/api/v1/transcribe")
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(matches!(status, 200 | 202), "{name}: {status} {body}");
    app.finished(USER, body["session_id"].as_str().unwrap())
        .await
}

/// `/v1/audio/transcriptions` with `audio` named `name`: the status and the body.
async fn openai_transcribe(app: &TestApp, name: &str, audio: Vec<u8>) -> (u16, serde_json::Value) {
    let form = Form::new()
        .part("file", Part::bytes(audio).file_name(name.to_owned()))
        .text("model", "sphinx")
        .text("response_format", "json");
    let response = app
        .request(reqwest::Method::POST, "/v1/audio/transcriptions")
        .bearer_auth(USER)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn every_format_openai_accepts_gives_the_words_of_the_wav() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    // The five recordings joined, 25 s: enough words for a word error rate to mean something.
    let source = joined_recordings(dir.path(), 0);
    let wav = std::fs::read(&source).unwrap();
    let expected = words_in(&transcribe_file(&app, "speech.wav", wav).await);
    let length = seconds_of(&source);
    let original = at_engine_rate(&source).remove(0);
    for made in every_format(dir.path(), &source) {
        let name = made.path.file_name().unwrap().to_str().unwrap().to_owned();
        let audio = std::fs::read(&made.path).unwrap();
        let session = transcribe_file(&app, &name, audio).await;
        assert_eq!(session["status"], "completed", "{name}: {session}");
        let metadata = &session["metadata"];
        assert_eq!(metadata["format"], made.format, "{name}");
        assert_eq!(metadata["channels"], 1, "{name}");
        // Lossy encoders pad the start (AAC's priming frame, Opus's pre-skip is dropped):
        // the length is held to two AAC frames.
        let seconds = metadata["duration"].as_f64().unwrap();
        assert!(
            (seconds - length).abs() < 0.15,
            "{name}: {seconds} s against {length} s"
        );
        // The decoded sound follows the source's, and PocketSphinx, which hears a lossy copy a
        // little differently, gives its words within a quarter of edits.
        let decoded = at_engine_rate(&made.path).remove(0);
        let likeness = envelope_likeness(&original, &decoded);
        assert!(likeness > 0.9, "{name}: envelopes correlate {likeness:.3}");
        let heard = words_in(&session);
        let edits = errors(&expected, &heard);
        eprintln!(
            "{name}: envelope correlation {likeness:.3}, {edits} edits over {} words",
            expected.len()
        );
        if made.lossy {
            assert!(
                edits * 4 <= expected.len(),
                "{name}: {heard:?} against {expected:?}"
            );
        } else {
            assert_eq!(heard, expected, "{name}");
        }
    }
}

#[tokio::test]
async fn more_than_two_channels_are_mixed_down_to_one_speaker() {
    let app = spawn_app().await;
    let source = recording(SPEECH);
    let expected =
        words_in(&transcribe_file(&app, "speech.wav", std::fs::read(&source).unwrap()).await);
    let dir = tempfile::TempDir::new().unwrap();
    let copies = |count: usize, name: &str| {
        let path = dir.path().join(name);
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"-M"];
        args.extend(std::iter::repeat_n(
            &source as &dyn AsRef<std::ffi::OsStr>,
            count,
        ));
        args.push(&path);
        sox(&args);
        path
    };
    let six = copies(6, "six.wav");
    let six_flac = copies(6, "six.flac");
    // Surround Opus: libopus's multistream layout (mapping family 1).
    let six_opus = dir.path().join("six.ogg");
    ffmpeg(&[
        &"-i",
        &six,
        &"-c:a",
        &"libopus",
        &"-mapping_family",
        &"1",
        &"-b:a",
        &"192k",
        &six_opus,
    ]);
    for (path, lossy) in [(&six, false), (&six_flac, false), (&six_opus, true)] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let session = transcribe_file(&app, name, std::fs::read(path).unwrap()).await;
        assert_eq!(session["metadata"]["channels"], 6, "{name}: {session}");
        let speakers: std::collections::HashSet<_> = session["transcript"]["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|segment| segment["speaker"].clone())
            .collect();
        assert_eq!(
            speakers.len(),
            1,
            "{name}: one mixed channel, one speaker: {speakers:?}"
        );
        let heard = words_in(&session);
        if lossy {
            assert!(
                errors(&expected, &heard) * 10 <= expected.len(),
                "{name}: {heard:?}"
            );
        } else {
            // The mean of six copies is the recording itself.
            assert_eq!(heard, expected, "{name}");
        }
    }
    // Nine channels is more than any layout these formats define.
    let nine = copies(9, "nine.wav");
    let response = app
        .upload(USER, std::fs::read(nine).unwrap(), "audio/wav", "")
        .await;
    let (status, error) = error_of(response).await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("9 channels"),
        "{error}"
    );
}

/// `webm` with its header's duration (Matroska's `Duration`, EBML id 0x4489, an 8-byte
/// float of milliseconds, as ffmpeg writes it) replaced by `milliseconds`.
fn with_duration(webm: &[u8], milliseconds: f64) -> Vec<u8> {
    let at = webm
        .windows(3)
        .position(|window| window == [0x44, 0x89, 0x88])
        .expect("ffmpeg writes the duration as an 8-byte float");
    let mut lying = webm.to_vec();
    lying[at + 3..at + 11].copy_from_slice(&milliseconds.to_be_bytes());
    lying
}

#[tokio::test]
async fn truncated_lying_and_pretending_files_get_the_documented_4xx_on_both_doors() {
    let app = spawn_app().await;
    let dir = tempfile::TempDir::new().unwrap();
    let source = recording(SPEECH);
    let length_ms = seconds_of(&source) * 1000.0;
    // The index first (`faststart`), so that a cut file still opens and only its samples
    // are missing; and the index last, ffmpeg's default, so that a cut file has none.
    let indexed = dir.path().join("indexed.m4a");
    ffmpeg(&[
        &"-i",
        &source,
        &"-c:a",
        &"aac",
        &"-movflags",
        &"+faststart",
        &indexed,
    ]);
    let plain = dir.path().join("plain.m4a");
    ffmpeg(&[&"-i", &source, &"-c:a", &"aac", &plain]);
    let webm = dir.path().join("speech.webm");
    ffmpeg(&[&"-i", &source, &"-c:a", &"libopus", &webm]);
    let picture_only = dir.path().join("silent-film.mp4");
    ffmpeg(&[
        &"-f",
        &"lavfi",
        &"-i",
        &"color=c=black:s=64x64:r=5",
        &"-t",
        &"3",
        &"-c:v",
        &"mpeg4",
        &picture_only,
    ]);
    let cut = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        bytes[..bytes.len() * 6 / 10].to_vec()
    };
    let webm_bytes = std::fs::read(&webm).unwrap();
    // Four billion entries in the sample-to-chunk table of a file of a few kilobytes: 48 GB
    // that symphonia would allocate, aborting the server, were the table not checked first.
    let mut endless_table = std::fs::read(&indexed).unwrap();
    let at = endless_table
        .windows(4)
        .position(|window| window == b"stsc")
        .unwrap();
    endless_table[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0_u32.to_be_bytes());
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "a text file named .m4a",
            "memo.m4a",
            b"call the bank on monday\n".repeat(100),
            415,
            "not a recognised",
        ),
        (
            "a cut M4A whose index is first",
            "cut.m4a",
            cut(&indexed),
            400,
            "cut short",
        ),
        (
            "a cut M4A whose index was at the end",
            "cut-plain.m4a",
            cut(&plain),
            400,
            "damaged",
        ),
        ("a cut WebM", "cut.webm", cut(&webm), 400, "cut short"),
        (
            "a WebM claiming three times its length",
            "long.webm",
            with_duration(&webm_bytes, length_ms * 3.0),
            400,
            "header says",
        ),
        (
            "a WebM claiming a third of its length",
            "short.webm",
            with_duration(&webm_bytes, length_ms / 3.0),
            400,
            "header says",
        ),
        (
            "an M4A claiming four billion table entries",
            "table.m4a",
            endless_table,
            400,
            "4294967280 entries",
        ),
        (
            "a video without sound",
            "film.mp4",
            std::fs::read(&picture_only).unwrap(),
            400,
            "no audio track",
        ),
    ];
    for (case, name, bytes, status, says) in cases {
        let form = Form::new().part("file", Part::bytes(bytes.clone()).file_name(name));
        let response = app
            .request(reqwest::Method::POST, "/api/v1/transcribe")
            .bearer_auth(USER)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let (got, error) = error_of(response).await;
        assert_eq!(got, status, "{case}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(says), "{case}: {message}");
        if status == 415 {
            assert!(
                message.contains("WebM (Opus)"),
                "{case} names what is accepted: {message}"
            );
        }
        // OpenAI answers every one of them 400 `invalid_request_error`.
        let (got, body) = openai_transcribe(&app, name, bytes).await;
        assert_eq!(got, 400, "{case}: {body}");
        assert_eq!(
            body["error"]["type"], "invalid_request_error",
            "{case}: {body}"
        );
    }
}
