//! `/api/v1/transcribe` (user role): upload audio, list sessions, read one (through the
//! response cache: ETag, 304, `Cache-Control: private`), delete one. Users see their own
//! sessions only; admins see all.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{CACHE_CONTROL, LOCATION};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::upload::{self, Caller, JobEvent, store_error};
use crate::engine::Task;
use crate::http::{ApiError, Path, Query};
use crate::jobs::validate_callback;
use crate::redis::{decode_session, encode_session};
use crate::session::{SessionSummary, SessionView};
use crate::state::AppState;
use crate::store::{ListQuery, SessionDetail, SessionStatus};
use crate::subtitles;

pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload).layer::<_, Infallible>(state.inner.uploads.clone()))
        .routes(routes!(list))
        .routes(routes!(transcript))
        .routes(routes!(read, delete).layer::<_, Infallible>(state.inner.responses.clone()))
}

/// Wait for the result, answer 202 at once, or stream the job's events.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Wait up to `jobs.sync_wait` for the transcript (200), else 202.
    #[default]
    Sync,
    /// 202 with `Location` at once.
    Async,
    /// 200 with `text/event-stream`: `accepted` (the session id, once stored), `words` per
    /// utterance as it is decoded, then `completed` (the session) or `failed` (why).
    Stream,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct UploadQuery {
    /// `sync` (default) or `async`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    mode: Mode,
    /// Where to POST the result when the job ends (hosts allowed by the configuration only).
    callback_url: Option<String>,
    /// The language spoken (ISO-639-1, `en`); detected when absent.
    language: Option<String>,
    /// `transcribe` (default) or `translate` (into English; Whisper only).
    #[serde(default)]
    #[param(value_type = Option<String>)]
    task: Task,
    /// Text that came before, to steer spelling and style (Whisper only).
    prompt: Option<String>,
}

/// An accepted upload still being transcribed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The session id.
    session_id: String,
    /// `queued` or `processing`.
    status: SessionStatus,
    /// Where to read it.
    location: String,
}

/// Upload audio to transcribe.
#[utoipa::path(post, path = "/api/v1/transcribe", tag = "transcription",
    security(("bearer" = [])), params(UploadQuery),
    request_body(description = "multipart/form-data with the field `audio` (or `file`), or a raw body sent as audio/* or video/* (WAV, FLAC, MP3, M4A/MP4, Ogg, WebM: told by the bytes)", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Transcribed within the sync wait (the session), or mode=stream's text/event-stream", body = SessionView),
        (status = 202, description = "Stored; transcription under way", body = Accepted),
        (status = 400, description = "No file, or damaged audio"),
        (status = 408, description = "The body came too slowly (server.body_read_timeout, server.min_body_rate)"),
        (status = 413, description = "Larger than audio.max_upload, or a form part's headers over 8 KiB"),
        (status = 415, description = "Not an audio format the server decodes"),
        (status = 422, description = "Outside the limits (1 s to 30 min, 1 to 8 channels, 8 to 48 kHz)"),
        (status = 503, description = "No speech engine, or memory above the limit"),
        (status = 507, description = "The disk is full: nothing was stored"),
    ))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let config = state.config();
    let jobs = upload::accepting(&state)?;
    upload::within_unfinished_limit(&state, &caller).await?;
    let options = upload::decode_options(
        query.language.as_deref(),
        query.task,
        query.prompt.as_deref(),
        0.0,
    );
    upload::check_options(jobs.engine(), &options)?;
    if let Some(url) = &query.callback_url {
        validate_callback(
            url,
            &config.jobs.callback_hosts,
            config.jobs.callback_secret.as_ref(),
        )?;
    }
    let received = upload::receive(&state, request, &["audio", "file"], || {
        ApiError::BadRequest {
            code: "missing_file",
            message: "no audio: send it in a multipart field named `audio` (or `file`)".to_owned(),
        }
    })
    .await?;
    let mut accepted =
        upload::accept(&state, jobs, &caller, received, query.callback_url, options).await?;
    if matches!(query.mode, Mode::Stream) {
        return Ok(stream(state, accepted).into_response());
    }
    let id = accepted.id;
    if matches!(query.mode, Mode::Sync) {
        let deadline = tokio::time::Instant::now() + config.jobs.sync_wait;
        if let Some(detail) =
            upload::finished(&state, &id, &mut accepted.finished, Some(deadline)).await?
        {
            return Ok(Json(SessionView::new(detail, Vec::new())).into_response());
        }
    }
    let location = format!("/api/v1/transcribe/{id}");
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, location.clone())],
        Json(Accepted {
            session_id: id,
            status: SessionStatus::Queued,
            location,
        }),
    )
        .into_response())
}

