//! The one upload pipeline behind both front doors (`POST /api/v1/transcribe` and OpenAI's
//! `POST /v1/audio/transcriptions`): who is calling, reading the body to disk (multipart or
//! raw), checking the audio, storing it with its session and job, and waiting for the job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRequestParts, Request};
use futures_util::StreamExt;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError};
use perf_middleware::BoxError;
use perf_middleware::body_timeout::BodyTimeoutError;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::audio::decode;
use crate::audio::intake::{self, IntakeError, Received, Receiving};
use crate::config::Role;
use crate::engine::{DecodeOptions, Task, Transcriber};
use crate::http::part_headers::{PartHeaderLimit, PartHeadersTooLarge};
use crate::http::{ApiError, Principal};
use crate::jobs::{Finished, Jobs, Progress};
use crate::state::AppState;
use crate::store::{NewSession, SessionDetail, SessionStatus, StoreError};

/// The verified caller; 401 without one (the role layer runs first, so this is a guard).
pub(crate) struct Caller(pub(crate) Principal);

impl Caller {
    /// Whose sessions the caller may see: their own, or all for an admin.
    pub(crate) fn owner(&self) -> Option<&str> {
        (!self.0.may(Role::Admin)).then_some(&*self.0.identity)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or(ApiError::Unauthorized(
                "this route needs `Authorization: Bearer <token>`",
            ))
    }
}

/// A store failure as the client sees it.
pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(reason) => ApiError::Unavailable {
            message: format!("storage is unavailable: {reason}"),
            retry_after: Duration::from_secs(5),
        },
        StoreError::DiskFull(reason) => ApiError::InsufficientStorage(format!(
            "the server's disk is full ({reason}); an operator must free space or delete sessions"
        )),
        StoreError::Other(reason) => ApiError::internal(reason),
    }
}

/// Refuses an upload (429) from a user who has `jobs.max_unfinished_per_user` jobs queued or
/// running already: their own backlog waits, not everyone's.
pub(crate) async fn within_unfinished_limit(
    state: &AppState,
    caller: &Caller,
) -> Result<(), ApiError> {
    let limit = state.config().jobs.max_unfinished_per_user;
    let Some(owner) = caller.owner().filter(|_| limit > 0) else {
        return Ok(());
    };
    let unfinished = state
        .inner
        .store
        .unfinished_jobs(owner)
        .await
        .map_err(store_error)?;
    if unfinished >= u64::from(limit) {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "{unfinished} of your uploads are still queued or being transcribed (at most {limit}); send more once some finish"
            ),
            retry_after: Duration::from_secs(10),
        });
    }
    Ok(())
}

/// The job runner, if the server takes uploads now: 503 without an engine or above the
/// memory limit, before a byte of the body is read.
pub(crate) fn accepting(state: &AppState) -> Result<&Arc<Jobs>, ApiError> {
    let shared = &state.inner;
    let Some(jobs) = shared.jobs.as_ref() else {
        return Err(ApiError::Unavailable {
            message: shared.engine_problem.clone().unwrap_or_default(),
            retry_after: Duration::from_secs(60),
        });
    };
    if shared.memory.is_over() {
        return Err(ApiError::Unavailable {
            message: "the server is above its memory limit; retry when it has caught up".to_owned(),
            retry_after: Duration::from_secs(10),
        });
    }
    if shared.disk_reserve.is_released() {
        return Err(ApiError::InsufficientStorage(
            "the server's disk is full: uploads are refused until an operator frees space or deletes sessions".to_owned(),
        ));
    }
    if let Some(retry_after) = jobs.engine().unavailable_for() {
        return Err(ApiError::Unavailable {
            message: format!(
                "the speech engine ({}) is failing; retry later",
                jobs.engine().name()
            ),
            retry_after,
        });
    }
    Ok(jobs)
}

/// What a request body brought: the audio on disk, the file name the client gave, and the
/// other multipart fields as text.
pub(crate) struct Upload {
    pub(crate) received: Received,
    pub(crate) original_name: String,
    pub(crate) fields: BTreeMap<String, Vec<String>>,
}

/// Text fields a multipart upload may carry besides the file, all together, names included.
const MAX_FIELD_BYTES: usize = 64 << 10;

/// Parts a multipart upload may have, the file included.
const MAX_PARTS: usize = 64;

/// Bytes of a file name kept; a longer name is cut at a character boundary.
const MAX_FILE_NAME_BYTES: usize = 255;

