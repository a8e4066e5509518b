//! `/api/v1/transcribe` (user role): upload audio, list sessions, read one (through the
//! response cache: ETag, 304, `Cache-Control: private`), delete one. Users see their own
//! sessions only; admins see all.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::audio::decode;
use crate::audio::intake::{self, IntakeError, Received, Receiving};
use crate::config::Role;
use crate::http::{ApiError, Path, Principal, Query, RequireRole};
use crate::jobs::validate_callback;
use crate::session::{SessionSummary, SessionView};
use crate::state::AppState;
use crate::store::{ListQuery, NewSession, SessionStatus, StoreError};

pub(crate) fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let max_upload = state.config().audio.max_upload.as_usize();
    OpenApiRouter::new()
        .routes(
            routes!(upload)
                .layer::<_, Infallible>(DefaultBodyLimit::max(max_upload))
                .layer::<_, Infallible>(state.inner.uploads.clone()),
        )
        .routes(routes!(list))
        .routes(routes!(read, delete).layer::<_, Infallible>(state.inner.responses.clone()))
        .route_layer(RequireRole(Role::User))
}

/// The verified caller; 401 without one (the role layer runs first, so this is a guard).
pub(crate) struct Caller(pub(crate) Principal);

impl Caller {
    /// Whose sessions the caller may see: their own, or all for an admin.
    fn owner(&self) -> Option<&str> {
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

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Unavailable(reason) => ApiError::Unavailable {
            message: format!("storage is unavailable: {reason}"),
            retry_after: Duration::from_secs(5),
        },
        StoreError::Other(reason) => ApiError::internal(reason),
    }
}

/// Wait for the result, or answer 202 at once.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Wait up to `jobs.sync_wait` for the transcript (200), else 202.
    #[default]
    Sync,
    /// 202 with `Location` at once.
    Async,
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

/// Content types taken as a raw audio body.
fn is_audio(content_type: &str) -> bool {
    content_type.starts_with("audio/") || content_type.starts_with("application/octet-stream")
}

/// Reads the upload (a multipart field `audio` or `file`, or a raw audio body) into a
/// temporary file; the file name the client gave.
async fn receive(state: &AppState, request: Request) -> Result<(Received, String), ApiError> {
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
        IntakeError::Io(error) => ApiError::internal(format!("storing the upload: {error}")),
    };
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::BadRequest {
                code: "invalid_multipart",
                message: rejection.body_text(),
            })?;
        loop {
            let field = multipart.next_field().await.map_err(|error| {
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::BadRequest {
                        code: "invalid_multipart",
                        message: error.body_text(),
                    }
                }
            })?;
            let Some(mut field) = field else {
                return Err(ApiError::BadRequest {
                    code: "missing_file",
                    message: "no audio: send it in a multipart field named `audio` (or `file`)"
                        .to_owned(),
                });
            };
            if !matches!(field.name(), Some("audio" | "file")) {
                continue;
            }
            let name = field.file_name().unwrap_or("upload").to_owned();
            let mut upload = Receiving::start(data_dir, limit)
                .await
                .map_err(intake_error)?;
            loop {
                let chunk = field.chunk().await.map_err(|error| {
                    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large()
                    } else {
                        ApiError::BadRequest {
                            code: "invalid_multipart",
                            message: error.body_text(),
                        }
                    }
                })?;
                match chunk {
                    Some(chunk) => upload.write(&chunk).await.map_err(intake_error)?,
                    None => break,
                }
            }
            return Ok((upload.finish().await.map_err(intake_error)?, name));
        }
    }
    if !is_audio(&content_type) {
        return Err(ApiError::UnsupportedMediaType(
            "send the audio as multipart/form-data (field `audio`) or as a raw body with an audio/* content type".to_owned(),
        ));
    }
    let mut upload = Receiving::start(data_dir, limit)
        .await
        .map_err(intake_error)?;
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            let limited = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
                || error.to_string().contains("length limit");
            if limited {
                too_large()
            } else {
                ApiError::BadRequest {
                    code: "invalid_body",
                    message: format!("the upload was cut off: {error}"),
                }
            }
        })?;
        if let Ok(data) = frame.into_data() {
            upload.write(&data).await.map_err(intake_error)?;
        }
    }
    Ok((
        upload.finish().await.map_err(intake_error)?,
        "upload".to_owned(),
    ))
}