/// The job's events for `mode=stream`, each a JSON object.
fn stream(state: AppState, accepted: upload::Accepted) -> impl IntoResponse {
    let id = accepted.id.clone();
    let accepted_event = Event::default().event("accepted").data(
        serde_json::json!({"session_id": id, "location": format!("/api/v1/transcribe/{id}")})
            .to_string(),
    );
    let events = upload::job_events(state, accepted).map(|event| {
        let event = match event {
            JobEvent::Words(text) => Event::default()
                .event("words")
                .data(serde_json::json!({ "text": text }).to_string()),
            JobEvent::Ended(Ok(Some(detail)))
                if detail.session.status == SessionStatus::Completed =>
            {
                let view = SessionView::new(*detail, Vec::new());
                Event::default()
                    .event("completed")
                    .data(serde_json::to_string(&view).unwrap_or_default())
            }
            JobEvent::Ended(Ok(Some(detail))) => Event::default().event("failed").data(
                serde_json::json!({ "message": detail.session.error_message.unwrap_or_default() })
                    .to_string(),
            ),
            JobEvent::Ended(_) => Event::default().event("failed").data(
                serde_json::json!({ "message": "the transcription did not finish" }).to_string(),
            ),
        };
        Ok::<_, Infallible>(event)
    });
    Sse::new(futures_util::stream::once(async { Ok(accepted_event) }).chain(events))
        .keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    /// Sessions per page, 1 to 100 (default 20).
    limit: Option<u32>,
    /// Sessions to skip, newest first (default 0).
    offset: Option<u64>,
    /// Only sessions in this state: `queued`, `processing`, `completed`, `failed`.
    #[param(value_type = Option<String>)]
    status: Option<StatusFilter>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StatusFilter {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl From<StatusFilter> for SessionStatus {
    fn from(filter: StatusFilter) -> Self {
        match filter {
            StatusFilter::Queued => SessionStatus::Queued,
            StatusFilter::Processing => SessionStatus::Processing,
            StatusFilter::Completed => SessionStatus::Completed,
            StatusFilter::Failed => SessionStatus::Failed,
        }
    }
}

/// A page of sessions.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionPage {
    /// Newest first.
    sessions: Vec<SessionSummary>,
    /// Where this page is in the whole.
    pagination: Pagination,
}

/// Where a page is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pagination {
    limit: u32,
    offset: u64,
    /// Every session the query matches.
    total: u64,
}

/// The caller's sessions (an admin's: everyone's), newest first.
#[utoipa::path(get, path = "/api/v1/transcribe", tag = "transcription",
    security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, description = "A page and the real total", body = SessionPage),
        (status = 400, description = "A limit, offset or status out of range"),
    ))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_parameter(
            "limit",
            "a whole number from 1 to 100",
        ));
    }
    let offset = params.offset.unwrap_or(0);
    let query = ListQuery {
        owner: caller.owner().map(str::to_owned),
        status: params.status.map(SessionStatus::from),
        limit,
        offset,
    };
    let page = state
        .inner
        .store
        .list_sessions(&query)
        .await
        .map_err(store_error)?;
    Ok(Json(SessionPage {
        sessions: page.sessions.iter().map(SessionSummary::from).collect(),
        pagination: Pagination {
            limit,
            offset,
            total: page.total,
        },
    }))
}

