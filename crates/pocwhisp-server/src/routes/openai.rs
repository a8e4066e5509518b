//! The OpenAI-compatible front door: `POST /v1/audio/transcriptions` and `GET /v1/models`, so
//! that the OpenAI SDKs and tools built on them work against this server unchanged.
//!
//! The same tokens (`user` role), intake, limits, quota, store and jobs as
//! `POST /api/v1/transcribe`: one pipeline, two doors, and the session shows up in
//! `GET /api/v1/transcribe`. Answers and errors are OpenAI's shapes (errors are written by
//! [`crate::http::error_body`] for every route under `/v1/`); fields OpenAI does not
//! know are ignored, as OpenAI ignores them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::header::CONTENT_TYPE;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::upload::{self, Caller, JobEvent};
use crate::audio::{decode, intake};
use crate::engine::{DecodeOptions, Task};
use crate::http::ApiError;
use crate::state::AppState;
use crate::store::{SessionDetail, SessionStatus};
use crate::subtitles;

pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(transcriptions).layer::<_, Infallible>(state.inner.uploads.clone()))
        .routes(routes!(translations).layer::<_, Infallible>(state.inner.uploads.clone()))
        .routes(routes!(models))
}

/// A model, as OpenAI's models list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Model {
    id: String,
    /// Always `model`.
    object: &'static str,
    /// When the server started, in Unix seconds.
    created: u64,
    owned_by: &'static str,
}

/// OpenAI's list shape.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<Model>,
}

/// The models that can answer: the engine's.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("bearer" = [])),
    responses((status = 200, description = "OpenAI's models list", body = ModelList)))]
async fn models(State(state): State<AppState>) -> Json<ModelList> {
    let started = SystemTime::now()
        .checked_sub(state.inner.started.elapsed())
        .unwrap_or(UNIX_EPOCH);
    let created = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let data = state
        .inner
        .jobs
        .as_ref()
        .map(|jobs| jobs.engine().models())
        .unwrap_or_default()
        .into_iter()
        .map(|id| Model {
            id,
            object: "model",
            created,
            owned_by: "pocwhisp",
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

/// `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
    Srt,
    Vtt,
    VerboseJson,
}

/// The request's fields, checked.
#[derive(Debug)]
struct Options {
    format: Format,
    words: bool,
    stream: bool,
    /// What the engine is asked.
    decode: DecodeOptions,
}

/// The last value of `name`, if sent.
fn field<'a>(fields: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .and_then(|values| values.last())
        .map(|value| value.trim())
}

fn options(
    fields: &BTreeMap<String, Vec<String>>,
    models: &[String],
    task: Task,
) -> Result<Options, ApiError> {
    match field(fields, "model") {
        None | Some("") => {
            return Err(ApiError::invalid_parameter(
                "model",
                format!("a model: one of {}", models.join(", ")),
            ));
        }
        Some(model) if !models.iter().any(|known| known == model) => {
            return Err(ApiError::invalid_parameter(
                "model",
                format!(
                    "a model this server serves ({}), not `{model}`",
                    models.join(", ")
                ),
            ));
        }
        Some(_) => {}
    }
    let format = match field(fields, "response_format").unwrap_or("json") {
        "json" => Format::Json,
        "text" => Format::Text,
        "srt" => Format::Srt,
        "vtt" => Format::Vtt,
        "verbose_json" => Format::VerboseJson,
        other => {
            return Err(ApiError::invalid_parameter(
                "response_format",
                format!("one of json, text, srt, vtt, verbose_json, not `{other}`"),
            ));
        }
    };
    // Some clients send the array field without its brackets.
    let granularities: Vec<&str> = ["timestamp_granularities[]", "timestamp_granularities"]
        .iter()
        .filter_map(|name| fields.get(*name))
        .flatten()
        .map(|value| value.trim())
        .collect();
    for granularity in &granularities {
        if !matches!(*granularity, "segment" | "word") {
            return Err(ApiError::invalid_parameter(
                "timestamp_granularities[]",
                format!("segment or word, not `{granularity}`"),
            ));
        }
    }
    if !granularities.is_empty() && format != Format::VerboseJson {
        return Err(ApiError::invalid_parameter(
            "timestamp_granularities[]",
            "timestamp granularities only with response_format verbose_json",
        ));
    }
    let temperature = match field(fields, "temperature") {
        None | Some("") => 0.0,
        Some(text) => match text.parse::<f64>() {
            Ok(value) if (0.0..=1.0).contains(&value) => value,
            _ => {
                return Err(ApiError::invalid_parameter(
                    "temperature",
                    "a number from 0 to 1",
                ));
            }
        },
    };
    let stream = match field(fields, "stream") {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid_parameter("stream", "true or false")),
    };
    if stream && format != Format::Json && format != Format::Text {
        return Err(ApiError::invalid_parameter(
            "stream",
            "streaming with response_format json or text",
        ));
    }
    // OpenAI's translations take no language: the speech's is detected, the text is English.
    let language = match task {
        Task::Transcribe => field(fields, "language"),
        Task::Translate => None,
    };
    Ok(Options {
        format,
        words: granularities.contains(&"word"),
        stream,
        decode: upload::decode_options(language, task, field(fields, "prompt"), temperature as f32),
    })
}

