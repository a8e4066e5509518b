//! Decoding with symphonia: WAV (any chunk layout; PCM 8, 16, 24 and 32-bit, float), FLAC,
//! MP3, AAC in MP4 (M4A), Ogg Vorbis, and Opus in Ogg or WebM (by libopus, `audio/opus.rs`),
//! 8 to 48 kHz. The format is told by the bytes, not the name or content type a client gave.
//!
//! Channels up to `audio.max_channels` (1 or 2) stay apart: two channels are two speakers.
//! More (surround, a multitrack recorder's 4 to 8) are one scene, not one speaker each:
//! they are mixed down to one channel, their mean, as they are decoded.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CODEC_TYPE_AAC, CODEC_TYPE_FLAC, CODEC_TYPE_MP3, CODEC_TYPE_NULL, CODEC_TYPE_OPUS,
    CodecParameters, CodecType, DecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AudioError;
use super::container::Container;
use super::opus::{self, MAX_CHANNELS};
use super::resample::ToEngineRate;
use crate::config::AudioConfig;
use crate::memory::{MemoryShort, Reservation};

/// The file formats decoded here, named as OpenAI's transcription API names them (`mpeg` and
/// `mpga` are MP3; `m4a` and `mp4` are AAC in an MP4 container; `oga` is Ogg).
pub(crate) const FILE_FORMATS: &[&str] = &[
    "flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm",
];

/// What the refusals name as accepted.
const ACCEPTED: &str = "WAV, FLAC, MP3, M4A/MP4 (AAC), Ogg (Vorbis or Opus) or WebM (Opus)";

/// The slowest and fastest sample rates accepted.
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 48_000;

/// What an upload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The container: `wav`, `flac`, `mp3`, `m4a` (MP4, audio or video), `ogg` or `webm`
    /// (WebM or Matroska).
    pub format: &'static str,
    /// Hz.
    pub sample_rate: u32,
    /// The file's channels, 1 to 8 (more than `audio.max_channels` are decoded as one).
    pub channels: u16,
    /// Bits per sample of the source; 0 for lossy formats.
    pub bits_per_sample: u16,
    /// Seconds of audio, counted from the decoded samples.
    pub duration: f64,
}

/// Decoded audio at the engine's rate: one vector of 16-bit samples per channel.
#[derive(Debug, Clone)]
pub struct EngineAudio {
    /// What it is.
    pub info: AudioInfo,
    /// The samples at [`ENGINE_RATE`](super::resample::ENGINE_RATE), per channel.
    pub channels: Vec<Vec<i16>>,
}

/// Why [`decode_for_engine`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    /// The audio is not usable.
    Audio(AudioError),
    /// Its samples would take the process over `memory.limit`.
    Memory(MemoryShort),
}

/// The format's name: the container's, or for a stream without one (MP3, or FLAC after
/// junk), the codec's; `None` for a codec decoded nowhere here.
fn format_of(container: Option<Container>, codec: CodecType) -> Option<&'static str> {
    opus::codecs().get_codec(codec)?;
    match (container, codec) {
        (Some(container), _) => Some(container.format()),
        (None, CODEC_TYPE_MP3) => Some("mp3"),
        (None, CODEC_TYPE_FLAC) => Some("flac"),
        (None, CODEC_TYPE_AAC) => Some("aac"),
        (None, _) => Some("wav"),
    }
}

/// What [`read`] hands each block of samples to.
trait Sink {
    /// Decoding starts: the source's rate, channels, and the frames its header announces
    /// (within the limits), if it does.
    fn start(
        &mut self,
        rate: u32,
        channels: usize,
        frames: Option<u64>,
    ) -> Result<(), DecodeFailure>;
    /// One block: `per_channel` samples of each channel, one channel after the other.
    fn block(&mut self, block: &[f32], per_channel: usize) -> Result<(), DecodeFailure>;
}