fn session_id(id: &str) -> Result<&str, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| id)
        .map_err(|_| ApiError::invalid_parameter("id", "a session id (a UUID)"))
}

/// The session `id` if the caller may see it (its owner, or an admin), else 404: the same
/// answer for another user's session as for none, so ids are not confirmed.
async fn own_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<SessionDetail, ApiError> {
    state
        .inner
        .store
        .session(id, caller.owner())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))
}

/// One session with its transcript and summary.
#[utoipa::path(get, path = "/api/v1/transcribe/{id}", tag = "transcription",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session; ETag and Cache-Control: private", body = SessionView),
        (status = 304, description = "The copy named in If-None-Match is current"),
        (status = 404, description = "No such session of the caller's"),
    ))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Result<Response, ApiError> {
    let id = session_id(&id)?;
    remember_host(&state, headers.get(http::header::HOST));
    let redis = state.inner.redis.as_deref();
    // A finished session another instance (or this one) read: no store read.
    if let Some(redis) = redis
        && let Some(cached) = redis.sessions.get(id).await
        && let Some((owner, json)) = decode_session(&cached)
    {
        // The store's rule: a caller sees its own sessions, an admin every one.
        if caller.owner().is_some_and(|caller| caller != owner) {
            return Err(ApiError::NotFound(format!("no session {id}")));
        }
        return Ok(session_response(FINISHED_CACHE_CONTROL, json));
    }
    let store = &state.inner.store;
    let detail = own_session(&state, &caller, id).await?;
    let finished = matches!(
        detail.session.status,
        SessionStatus::Completed | SessionStatus::Failed
    );
    let deliveries = if detail.session.callback_url.is_some() {
        store.deliveries(id).await.map_err(store_error)?
    } else {
        Vec::new()
    };
    let owner = detail.session.owner.clone();
    let json = Bytes::from(
        serde_json::to_vec(&SessionView::new(detail, deliveries)).map_err(ApiError::internal)?,
    );
    // A finished session changes only by deletion, which drops the cached copies; one still
    // being transcribed must not be kept.
    if !finished {
        return Ok(session_response("no-store", json));
    }
    if let Some(redis) = redis {
        redis
            .sessions
            .insert(id, encode_session(&owner, &json))
            .await;
    }
    Ok(session_response(FINISHED_CACHE_CONTROL, json))
}

/// What a transcript download is rendered as.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TranscriptFormat {
    #[default]
    Txt,
    Srt,
    Vtt,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TranscriptParams {
    /// `txt` (default), `srt` or `vtt`.
    #[param(value_type = Option<String>)]
    #[serde(default)]
    format: TranscriptFormat,
}

/// A finished session's transcript as a file to save: plain text, SRT or WebVTT subtitles.
#[utoipa::path(get, path = "/api/v1/transcribe/{id}/transcript", tag = "transcription",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id"), TranscriptParams),
    responses(
        (status = 200, description = "text/plain, application/x-subrip or text/vtt, as an attachment named after the upload"),
        (status = 404, description = "No such session of the caller's"),
        (status = 409, description = "Not transcribed yet"),
        (status = 422, description = "The transcription failed"),
    ))]
