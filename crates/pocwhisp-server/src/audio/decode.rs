//! Decoding with symphonia: WAV (any chunk layout; PCM 8, 16, 24 and 32-bit, float), FLAC,
//! MP3, AAC in MP4 (M4A) and Ogg Vorbis, one or two channels, 8 to 48 kHz. The format is told by the bytes,
//! not the name or content type a client gave.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CODEC_TYPE_AAC, CODEC_TYPE_FLAC, CODEC_TYPE_MP3, CODEC_TYPE_NULL, CODEC_TYPE_VORBIS, CodecType,
    DecoderOptions,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::AudioError;
use super::resample::ToEngineRate;
use crate::config::AudioConfig;
use crate::memory::{MemoryShort, Reservation};

/// The file formats decoded here, named as OpenAI's transcription API names them (`mpeg` and
/// `mpga` are MP3; `m4a` and `mp4` are AAC in an MP4 container).
pub(crate) const FILE_FORMATS: &[&str] =
    &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "ogg", "wav"];

/// What the refusals name as accepted.
const ACCEPTED: &str = "WAV, FLAC, MP3, M4A/MP4 (AAC) or Ogg Vorbis";

/// The slowest and fastest sample rates accepted.
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 48_000;

/// What an upload turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// `wav`, `flac`, `mp3`, `m4a` (AAC in MP4) or `ogg`.
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

fn format_of(codec: CodecType) -> Option<&'static str> {
    match codec {
        CODEC_TYPE_FLAC => Some("flac"),
        CODEC_TYPE_MP3 => Some("mp3"),
        CODEC_TYPE_VORBIS => Some("ogg"),
        CODEC_TYPE_AAC => Some("m4a"),
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
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("MP4"),
        [b'I', b'D', b'3', ..] => Some("MP3"),
        [0xFF, second, ..] if second & 0xE0 == 0xE0 => Some("MP3"),
        _ => None,
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
                format!("not a recognised audio format: send {ACCEPTED}"),
            ),
            // symphonia also says "unsupported" of a missing chunk: only an encoding it
            // names as unsupported is one.
            (Some(name), SymphoniaError::Unsupported(what)) if what.contains("unsupported") => AudioError::Unsupported(format!(
                "this {name} file uses an encoding the server does not decode ({what}): send PCM or float {ACCEPTED}"
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
        AudioError::Unsupported(format!("this codec is not supported: send PCM {ACCEPTED}"))
    })?;
    let sample_rate = params
        .sample_rate
        .ok_or_else(|| AudioError::Invalid("the file does not say its sample rate".to_owned()))?;
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(AudioError::Constraints(format!(
            "the sample rate is {sample_rate} Hz; accepted: {MIN_RATE} to {MAX_RATE} Hz"
        ))
        .into());
    }
    let check_channels = |channels: usize| {
        if channels == 0 || channels > usize::from(limits.max_channels) {
            return Err(AudioError::Constraints(format!(
                "the audio has {channels} channels; accepted: 1 to {}",
                limits.max_channels
            )));
        }
        Ok(channels)
    };
    // MP4 says its AAC channels in the codec's own configuration, which only the decoder
    // reads: then they are known from the first decoded packet.
    let declared = params
        .channels
        .map(|channels| check_channels(channels.count()))
        .transpose()?;
    let max_frames = (limits.max_duration.as_secs_f64() * f64::from(sample_rate)) as u64;
    if params
        .n_frames
        .is_some_and(|frames| frames > max_frames.saturating_mul(2))
    {
        // A header claiming far more than the limit: say so before decoding it all.
        return Err(AudioError::TooLong(too_long(limits.max_duration)).into());
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|error| AudioError::Unsupported(format!("cannot decode this audio: {error}")))?;
    let announced = params.n_frames.filter(|&frames| frames <= max_frames);
    let mut channels: Option<usize> = None;
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
                sink.start(sample_rate, check_channels(count)?, announced)?;
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
        sink.block(block, per_channel)?;
    }
    let duration = frames as f64 / f64::from(sample_rate);
    if frames == 0 {
        return Err(AudioError::Invalid("the file holds no audio samples".to_owned()).into());
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