/// Reads the audio in `path` to the end: checks that it decodes and fits `limits`, and
/// hands each block of samples (per channel) to `sink`. Hostile headers can make a
/// decoder panic (a zero sample rate does in symphonia 0.5): that is a damaged file too.
fn read(
    path: &Path,
    limits: &AudioConfig,
    sink: &mut dyn Sink,
) -> Result<AudioInfo, DecodeFailure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_checked(path, limits, sink)
    }))
    .unwrap_or_else(|_| {
        Err(DecodeFailure::Audio(AudioError::Invalid(
            "the audio headers contradict each other; the decoder cannot read them".to_owned(),
        )))
    })
}

fn read_checked(
    path: &Path,
    limits: &AudioConfig,
    sink: &mut dyn Sink,
) -> Result<AudioInfo, DecodeFailure> {
    let mut file = File::open(path)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    let mut head = [0u8; 12];
    let read = std::io::Read::read(&mut file, &mut head)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    if read == 0 {
        return Err(AudioError::Invalid("the upload is empty".to_owned()).into());
    }
    let container = Container::of(&head[..read]);
    if let Some(container) = container {
        let length = file
            .metadata()
            .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?
            .len();
        container.check_sizes(&mut file, length).map_err(|lie| {
            AudioError::Invalid(format!(
                "the {} file is cut short or damaged: {lie}",
                container.name()
            ))
        })?;
    }
    std::io::Seek::rewind(&mut file)
        .map_err(|error| AudioError::Invalid(format!("cannot read the upload: {error}")))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            // Gapless: the padding an encoder adds at each end, where the file says how much
            // (LAME's header, Ogg's granules), is dropped, so lossy audio lines up with its
            // source.
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|error| match (container, error) {
            (None, _) => AudioError::Unsupported(
                format!("not a recognised audio format: send {ACCEPTED}"),
            ),
            // symphonia also says "unsupported" of a missing chunk: only an encoding it
            // names as unsupported is one.
            (Some(container), SymphoniaError::Unsupported(what)) if what.contains("unsupported") => AudioError::Unsupported(format!(
                "this {} file uses an encoding the server does not decode ({what}): send {ACCEPTED}", container.name()
            )),
            (Some(container), error) => {
                AudioError::Invalid(format!("the {} file is damaged: {error}", container.name()))
            }
        })?;
    let mut reader = probed.format;
    // The first audio track: a video's picture track, or a cover image, is passed over.
    let track = reader
        .tracks()
        .iter()
        .find(|track| {
            track.codec_params.codec != CODEC_TYPE_NULL && track.codec_params.sample_rate.is_some()
        })
        .ok_or_else(|| AudioError::Invalid("the file holds no audio track".to_owned()))?
        .clone();
    let params = &track.codec_params;
    let format = format_of(container, params.codec).ok_or_else(|| {
        AudioError::Unsupported(format!("this codec is not supported: send {ACCEPTED}"))
    })?;
    // Opus always decodes at 48 kHz; the rate its container gives is the source's.
    let sample_rate = if params.codec == CODEC_TYPE_OPUS {
        opus::RATE
    } else {
        params.sample_rate.ok_or_else(|| {
            AudioError::Invalid("the file does not say its sample rate".to_owned())
        })?
    };
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(AudioError::Constraints(format!(
            "the sample rate is {sample_rate} Hz; accepted: {MIN_RATE} to {MAX_RATE} Hz"
        ))
        .into());
    }
    // MP4 says its AAC channels in the codec's own configuration, which only the decoder
    // reads: then they are known from the first decoded packet.
    let declared = params
        .channels
        .map(|channels| check_channels(channels.count()))
        .transpose()?;
    let max_frames = (limits.max_duration.as_secs_f64() * f64::from(sample_rate)) as u64;
    let claimed = announced_frames(params, sample_rate);
    if claimed.is_some_and(|frames| frames > max_frames.saturating_mul(2)) {
        // A header claiming far more than the limit: say so before decoding it all.
        return Err(AudioError::TooLong(too_long(limits.max_duration)).into());
    }
    let mut decoder = opus::codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|error| AudioError::Unsupported(format!("cannot decode this audio: {error}")))?;
    let announced = claimed.filter(|&frames| frames <= max_frames);
    let mut channels: Option<usize> = None;
    let mut frames: u64 = 0;
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut mixed = Vec::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(error)) if error.kind() == ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(error) => {
                return Err(
                    AudioError::Invalid(format!("the audio data is damaged: {error}")).into(),
                );
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
                return Err(
                    AudioError::Invalid(format!("the audio data is damaged: {error}")).into(),
                );
            }
        };
        let spec = *decoded.spec();
        if spec.rate != sample_rate {
            return Err(AudioError::Invalid(format!(
                "the header says {sample_rate} Hz, but the audio decodes at {} Hz",
                spec.rate
            ))
            .into());
        }
        let count = spec.channels.count();
        if channels.or(declared).is_some_and(|known| known != count) {
            return Err(AudioError::Invalid(
                "the number of channels changes within the file".to_owned(),
            )
            .into());
        }
        let channels = match channels {
            Some(known) => known,
            None => {
                let kept = if check_channels(count)? > usize::from(limits.max_channels) {
                    1
                } else {
                    count
                };
                sink.start(sample_rate, kept, announced)?;
                *channels.insert(count)
            }
        };
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
            return Err(AudioError::TooLong(too_long(limits.max_duration)).into());
        }
        if channels > usize::from(limits.max_channels) {
            mix_down(block, per_channel, &mut mixed);
            sink.block(&mixed, per_channel)?;
        } else {
            sink.block(block, per_channel)?;
        }
    }
    let duration = frames as f64 / f64::from(sample_rate);
    if frames == 0 {
        return Err(AudioError::Invalid("the file holds no audio samples".to_owned()).into());
    }
    if let Some(claimed) = claimed {
        // Lossy encoders pad a little at each end, and containers round: half a second and
        // a hundredth of the length are let pass. More is a cut file, or a lying header.
        let slack = u64::from(sample_rate) / 2 + claimed / 100;
        if frames.abs_diff(claimed) > slack {
            return Err(AudioError::Invalid(format!(
                "the file's header says it lasts {:.2} s, but it holds {duration:.2} s of audio: it is cut short or its header is wrong",
                claimed as f64 / f64::from(sample_rate)
            ))
            .into());
        }
    }
    if duration < limits.min_duration.as_secs_f64() {
        return Err(AudioError::Constraints(format!(
            "the audio lasts {duration:.2} s; the shortest accepted is {:?}",
            limits.min_duration
        ))
        .into());
    }
    Ok(AudioInfo {
        format,
        sample_rate,
        channels: channels.unwrap_or_default() as u16,
        bits_per_sample: if format == "wav" || format == "flac" {
            params.bits_per_sample.map_or(0, |bits| bits as u16)
        } else {
            0
        },
        duration,
    })
}