/// Transcribes audio, answering in the `response_format` asked for.
#[utoipa::path(post, path = "/v1/audio/transcriptions", tag = "openai",
    security(("bearer" = [])),
    request_body(description = "multipart/form-data as OpenAI documents it: `file` and `model` (required), `language`, `prompt`, `response_format` (json, text, srt, vtt, verbose_json), `temperature`, `timestamp_granularities[]` (segment, word; with verbose_json), `stream`", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The transcript: JSON, text, SRT, WebVTT, or server-sent events with `stream=true`"),
        (status = 400, description = "OpenAI's error body: the parameter at fault, a body that is not a form, or `Invalid file format` for a file that is not audio decoded here"),
        (status = 408, description = "The body came too slowly (server.body_read_timeout, server.min_body_rate)"),
        (status = 413, description = "Larger than audio.max_upload, or a form part's headers over 8 KiB"),
        (status = 503, description = "No speech engine, or every remote engine down"),
        (status = 507, description = "The disk is full: nothing was stored"),
    ))]
async fn transcriptions(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    answer(state, caller, request, Task::Transcribe).await
}

/// Translates speech in any language the engine knows into English text, answering in the
/// `response_format` asked for.
#[utoipa::path(post, path = "/v1/audio/translations", tag = "openai",
    security(("bearer" = [])),
    request_body(description = "multipart/form-data as OpenAI documents it: `file` and `model` (required), `prompt`, `response_format` (json, text, srt, vtt, verbose_json), `temperature`", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The English text: JSON, text, SRT, WebVTT, or server-sent events with `stream=true`"),
        (status = 400, description = "OpenAI's error body: the parameter at fault (an engine that does not translate), a body that is not a form, or `Invalid file format` for a file that is not audio decoded here"),
        (status = 408, description = "The body came too slowly (server.body_read_timeout, server.min_body_rate)"),
        (status = 413, description = "Larger than audio.max_upload, or a form part's headers over 8 KiB"),
        (status = 503, description = "No speech engine, or every remote engine down"),
        (status = 507, description = "The disk is full: nothing was stored"),
    ))]
async fn translations(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    answer(state, caller, request, Task::Translate).await
}

/// One pipeline for both doors: the upload, its fields checked, the job, the answer.
async fn answer(
    state: AppState,
    caller: Caller,
    request: Request,
    task: Task,
) -> Result<Response, ApiError> {
    let jobs = upload::accepting(&state)?;
    upload::within_unfinished_limit(&state, &caller).await?;
    let models = jobs.engine().models();
    let received = upload::receive(&state, request, &["file"], || {
        ApiError::invalid_parameter("file", "an audio file in the multipart field `file`")
    })
    .await
    .map_err(not_a_form)?;
    let checked = options(&received.fields, &models, task).and_then(|options| {
        upload::check_options(jobs.engine(), &options.decode).map(|()| options)
    });
    let options = match checked {
        Ok(options) => options,
        Err(error) => {
            intake::discard(received.received).await;
            return Err(error);
        }
    };
    let mut accepted = upload::accept(
        &state,
        jobs,
        &caller,
        received,
        None,
        options.decode.clone(),
    )
    .await
    .map_err(invalid_file_format)?;
    if options.stream {
        return Ok(stream(state, accepted).into_response());
    }
    let detail = upload::finished(&state, &accepted.id, &mut accepted.finished, None)
        .await?
        .ok_or_else(|| ApiError::internal("the job runner stopped"))?;
    render(&detail, &options)
}

