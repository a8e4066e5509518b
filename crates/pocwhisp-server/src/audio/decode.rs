//! Decoding with symphonia: WAV (any chunk layout; PCM 8, 16, 24 and 32-bit, float), FLAC,
//! MP3 and Ogg Vorbis, one or two channels, 8 to 48 kHz. The format is told by the bytes,
//! not the name or content type a client gave.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CODEC_TYPE_FLAC, CODEC_TYPE_MP3, CODEC_TYPE_NULL, CODEC_TYPE_VORBIS, CodecType, DecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AudioError;
use crate::config::AudioConfig;

/// The slowest and fastest sample rates accepted.
/// The file formats decoded here, named as OpenAI's transcription API names them.
pub(crate) const FILE_FORMATS: &[&str] = &["flac", "mp3", "ogg", "wav"];

const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 48_000;

/// What an upload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// `wav`, `flac`, `mp3` or `ogg`.
    pub format: &'static str,
    /// Hz.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// Bits per sample of the source; 0 for lossy formats.
    pub bits_per_sample: u16,
    /// Seconds of audio, counted from the decoded samples.
    pub duration: f64,
}

/// Decoded audio: one vector of samples in `[-1, 1]` per channel.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// What it is.
    pub info: AudioInfo,
    /// The samples, per channel.
    pub channels: Vec<Vec<f32>>,
}

fn format_of(codec: CodecType) -> Option<&'static str> {
    match codec {
        CODEC_TYPE_FLAC => Some("flac"),
        CODEC_TYPE_MP3 => Some("mp3"),
        CODEC_TYPE_VORBIS => Some("ogg"),
        codec => symphonia::default::get_codecs()
            .get_codec(codec)
            .filter(|descriptor| descriptor.short_name.starts_with("pcm"))
            .map(|_| "wav"),
    }
}

/// The container the first bytes announce, if any the server reads: told apart from
/// symphonia's verdict so that a damaged WAV is "damaged", not "not audio".
fn container_of(head: &[u8]) -> Option<&'static str> {
    match head {
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'A',
            b'V',
            b'E',
            ..,
        ] => Some("WAV"),
        [b'f', b'L', b'a', b'C', ..] => Some("FLAC"),
        [b'O', b'g', b'g', b'S', ..] => Some("Ogg"),
        [b'I', b'D', b'3', ..] => Some("MP3"),
        [0xFF, second, ..] if second & 0xE0 == 0xE0 => Some("MP3"),
        _ => None,
    }
}

/// Reads the audio in `path` to the end: checks that it decodes and fits `limits`, and
/// hands each block of samples (per channel) to `sink`. Hostile headers can make a
/// decoder panic (a zero sample rate does in symphonia 0.5): that is a damaged file too.
fn read(
    path: &Path,
    limits: &AudioConfig,
    sink: impl FnMut(&[f32], usize),
) -> Result<AudioInfo, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_checked(path, limits, sink)
    }))
    .unwrap_or_else(|_| {
        Err(AudioError::Invalid(
            "the audio headers contradict each other; the decoder cannot read them".to_owned(),
        ))
    })
}