/// Refuses no channels, or more than are mixed down.
fn check_channels(channels: usize) -> Result<usize, AudioError> {
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(AudioError::Constraints(format!(
            "the audio has {channels} channels; accepted: 1 to {MAX_CHANNELS}"
        )));
    }
    Ok(channels)
}

/// The frames the header announces, at the sample rate. A container may count in its own
/// time base (Matroska counts milliseconds), which is turned into frames.
fn announced_frames(params: &CodecParameters, sample_rate: u32) -> Option<u64> {
    let counted = params.n_frames?;
    match params.time_base {
        Some(base) if base.denom != sample_rate || base.numer != 1 => {
            let time = base.calc_time(counted);
            Some(
                time.seconds.saturating_mul(u64::from(sample_rate))
                    + (time.frac * f64::from(sample_rate)) as u64,
            )
        }
        _ => Some(counted),
    }
}

/// The mean of the channels of `block` (planar, `per_channel` samples each) into `mixed`.
fn mix_down(block: &[f32], per_channel: usize, mixed: &mut Vec<f32>) {
    mixed.clear();
    mixed.resize(per_channel, 0.0);
    let channels = block.len() / per_channel.max(1);
    for channel in block.chunks_exact(per_channel.max(1)) {
        for (sum, sample) in mixed.iter_mut().zip(channel) {
            *sum += sample;
        }
    }
    let scale = 1.0 / channels.max(1) as f32;
    for sample in mixed.iter_mut() {
        *sample *= scale;
    }
}

fn too_long(limit: Duration) -> String {
    format!(
        "the audio is longer than the {} minutes accepted",
        limit.as_secs() / 60
    )
}