/// The file name a client gave, as it is kept: control characters dropped, at most
/// [`MAX_FILE_NAME_BYTES`] bytes, `upload` when nothing is left.
fn file_name(given: Option<&str>) -> String {
    let mut name = String::new();
    for character in given
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
    {
        if name.len() + character.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        name.push(character);
    }
    if name.trim().is_empty() {
        "upload".to_owned()
    } else {
        name
    }
}

/// Reads the request into an [`Upload`]: multipart, with the audio in the first field named
/// in `file_fields` (streamed to disk) and the other fields kept as text; or a raw body with
/// an audio content type. `Err(None)` from `missing` means no file was sent.
pub(crate) async fn receive(
    state: &AppState,
    request: Request,
    file_fields: &[&str],
    missing: impl FnOnce() -> ApiError,
) -> Result<Upload, ApiError> {
    let limit = state.config().audio.max_upload.0;
    let data_dir = &state.config().server.data_dir;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the upload is larger than the {} accepted",
            state.config().audio.max_upload
        ))
    };
    let intake_error = |error: IntakeError| match error {
        IntakeError::TooLarge(_) => too_large(),
        IntakeError::Io(error) if error.kind() == std::io::ErrorKind::StorageFull => {
            ApiError::InsufficientStorage(
                "the server's disk is full: the upload was not stored".to_owned(),
            )
        }
        IntakeError::Io(error) => ApiError::internal(format!("storing the upload: {error}")),
    };
    let slow = || {
        ApiError::RequestTimeout(format!(
            "the upload came too slowly: it must begin within {} and then arrive at {} per second or faster",
            humantime::format_duration(state.config().server.body_read_timeout),
            state.config().server.min_body_rate
        ))
    };
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let media_type = content_type.to_ascii_lowercase();
    if media_type.starts_with("multipart/form-data") {
        let multipart_error = |error: multer::Error| {
            body_error(
                &error,
                too_large,
                slow,
                "invalid_multipart",
                "a malformed form",
            )
        };
        // The boundary is case-sensitive: taken from the header as it was sent.
        let boundary = multer::parse_boundary(&content_type).map_err(multipart_error)?;
        let mut part_headers = PartHeaderLimit::new(&boundary);
        let body = request.into_body().into_data_stream().map(move |chunk| {
            let chunk = chunk?;
            part_headers.check(&chunk)?;
            Ok::<_, BoxError>(chunk)
        });
        let mut multipart = multer::Multipart::new(body, boundary);
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut field_bytes = 0;
        let mut parts = 0;
        let mut file = None;
        let fields_too_large = || {
            ApiError::PayloadTooLarge(format!(
                "the form fields besides the file are larger than the {} KiB accepted",
                MAX_FIELD_BYTES >> 10
            ))
        };
        while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
            parts += 1;
            if parts > MAX_PARTS {
                return Err(ApiError::BadRequest {
                    code: "invalid_multipart",
                    message: format!("a form of more than {MAX_PARTS} parts"),
                });
            }
            let name = field.name().unwrap_or_default().to_owned();
            if file.is_none() && file_fields.contains(&name.as_str()) {
                let original = file_name(field.file_name());
                let mut upload = Receiving::start(data_dir, limit)
                    .await
                    .map_err(intake_error)?;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    upload.write(&chunk).await.map_err(intake_error)?;
                }
                file = Some((upload.finish().await.map_err(intake_error)?, original));
                continue;
            }
            if field.file_name().is_some() {
                // Another file: not ours to keep (the body limit still bounds it).
                while field.chunk().await.map_err(multipart_error)?.is_some() {}
                continue;
            }
            // Read a chunk at a time and refused as soon as the fields pass their limit: a
            // field is never held whole before it is measured.
            field_bytes += name.len();
            let mut value = Vec::new();
            loop {
                if field_bytes + value.len() > MAX_FIELD_BYTES {
                    return Err(fields_too_large());
                }
                match field.chunk().await.map_err(multipart_error)? {
                    Some(chunk) => value.extend_from_slice(&chunk),
                    None => break,
                }
            }
            field_bytes += value.len();
            let value = String::from_utf8(value).map_err(|_| ApiError::BadRequest {
                code: "invalid_multipart",
                message: format!("the form field `{name}` is not UTF-8 text"),
            })?;
            fields.entry(name).or_default().push(value);
        }
        let Some((received, original_name)) = file else {
            return Err(missing());
        };
        return Ok(Upload {
            received,
            original_name,
            fields,
        });
    }
    // video/* too: an MP4 or WebM recording is sent as video/mp4 or video/webm; what the
    // bytes hold is decided by decoding them, not by this.
    if !["audio/", "video/", "application/octet-stream"]
        .iter()
        .any(|accepted| media_type.starts_with(accepted))
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the audio as multipart/form-data (field `{}`) or as a raw body with an audio/* or video/* content type",
            file_fields.first().copied().unwrap_or("file")
        )));
    }
    let mut upload = Receiving::start(data_dir, limit)
        .await
        .map_err(intake_error)?;
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            body_error(
                &error,
                too_large,
                slow,
                "invalid_body",
                "the upload was cut off",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            upload.write(&data).await.map_err(intake_error)?;
        }
    }
    Ok(Upload {
        received: upload.finish().await.map_err(intake_error)?,
        original_name: "upload".to_owned(),
        fields: BTreeMap::new(),
    })
}

/// A failed read of a request body as the client sees it, told from the types in the
/// error's chain (whichever layer or parser it passed through): 413 past the upload limit or
/// for a part's headers, 408 for a body that came too slowly, else 400 with `code`, saying
/// `what` happened.
fn body_error(
    error: &(dyn std::error::Error + 'static),
    too_large: impl FnOnce() -> ApiError,
    too_slow: impl FnOnce() -> ApiError,
    code: &'static str,
    what: &str,
) -> ApiError {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.is::<LengthLimitError>() {
            return too_large();
        }
        if current.is::<BodyTimeoutError>() {
            return too_slow();
        }
        if let Some(headers) = current.downcast_ref::<PartHeadersTooLarge>() {
            return ApiError::PayloadTooLarge(headers.to_string());
        }
        cause = current.source();
    }
    ApiError::BadRequest {
        code,
        message: format!("{what}: {error}"),
    }
}

/// What a client asked of the engine, as both doors take it: blank fields are absent, the
/// language code in lower case.
pub(crate) fn decode_options(
    language: Option<&str>,
    task: Task,
    prompt: Option<&str>,
    temperature: f32,
) -> DecodeOptions {
    fn present(text: Option<&str>) -> Option<&str> {
        text.map(str::trim).filter(|text| !text.is_empty())
    }
    DecodeOptions {
        language: present(language).map(str::to_ascii_lowercase),
        task,
        prompt: present(prompt).map(str::to_owned),
        temperature,
    }
}

/// Checks what a client asked of the engine before a byte of audio is kept: a language code,
/// a prompt that is a C string (whisper.cpp's), a language the engine transcribes (400
/// naming the ones it does), and translation only from an engine that translates.
pub(crate) fn check_options(
    engine: &dyn Transcriber,
    options: &DecodeOptions,
) -> Result<(), ApiError> {
    if let Some(language) = &options.language
        && !(2..=3).contains(&language.len())
    {
        return Err(ApiError::invalid_parameter(
            "language",
            "an ISO-639-1 code such as `en`",
        ));
    }
    if options
        .prompt
        .as_deref()
        .is_some_and(|prompt| prompt.contains('\0'))
    {
        return Err(ApiError::invalid_parameter(
            "prompt",
            "text without NUL characters",
        ));
    }
    if let Some(language) = &options.language
        && !engine.understands(language)
    {
        return Err(ApiError::invalid_parameter(
            "language",
            format!(
                "a language the {} engine transcribes ({}), not `{language}`",
                engine.name(),
                engine.languages().join(", ")
            ),
        ));
    }
    if options.task == Task::Translate && !engine.translates() {
        return Err(ApiError::invalid_parameter(
            "task",
            format!(
                "transcribe: the {} engine does not translate (engine.kind whisper does)",
                engine.name()
            ),
        ));
    }
    Ok(())
}

/// A stored upload: its session id and the job's events, subscribed
/// before the job existed so that none is missed.
pub(crate) struct Accepted {
    pub(crate) id: String,
    pub(crate) finished: broadcast::Receiver<Finished>,
    pub(crate) progress: broadcast::Receiver<Progress>,
}

/// Checks the audio, stores it under its hash, and stores the session with its job (one
/// transaction): once this returns, the upload is kept whatever happens to the request.
pub(crate) async fn accept(
    state: &AppState,
    jobs: &Jobs,
    caller: &Caller,
    upload: Upload,
    callback_url: Option<String>,
    options: DecodeOptions,
) -> Result<Accepted, ApiError> {
    let shared = &state.inner;
    let config = state.config();
    let Upload {
        received,
        original_name,
        ..
    } = upload;
    let path = received.path.clone();
    let limits = config.audio.clone();
    let inspected = tokio::task::spawn_blocking(move || decode::inspect(&path, &limits))
        .await
        .map_err(ApiError::internal)?;
    let info = match inspected {
        Ok(info) => info,
        Err(error) => {
            intake::discard(received).await;
            return Err(error.into());
        }
    };
    let (sha256, size) = (received.sha256.clone(), received.size);
    let audio_lock = shared.audio_locks.lock(&sha256).await;
    let filename = intake::keep(&config.server.data_dir, received)
        .await
        .map_err(|error| ApiError::internal(format!("storing the upload: {error}")))?;
    let id = uuid::Uuid::new_v4().to_string();
    let (finished, progress) = (jobs.subscribe(), jobs.subscribe_progress());
    let session = NewSession {
        id: id.clone(),
        owner: caller.0.identity.to_string(),
        filename,
        original_name,
        sha256,
        duration: info.duration,
        channels: info.channels,
        sample_rate: info.sample_rate,
        bits_per_sample: info.bits_per_sample,
        format: info.format.to_owned(),
        file_size: size,
        callback_url,
        priority: 0,
        options,
        created_at: SystemTime::now(),
    };
    shared
        .store
        .create_session(&session)
        .await
        .map_err(store_error)?;
    drop(audio_lock);
    jobs.notify();
    Ok(Accepted {
        id,
        finished,
        progress,
    })
}

/// The session once its job has ended (completed or failed), or `None` if `deadline` came
/// first (`None`: wait as long as it takes). This process's jobs say when they end; a job
/// another instance runs is noticed by looking at the store every second.
pub(crate) async fn finished(
    state: &AppState,
    id: &str,
    events: &mut broadcast::Receiver<Finished>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Option<SessionDetail>, ApiError> {
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let deadline = deadline.unwrap_or(far);
    let mut look = tokio::time::interval(Duration::from_secs(1));
    look.tick().await;
    loop {
        let check = tokio::select! {
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            event = events.recv() => match event {
                Ok(event) => event.session_id == id,
                // Missed events: look at the store.
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return Ok(None),
            },
            _ = look.tick() => true,
        };
        if check
            && let Some(detail) = state
                .inner
                .store
                .session(id, None)
                .await
                .map_err(store_error)?
            && matches!(
                detail.session.status,
                SessionStatus::Completed | SessionStatus::Failed
            )
        {
            return Ok(Some(detail));
        }
    }
}

/// What a job tells its uploader as it runs.
#[derive(Debug)]
pub(crate) enum JobEvent {
    /// The words of one utterance, as they are decoded.
    Words(String),
    /// The job ended: the session, completed or failed (`None`: no one will finish it).
    Ended(Result<Option<Box<SessionDetail>>, ApiError>),
}

/// The accepted job's events as a stream for a streamed response: its words as they are
/// decoded, then how it ended. Fed by a task of its own through a small channel; the task
/// stops when the client goes.
pub(crate) fn job_events(
    state: AppState,
    accepted: Accepted,
) -> impl futures_util::Stream<Item = JobEvent> + Send + 'static {
    let Accepted {
        id,
        finished: mut ends,
        mut progress,
    } = accepted;
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut done = std::pin::pin!(finished(&state, &id, &mut ends, None));
        loop {
            tokio::select! {
                biased;
                update = progress.recv() => match update {
                    Ok(update) if *update.session_id == *id => {
                        if sender.send(JobEvent::Words(update.text)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                ended = &mut done => {
                    let _ = sender.send(JobEvent::Ended(ended.map(|detail| detail.map(Box::new)))).await;
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_is_kept_without_control_characters_and_within_its_length() {
        assert_eq!(file_name(Some("memo.m4a")), "memo.m4a");
        assert_eq!(file_name(Some("a\r\nb\u{0}c\u{1b}[31m.wav")), "abc[31m.wav");
        assert_eq!(file_name(None), "upload");
        assert_eq!(file_name(Some("\t\n")), "upload");
        let long = "é".repeat(1_000);
        let kept = file_name(Some(&long));
        assert!(kept.len() <= MAX_FILE_NAME_BYTES && kept.len() >= MAX_FILE_NAME_BYTES - 1);
        assert!(kept.chars().all(|c| c == 'é'));
    }
}