/// OpenAI refuses with 400 what `/api/v1` answers 415 (its SDKs raise `BadRequestError` for
/// a 400 and only `APIStatusError` for a 415): a body that is not a form, with our message
/// ([`upload::receive`]'s only 415)...
fn not_a_form(error: ApiError) -> ApiError {
    match error {
        ApiError::UnsupportedMediaType(message) => ApiError::BadRequest {
            code: "invalid_request",
            message,
        },
        other => other,
    }
}

/// ...and a file that is not audio decoded here ([`upload::accept`]'s only 415), in OpenAI's
/// words, naming the formats this server decodes.
fn invalid_file_format(error: ApiError) -> ApiError {
    match error {
        ApiError::UnsupportedMediaType(_) => ApiError::BadRequest {
            code: "invalid_file_format",
            message: format!(
                "Invalid file format. Supported formats: [{}]",
                decode::FILE_FORMATS
                    .iter()
                    .map(|format| format!("'{format}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        other => other,
    }
}

/// The job's words as OpenAI streams them: a `transcript.text.delta` event per utterance as
/// it is decoded, then `transcript.text.done` with the whole text.
fn stream(state: AppState, accepted: upload::Accepted) -> impl IntoResponse {
    let mut first = true;
    let events = upload::job_events(state, accepted).map(move |event| {
        let event = match event {
            JobEvent::Words(text) => {
                let delta = if first { text } else { format!(" {text}") };
                first = false;
                serde_json::json!({"type": "transcript.text.delta", "delta": delta})
            }
            JobEvent::Ended(Ok(Some(detail)))
                if detail.session.status == SessionStatus::Completed =>
            {
                serde_json::json!({"type": "transcript.text.done", "text": subtitles::text(&detail.segments)})
            }
            JobEvent::Ended(Ok(Some(detail))) => serde_json::json!({"type": "error", "error": {
                "message": detail.session.error_message.unwrap_or_default(),
                "type": "server_error", "param": null, "code": "transcription_failed"}}),
            JobEvent::Ended(_) => serde_json::json!({"type": "error", "error": {
                "message": "the transcription did not finish", "type": "server_error",
                "param": null, "code": null}}),
        };
        Ok::<_, Infallible>(Event::default().data(event.to_string()))
    });
    Sse::new(events)
}

/// zlib's ratio of the text's size to its compressed size, as Whisper reports it (repetitive
/// output compresses well).
fn compression_ratio(text: &str) -> f64 {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    if encoder.write_all(text.as_bytes()).is_err() {
        return 1.0;
    }
    match encoder.finish() {
        Ok(compressed) if !compressed.is_empty() => text.len() as f64 / compressed.len() as f64,
        _ => 1.0,
    }
}

/// A language's name as Whisper's `verbose_json` gives it (`english` for `en`).
fn language_name(code: &str) -> String {
    whisper_rs::get_lang_id(code)
        .and_then(whisper_rs::get_lang_str_full)
        .unwrap_or(code)
        .to_owned()
}

/// One segment of `verbose_json`.
#[derive(Debug, Serialize)]
struct VerboseSegment<'a> {
    id: usize,
    /// The segment's start in 10 ms frames (Whisper's seek is the window offset in frames).
    seek: u64,
    start: f64,
    end: f64,
    text: &'a str,
    /// No tokenizer here: empty.
    tokens: [u32; 0],
    temperature: f64,
    /// The decoder's mean token log-probability (Whisper), else the natural log of the
    /// engine's mean word confidence.
    avg_logprob: f64,
    compression_ratio: f64,
    /// The decoder's probability that the window held no speech (Whisper), else 0: an engine
    /// without it makes segments only where it heard speech.
    no_speech_prob: f64,
}

fn render(detail: &SessionDetail, options: &Options) -> Result<Response, ApiError> {
    let session = &detail.session;
    if session.status != SessionStatus::Completed {
        return Err(ApiError::Unprocessable {
            code: "transcription_failed",
            message: session
                .error_message
                .clone()
                .unwrap_or_else(|| "the transcription failed".to_owned()),
        });
    }
    let segments = &detail.segments;
    let text = subtitles::text(segments);
    let plain = |body: String, content_type: &'static str| {
        ([(CONTENT_TYPE, content_type)], body).into_response()
    };
    Ok(match options.format {
        Format::Json => Json(serde_json::json!({ "text": text })).into_response(),
        Format::Text => plain(format!("{text}\n"), "text/plain; charset=utf-8"),
        Format::Srt => plain(
            subtitles::srt(segments),
            "application/x-subrip; charset=utf-8",
        ),
        Format::Vtt => plain(subtitles::vtt(segments), "text/vtt; charset=utf-8"),
        Format::VerboseJson => {
            let verbose: Vec<VerboseSegment<'_>> = segments
                .iter()
                .enumerate()
                .map(|(id, segment)| VerboseSegment {
                    id,
                    seek: (segment.start_time * 100.0) as u64,
                    start: segment.start_time,
                    end: segment.end_time,
                    text: &segment.text,
                    tokens: [],
                    temperature: f64::from(options.decode.temperature),
                    avg_logprob: segment
                        .avg_logprob
                        .unwrap_or_else(|| segment.confidence.max(1e-9).ln()),
                    compression_ratio: compression_ratio(&segment.text),
                    no_speech_prob: segment.no_speech_prob.unwrap_or(0.0),
                })
                .collect();
            // A translation's text is English, whatever was spoken.
            let language = match options.decode.task {
                Task::Translate => "en",
                Task::Transcribe => session.language.as_deref().unwrap_or("en"),
            };
            let mut body = serde_json::json!({
                "task": options.decode.task,
                "language": language_name(language),
                "duration": session.duration,
                "text": text,
                "segments": verbose,
                "usage": {"type": "duration", "seconds": session.duration.ceil() as u64},
            });
            if options.words {
                let words: Vec<_> = segments.iter().flat_map(|segment| &segment.words).collect();
                body["words"] = serde_json::to_value(words).unwrap_or_default();
            }
            Json(body).into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitive_text_compresses_better() {
        let varied = compression_ratio("and mr john guess what and then at leisure to consider");
        let repeated = compression_ratio(&"the the the the ".repeat(20));
        assert!(repeated > 3.0 * varied, "{repeated} against {varied}");
    }

    #[test]
    fn fields_are_checked_and_name_themselves() {
        let fields = |pairs: &[(&str, &str)]| {
            let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in pairs {
                map.entry((*name).to_owned())
                    .or_default()
                    .push((*value).to_owned());
            }
            map
        };
        let models = ["sphinx".to_owned()];
        let param =
            |pairs: &[(&str, &str)]| match options(&fields(pairs), &models, Task::Transcribe) {
                Err(ApiError::InvalidParameter { param, .. }) => param,
                other => panic!("{other:?}"),
            };
        assert_eq!(param(&[]), "model");
        assert_eq!(param(&[("model", "whisper-9")]), "model");
        assert_eq!(
            param(&[("model", "sphinx"), ("response_format", "xml")]),
            "response_format"
        );
        assert_eq!(
            param(&[("model", "sphinx"), ("temperature", "2")]),
            "temperature"
        );
        assert_eq!(
            param(&[("model", "sphinx"), ("timestamp_granularities[]", "word")]),
            "timestamp_granularities[]"
        );
        let verbose = options(
            &fields(&[
                ("model", "sphinx"),
                ("response_format", "verbose_json"),
                ("timestamp_granularities", "word"),
                ("unknown", "ignored"),
            ]),
            &models,
            Task::Transcribe,
        )
        .unwrap();
        assert!(verbose.words && verbose.format == Format::VerboseJson);
        let asked = options(
            &fields(&[
                ("model", "sphinx"),
                ("language", "DE"),
                ("prompt", "Dashwood"),
                ("temperature", "0.2"),
            ]),
            &models,
            Task::Transcribe,
        )
        .unwrap()
        .decode;
        assert_eq!(
            (
                asked.language.as_deref(),
                asked.prompt.as_deref(),
                asked.temperature
            ),
            (Some("de"), Some("Dashwood"), 0.2)
        );
        let translated = options(
            &fields(&[("model", "sphinx"), ("language", "de")]),
            &models,
            Task::Translate,
        )
        .unwrap()
        .decode;
        assert_eq!(
            (translated.task, translated.language),
            (Task::Translate, None)
        );
        let blank = options(
            &fields(&[("model", "sphinx"), ("language", " "), ("prompt", "")]),
            &models,
            Task::Transcribe,
        )
        .unwrap()
        .decode;
        assert_eq!(
            (blank.language, blank.prompt),
            (None, None),
            "blank fields are absent"
        );
    }
}