async fn transcript(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(params): Query<TranscriptParams>,
) -> Result<Response, ApiError> {
    let id = session_id(&id)?;
    let detail = own_session(&state, &caller, id).await?;
    match detail.session.status {
        SessionStatus::Completed => {}
        SessionStatus::Failed => {
            return Err(ApiError::Unprocessable {
                code: "transcription_failed",
                message: detail
                    .session
                    .error_message
                    .unwrap_or_else(|| "the transcription failed".to_owned()),
            });
        }
        _ => {
            return Err(ApiError::Conflict(format!(
                "session {id} is not transcribed yet"
            )));
        }
    }
    let segments = &detail.segments;
    let (body, content_type, extension) = match params.format {
        TranscriptFormat::Txt => (
            format!("{}\n", subtitles::text(segments)),
            "text/plain; charset=utf-8",
            "txt",
        ),
        TranscriptFormat::Srt => (
            subtitles::srt(segments),
            "application/x-subrip; charset=utf-8",
            "srt",
        ),
        TranscriptFormat::Vtt => (subtitles::vtt(segments), "text/vtt; charset=utf-8", "vtt"),
    };
    Ok((
        [
            (http::header::CONTENT_TYPE, content_type.to_owned()),
            (CACHE_CONTROL, "private, no-store".to_owned()),
            (
                http::header::CONTENT_DISPOSITION,
                attachment(&detail.session.original_name, extension),
            ),
        ],
        body,
    )
        .into_response())
}

/// `Content-Disposition` for a download named after the upload (`memo.m4a` gives
/// `memo.srt`): the name's stem kept to letters, digits, `-`, `_` and `.`, so that nothing a
/// client named its file can break the header.
fn attachment(original_name: &str, extension: &str) -> String {
    let stem = std::path::Path::new(original_name)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    let safe: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(100)
        .collect();
    let stem = if safe.is_empty() { "transcript" } else { &safe };
    format!("attachment; filename=\"{stem}.{extension}\"")
}

/// How long a client (and the response cache) may keep a finished session.
const FINISHED_CACHE_CONTROL: &str = "private, max-age=300";

fn session_response(cache_control: &'static str, json: Bytes) -> Response {
    (
        [
            (CACHE_CONTROL, cache_control),
            (http::header::CONTENT_TYPE, "application/json"),
        ],
        json,
    )
        .into_response()
}

/// Notes the `Host` a session was read under, for the warm-up (read locks only, unless it
/// changed).
fn remember_host(state: &AppState, host: Option<&http::HeaderValue>) {
    let Some(host) = host else { return };
    let known = &state.inner.read_host;
    if perf_core::sync::read(known).as_ref() != Some(host) {
        *perf_core::sync::write(known) = Some(host.clone());
    }
}

/// What a delete removed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// The session id.
    session_id: String,
    /// Whether the audio is gone: for a user, false only while another of their own sessions
    /// has the same audio (another user's upload of it is not theirs to know); for an admin,
    /// whether the file itself went.
    audio_deleted: bool,
}

/// Deletes a session, its transcript, its audio (unless another session has the same
/// audio) and its cached copies; a job still running for it is cancelled.
#[utoipa::path(delete, path = "/api/v1/transcribe/{id}", tag = "transcription",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such session of the caller's"),
        (status = 507, description = "The disk is full and its reserve already used"),
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = session_id(&id)?;
    let store = &state.inner.store;
    let not_found = || ApiError::NotFound(format!("no session {id}"));
    let sha256 = own_session(&state, &caller, id).await?.session.sha256;
    let _audio_lock = state.inner.audio_locks.lock(&sha256).await;
    let deleted = store
        .delete_session(id, caller.owner())
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if !deleted.audio_in_use {
        let path = state.config().server.data_dir.join(&deleted.filename);
        if let Err(error) = tokio::fs::remove_file(&path).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %path.display(), "removing deleted audio failed");
        }
    }
    state
        .inner
        .responses
        .invalidate_path(&format!("/api/v1/transcribe/{id}"));
    if let Some(redis) = &state.inner.redis {
        // Every instance drops its copies when it hears of it (`Redis::follow_invalidations`).
        redis.sessions.invalidate(id).await;
    }
    Ok(Json(Deleted {
        session_id: id.to_owned(),
        audio_deleted: match caller.owner() {
            Some(_) => !deleted.audio_kept_for_owner,
            None => !deleted.audio_in_use,
        },
    }))
}