impl From<AudioError> for DecodeFailure {
    fn from(error: AudioError) -> Self {
        DecodeFailure::Audio(error)
    }
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeFailure::Audio(error) => error.fmt(f),
            DecodeFailure::Memory(short) => short.fmt(f),
        }
    }
}

/// Checks `path` from end to end without keeping the samples: what it is, and that it
/// decodes within the limits.
///
/// # Errors
///
/// An [`AudioError`] saying what is wrong.
pub fn inspect(path: &Path, limits: &AudioConfig) -> Result<AudioInfo, AudioError> {
    struct Discard;
    impl Sink for Discard {
        fn start(&mut self, _: u32, _: usize, _: Option<u64>) -> Result<(), DecodeFailure> {
            Ok(())
        }
        fn block(&mut self, _: &[f32], _: usize) -> Result<(), DecodeFailure> {
            Ok(())
        }
    }
    read(path, limits, &mut Discard).map_err(|failure| match failure {
        DecodeFailure::Audio(error) => error,
        DecodeFailure::Memory(_) => unreachable!("discarding samples holds no memory"),
    })
}

/// Each channel resampled as it is decoded, its output counted in a reservation.
struct ToEngine<'a> {
    channels: Vec<ToEngineRate>,
    reservation: &'a mut Reservation,
}

impl ToEngine<'_> {
    /// Counts what the outputs hold now in the reservation.
    fn account(&mut self) -> Result<(), DecodeFailure> {
        let held: u64 = self
            .channels
            .iter()
            .map(|channel| channel.held_bytes() as u64)
            .sum();
        match held.checked_sub(self.reservation.bytes()) {
            Some(grown) if grown > 0 => self.reservation.grow(grown).map_err(DecodeFailure::Memory),
            _ => Ok(()),
        }
    }
}

impl Sink for ToEngine<'_> {
    fn start(
        &mut self,
        rate: u32,
        channels: usize,
        frames: Option<u64>,
    ) -> Result<(), DecodeFailure> {
        let resampler = || {
            ToEngineRate::new(rate).map_err(|error| {
                DecodeFailure::Audio(AudioError::Invalid(format!(
                    "cannot resample {rate} Hz: {error}"
                )))
            })
        };
        self.channels = (0..channels)
            .map(|_| resampler())
            .collect::<Result<_, _>>()?;
        if let Some(frames) = frames {
            for channel in &mut self.channels {
                channel.reserve_for(frames);
            }
        }
        self.account()
    }

    fn block(&mut self, block: &[f32], per_channel: usize) -> Result<(), DecodeFailure> {
        for (channel, samples) in self
            .channels
            .iter_mut()
            .zip(block.chunks(per_channel.max(1)))
        {
            channel.push(samples).map_err(|error| {
                DecodeFailure::Audio(AudioError::Invalid(format!("resampling failed: {error}")))
            })?;
        }
        self.account()
    }
}

/// Decodes `path` and resamples each block to the engine's rate
/// ([`ENGINE_RATE`](super::resample::ENGINE_RATE)) as it
/// comes, so only the 16-bit samples at that rate are kept, never the source's (a 30-minute
/// FLAC of 48 kHz stereo would be 690 MB of floats). What they hold is counted in
/// `reservation` as it grows.
///
/// # Errors
///
/// [`DecodeFailure::Audio`] saying what is wrong with the audio, or
/// [`DecodeFailure::Memory`] when its samples do not fit under `memory.limit` now.
pub fn decode_for_engine(
    path: &Path,
    limits: &AudioConfig,
    reservation: &mut Reservation,
) -> Result<EngineAudio, DecodeFailure> {
    let mut sink = ToEngine {
        channels: Vec::new(),
        reservation,
    };
    let info = read(path, limits, &mut sink)?;
    let channels = sink
        .channels
        .into_iter()
        .map(ToEngineRate::finish)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| AudioError::Invalid(format!("resampling failed: {error}")))?;
    // `finish` gave back what the header had announced and the file did not hold.
    let held: u64 = channels
        .iter()
        .map(|samples| (samples.len() * 2) as u64)
        .sum();
    sink.reservation
        .shrink(sink.reservation.bytes().saturating_sub(held));
    Ok(EngineAudio { info, channels })
}
