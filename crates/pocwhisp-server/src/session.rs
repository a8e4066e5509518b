//! A session as the API shows it: the original PocWhisp's response shape, used by the
//! routes and by callbacks alike.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{Delivery, Segment, Session, SessionDetail, SessionStatus, Summary, rfc3339};

/// A session with its transcript.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// The session id.
    pub session_id: String,
    /// `queued`, `processing`, `completed` or `failed`.
    pub status: SessionStatus,
    /// The file name the client gave.
    pub original_name: String,
    /// When it was accepted, RFC 3339.
    pub created_at: String,
    /// When it was transcribed (or failed for good), RFC 3339.
    pub processed_at: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The segments, once transcribed.
    pub transcript: Option<TranscriptView>,
    /// The summary, once transcribed.
    pub summary: Option<Summary>,
    /// The audio and its processing.
    pub metadata: Metadata,
    /// Callback deliveries, when a callback was asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// The transcript.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TranscriptView {
    /// In time order; stereo channels are the speakers `left` and `right`.
    pub segments: Vec<Segment>,
}

/// The audio and its processing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Metadata {
    /// Seconds.
    pub duration: f64,
    /// 1 or 2.
    pub channels: u16,
    /// Hz of the upload.
    pub sample_rate: u32,
    /// Of the upload; 0 for lossy formats.
    pub bits_per_sample: u16,
    /// `wav`, `flac`, `mp3` or `ogg`.
    pub format: String,
    /// Bytes uploaded.
    pub file_size: u64,
    /// SHA-256 of the upload.
    pub sha256: String,
    /// Seconds the transcription took.
    pub processing_time: Option<f64>,
    /// The engine that transcribed it.
    pub engine: Option<String>,
    /// The engine's model.
    pub model: Option<String>,
    /// The language of the transcript (ISO-639-1): the one asked for, or the one detected.
    pub language: Option<String>,
    /// `transcribe`, or `translate` (into English).
    #[schema(value_type = String)]
    pub task: crate::engine::Task,
}

/// A session in a listing: no transcript.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionSummary {
    /// The session id.
    pub session_id: String,
    /// Its status.
    pub status: SessionStatus,
    /// The file name the client gave.
    pub original_name: String,
    /// Seconds of audio.
    pub duration: f64,
    /// When it was accepted, RFC 3339.
    pub created_at: String,
    /// When it was transcribed, RFC 3339.
    pub processed_at: Option<String>,
}

impl From<&Session> for Metadata {
    fn from(session: &Session) -> Self {
        Metadata {
            duration: session.duration,
            channels: session.channels,
            sample_rate: session.sample_rate,
            bits_per_sample: session.bits_per_sample,
            format: session.format.clone(),
            file_size: session.file_size,
            sha256: session.sha256.clone(),
            processing_time: session.processing_time,
            engine: session.engine.clone(),
            model: session.model.clone(),
            language: session.language.clone(),
            task: session.options.task,
        }
    }
}

impl SessionView {
    /// The view of `detail` with its callback `deliveries`.
    pub fn new(detail: SessionDetail, deliveries: Vec<Delivery>) -> Self {
        let session = detail.session;
        let transcribed = session.status == SessionStatus::Completed;
        SessionView {
            session_id: session.id.clone(),
            status: session.status,
            original_name: session.original_name.clone(),
            created_at: rfc3339(session.created_at),
            processed_at: session.processed_at.map(rfc3339),
            error: session.error_message.clone(),
            transcript: transcribed.then_some(TranscriptView {
                segments: detail.segments,
            }),
            summary: detail.summary,
            metadata: Metadata::from(&session),
            deliveries,
        }
    }
}

impl From<&Session> for SessionSummary {
    fn from(session: &Session) -> Self {
        SessionSummary {
            session_id: session.id.clone(),
            status: session.status,
            original_name: session.original_name.clone(),
            duration: session.duration,
            created_at: rfc3339(session.created_at),
            processed_at: session.processed_at.map(rfc3339),
        }
    }
}