fn read_checked(
    path: &Path,
    limits: &AudioConfig,
    mut sink: impl FnMut(&[f32], usize),
) -> Result<AudioInfo, AudioError> {
    let mut file = File::open(path)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    let mut head = [0u8; 12];
    let read = std::io::Read::read(&mut file, &mut head)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    if read == 0 {
        return Err(AudioError::Invalid("the upload is empty".to_owned()));
    }
    let container = container_of(&head[..read]);
    std::io::Seek::rewind(&mut file)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|error| match (container, error) {
            (None, _) => AudioError::Unsupported(
                "not a recognised audio format: send WAV, FLAC, MP3 or Ogg Vorbis".to_owned(),
            ),
            // symphonia also says "unsupported" of a missing chunk: only an encoding it
            // names as unsupported is one.
            (Some(name), SymphoniaError::Unsupported(what)) if what.contains("unsupported") => AudioError::Unsupported(format!(
                "this {name} file uses an encoding the server does not decode ({what}): send PCM or float WAV, FLAC, MP3 or Ogg Vorbis"
            )),
            (Some(name), error) => {
                AudioError::Invalid(format!("the {name} file is damaged: {error}"))
            }
        })?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Invalid("the file holds no audio track".to_owned()))?
        .clone();
    let params = &track.codec_params;
    let format = format_of(params.codec).ok_or_else(|| {
        AudioError::Unsupported(
            "this codec is not supported: send PCM WAV, FLAC, MP3 or Ogg Vorbis".to_owned(),
        )
    })?;
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| AudioError::Invalid("the file does not say its sample rate".to_owned()))?;
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(AudioError::Constraints(format!(
            "the sample rate is {sample_rate} Hz; accepted: {MIN_RATE} to {MAX_RATE} Hz"
        )));
    }
    let channels = params.channels.map_or(0, |channels| channels.count());
    if channels == 0 || channels > usize::from(limits.max_channels) {
        return Err(AudioError::Constraints(format!(
            "the audio has {channels} channels; accepted: 1 to {}",
            limits.max_channels
        )));
    }
    let max_frames = (limits.max_duration.as_secs_f64() * f64::from(sample_rate)) as u64;
    if params
        .n_frames
        .is_some_and(|frames| frames > max_frames.saturating_mul(2))
    {
        // A header claiming far more than the limit: say so before decoding it all.
        return Err(AudioError::TooLong(too_long(limits.max_duration)));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|error| AudioError::Unsupported(format!("cannot decode this audio: {error}")))?;
    let mut frames: u64 = 0;
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(error)) if error.kind() == ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(error) => {
                return Err(AudioError::Invalid(format!(
                    "the audio data is damaged: {error}"
                )));
            }
        };
        if packet.track_id() != track.id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // One damaged packet in a lossy stream is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) if format != "wav" => continue,
            Err(error) => {
                return Err(AudioError::Invalid(format!(
                    "the audio data is damaged: {error}"
                )));
            }
        };
        let spec = *decoded.spec();
        if spec.channels.count() != channels {
            return Err(AudioError::Invalid(
                "the number of channels changes within the file".to_owned(),
            ));
        }
        let capacity = decoded.capacity() as u64;
        let samples = buffer.get_or_insert_with(|| SampleBuffer::new(capacity, spec));
        if samples.capacity() < decoded.capacity() * channels {
            *samples = SampleBuffer::new(capacity, spec);
        }
        samples.copy_planar_ref(decoded);
        let block = samples.samples();
        let per_channel = block.len() / channels;
        frames += per_channel as u64;
        if frames > max_frames {
            return Err(AudioError::TooLong(too_long(limits.max_duration)));
        }
        sink(block, per_channel);
    }
    let duration = frames as f64 / f64::from(sample_rate);
    if frames == 0 {
        return Err(AudioError::Invalid(
            "the file holds no audio samples".to_owned(),
        ));
    }
    if duration < limits.min_duration.as_secs_f64() {
        return Err(AudioError::Constraints(format!(
            "the audio lasts {duration:.2} s; the shortest accepted is {:?}",
            limits.min_duration
        )));
    }
    Ok(AudioInfo {
        format,
        sample_rate,
        channels: channels as u16,
        bits_per_sample: if format == "wav" || format == "flac" {
            params.bits_per_sample.map_or(0, |bits| bits as u16)
        } else {
            0
        },
        duration,
    })
}

fn too_long(limit: Duration) -> String {
    format!(
        "the audio is longer than the {} minutes accepted",
        limit.as_secs() / 60
    )
}

/// Checks `path` from end to end without keeping the samples: what it is, and that it
/// decodes within the limits.
///
/// # Errors
///
/// An [`AudioError`] saying what is wrong.
pub fn inspect(path: &Path, limits: &AudioConfig) -> Result<AudioInfo, AudioError> {
    read(path, limits, |_, _| {})
}

/// Decodes `path` into one sample vector per channel.
///
/// # Errors
///
/// An [`AudioError`] saying what is wrong.
pub fn decode(path: &Path, limits: &AudioConfig) -> Result<Decoded, AudioError> {
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let info = read(path, limits, |block, per_channel| {
        let count = block.len() / per_channel.max(1);
        if channels.len() < count {
            channels.resize_with(count, Vec::new);
        }
        for (channel, samples) in channels.iter_mut().zip(block.chunks(per_channel.max(1))) {
            channel.extend_from_slice(samples);
        }
    })?;
    Ok(Decoded { info, channels })
}