/// Upload audio to transcribe.
#[utoipa::path(post, path = "/api/v1/transcribe", tag = "transcription",
    security(("bearer" = [])), params(UploadQuery),
    request_body(description = "multipart/form-data with the field `audio` (or `file`), or a raw audio body (audio/wav, audio/flac, audio/mpeg, audio/ogg)", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Transcribed within the sync wait", body = SessionView),
        (status = 202, description = "Stored; transcription under way", body = Accepted),
        (status = 400, description = "No file, or damaged audio"),
        (status = 413, description = "Larger than audio.max_upload"),
        (status = 415, description = "Not an audio format the server decodes"),
        (status = 422, description = "Outside the limits (1 s to 30 min, 1 or 2 channels, 8 to 48 kHz)"),
        (status = 503, description = "No speech engine, or memory above the limit"),
    ))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let shared = &state.inner;
    let config = state.config();
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
    if let Some(url) = &query.callback_url {
        validate_callback(
            url,
            &config.jobs.callback_hosts,
            config.jobs.callback_secret.as_ref(),
        )?;
    }
    let (received, original_name) = receive(&state, request).await?;
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
    // Subscribed before the job exists, so its end cannot be missed.
    let mut finished = jobs.subscribe();
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
        callback_url: query.callback_url.clone(),
        priority: 0,
        created_at: SystemTime::now(),
    };
    shared
        .store
        .create_session(&session)
        .await
        .map_err(store_error)?;
    drop(audio_lock);
    jobs.notify();
    let location = format!("/api/v1/transcribe/{id}");
    if matches!(query.mode, Mode::Sync) {
        let deadline = tokio::time::Instant::now() + config.jobs.sync_wait;
        loop {
            let event = tokio::time::timeout_at(deadline, finished.recv()).await;
            let done = match event {
                Err(_) => break,
                Ok(Ok(event)) => event.session_id == id,
                Ok(Err(RecvError::Lagged(_))) => true,
                Ok(Err(RecvError::Closed)) => break,
            };
            if done
                && let Some(detail) = shared.store.session(&id, None).await.map_err(store_error)?
                && matches!(
                    detail.session.status,
                    SessionStatus::Completed | SessionStatus::Failed
                )
            {
                let deliveries = Vec::new();
                return Ok(Json(SessionView::new(detail, deliveries)).into_response());
            }
        }
    }
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
    let store = &state.inner.store;
    let detail = store
        .session(id, caller.owner())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
    let finished = matches!(
        detail.session.status,
        SessionStatus::Completed | SessionStatus::Failed
    );
    let deliveries = if detail.session.callback_url.is_some() {
        store.deliveries(id).await.map_err(store_error)?
    } else {
        Vec::new()
    };
    // A finished session changes only by deletion, which drops the cached copy; one still
    // being transcribed must not be kept.
    let cache_control = if finished {
        "private, max-age=300"
    } else {
        "no-store"
    };
    Ok((
        [(CACHE_CONTROL, cache_control)],
        Json(SessionView::new(detail, deliveries)),
    )
        .into_response())
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
    /// Whether the audio file went too (not when another session has the same audio).
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
    ))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let id = session_id(&id)?;
    let store = &state.inner.store;
    let not_found = || ApiError::NotFound(format!("no session {id}"));
    let sha256 = store
        .session(id, caller.owner())
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?
        .session
        .sha256;
    let _audio_lock = state.inner.audio_locks.lock(&sha256).await;
    let deleted = store
        .delete_session(id, caller.owner())
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let audio_deleted = !deleted.audio_in_use;
    if audio_deleted {
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
    Ok(Json(Deleted {
        session_id: id.to_owned(),
        audio_deleted,
    }))
}
