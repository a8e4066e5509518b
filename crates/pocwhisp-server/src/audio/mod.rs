//! Audio: an upload streamed to disk while hashed ([`intake`]), its container told by its
//! bytes and its declared sizes checked (`container`), decoded by symphonia (Opus by
//! libopus, `opus`) and checked against the limits ([`decode`]), and resampled to the
//! engine's 16 kHz by rubato ([`resample`]).

mod container;
pub mod decode;
pub mod intake;
mod opus;
pub mod resample;

use std::fmt;

/// Why an upload is not audio the server can use. Each maps to the status and code of the
/// original API: 415 `invalid_file_type`, 400 `invalid_audio`, 422 `audio_constraints`, and
/// 413 `file_too_large` for audio longer than `audio.max_duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioError {
    /// Not a format the server decodes.
    Unsupported(String),
    /// A supported format, but broken: truncated, lying headers, undecodable data.
    Invalid(String),
    /// Decodable, but outside the limits (too short, channels, sample rate).
    Constraints(String),
    /// Longer than `audio.max_duration`: too large a request for this server.
    TooLong(String),
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioError::Unsupported(reason)
            | AudioError::Invalid(reason)
            | AudioError::Constraints(reason)
            | AudioError::TooLong(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for AudioError {}

impl From<AudioError> for crate::http::ApiError {
    fn from(error: AudioError) -> Self {
        match error {
            AudioError::Unsupported(message) => {
                crate::http::ApiError::UnsupportedMediaType(message)
            }
            AudioError::Invalid(message) => crate::http::ApiError::BadRequest {
                code: "invalid_audio",
                message,
            },
            AudioError::Constraints(message) => crate::http::ApiError::Unprocessable {
                code: "audio_constraints",
                message,
            },
            AudioError::TooLong(message) => crate::http::ApiError::PayloadTooLarge(message),
        }
    }
}
