//! Opus, decoded by libopus (Debian's `libopus0`, through the `opusic-sys` bindings) behind
//! symphonia's `Decoder` trait: symphonia demuxes Opus from Ogg and WebM but decodes none.
//!
//! libopus is the codec's reference implementation, the one browsers record with; a pure
//! Rust decoder would avoid the C library but none is yet complete (CELT, SILK and hybrid
//! modes). Every stream goes through libopus's multistream decoder, which also reads the
//! one- and two-channel streams of mapping family 0 (RFC 7845, section 5.1.1).
#![allow(unsafe_code)] // the libopus calls, each with its SAFETY note

use std::ptr::NonNull;
use std::sync::LazyLock;

use opusic_sys::{
    OPUS_OK, OPUS_RESET_STATE, OpusMSDecoder, opus_multistream_decode_float,
    opus_multistream_decoder_create, opus_multistream_decoder_ctl,
    opus_multistream_decoder_destroy,
};
use symphonia::core::audio::{
    AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec,
};
use symphonia::core::codecs::{
    CODEC_TYPE_OPUS, CodecDescriptor, CodecParameters, CodecRegistry, Decoder, DecoderOptions,
    FinalizeResult,
};
use symphonia::core::errors::{Error, Result, decode_error, unsupported_error};
use symphonia::core::formats::Packet;
use symphonia::core::support_codec;

/// Opus always decodes at 48 kHz here: every rate it carries is a resampling of that.
pub(crate) const RATE: u32 = 48_000;

/// The longest a packet can last: 120 ms (RFC 6716, section 3.2.5), in samples per channel.
const MAX_FRAMES: usize = RATE as usize * 120 / 1000;

/// The most channels decoded: the largest layout of mapping family 1 (RFC 7845,
/// section 5.1.1.2), 7.1 surround.
pub(crate) const MAX_CHANNELS: usize = 8;

/// `OPUS_SET_GAIN_REQUEST` in `opus_defines.h`: the header's output gain, in Q7.8 dB.
const SET_GAIN: i32 = 4034;

/// Symphonia's codecs with Opus added.
pub(crate) fn codecs() -> &'static CodecRegistry {
    static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<OpusDecoder>();
        registry
    });
    &CODECS
}

/// The identification header (`OpusHead`, RFC 7845 section 5.1) both Ogg and WebM carry
/// as the codec's private data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    channels: usize,
    /// Samples at 48 kHz the encoder put before the audio, to be dropped.
    pre_skip: usize,
    /// Q7.8 dB to apply to the output.
    gain: i16,
    streams: u8,
    coupled: u8,
    /// The stream channel each output channel comes from.
    mapping: Vec<u8>,
}

impl Head {
    fn parse(data: &[u8]) -> std::result::Result<Head, &'static str> {
        let field = |range: std::ops::Range<usize>| {
            data.get(range)
                .ok_or("opus: the identification header is cut short")
        };
        if field(0..8)? != b"OpusHead" {
            return Err("opus: no identification header");
        }
        // The upper four bits are the major version: only 0 is defined.
        if field(8..9)?[0] >> 4 != 0 {
            return Err("opus: an unknown header version");
        }
        let channels = usize::from(field(9..10)?[0]);
        let pair = |at: usize| field(at..at + 2).map(|bytes| [bytes[0], bytes[1]]);
        let pre_skip = usize::from(u16::from_le_bytes(pair(10)?));
        let gain = i16::from_le_bytes(pair(16)?);
        let family = field(18..19)?[0];
        if channels == 0 || channels > MAX_CHANNELS {
            return Err("opus: more channels than the 8 of 7.1 surround, or none");
        }
        let (streams, coupled, mapping) = if family == 0 {
            if channels > 2 {
                return Err("opus: mapping family 0 carries one or two channels");
            }
            (1, (channels - 1) as u8, (0..channels as u8).collect())
        } else {
            let counts = field(19..21)?;
            let mapping = field(21..21 + channels)?.to_vec();
            (counts[0], counts[1], mapping)
        };
        let carried = usize::from(streams) + usize::from(coupled);
        if streams == 0 || coupled > streams || carried > 255 {
            return Err("opus: impossible stream counts");
        }
        // 255 is a silent channel; any other entry names a decoded stream channel.
        if mapping
            .iter()
            .any(|&entry| entry != 255 && usize::from(entry) >= carried)
        {
            return Err("opus: the channel mapping names a stream that is not there");
        }
        Ok(Head {
            channels,
            pre_skip,
            gain,
            streams,
            coupled,
            mapping,
        })
    }
}

/// A libopus multistream decoder, owned.
struct Native(NonNull<OpusMSDecoder>);

// SAFETY: libopus decoder state belongs to no thread; it is reached only through `&mut
// OpusDecoder`, so never from two threads at once.
unsafe impl Send for Native {}
// SAFETY: as above: shared references never touch the state.
unsafe impl Sync for Native {}

impl Drop for Native {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opus_multistream_decoder_create` and is freed once.
        unsafe { opus_multistream_decoder_destroy(self.0.as_ptr()) }
    }
}

/// An Opus stream decoded to 48 kHz floats.
pub(crate) struct OpusDecoder {
    params: CodecParameters,
    native: Native,
    channels: usize,
    /// What of the encoder's padding is still to drop, where the container does not.
    skip: usize,
    /// libopus's interleaved output.
    interleaved: Vec<f32>,
    output: AudioBuffer<f32>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .field("skip", &self.skip)
            .finish_non_exhaustive()
    }
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let Some(data) = params.extra_data.as_deref() else {
            return unsupported_error("opus: no identification header");
        };
        let head = Head::parse(data).map_err(Error::Unsupported)?;
        let mut status = OPUS_OK;
        // SAFETY: the mapping holds `channels` entries, each checked against the stream
        // counts; `status` is a valid place for the error code.
        let created = unsafe {
            opus_multistream_decoder_create(
                RATE as i32,
                head.channels as i32,
                i32::from(head.streams),
                i32::from(head.coupled),
                head.mapping.as_ptr(),
                &raw mut status,
            )
        };
        let native = match NonNull::new(created) {
            Some(native) if status == OPUS_OK => Native(native),
            _ => return unsupported_error("opus: libopus refused the stream's layout"),
        };
        if head.gain != 0 {
            // SAFETY: a live decoder; the request takes one `opus_int32`.
            unsafe {
                opus_multistream_decoder_ctl(native.0.as_ptr(), SET_GAIN, i32::from(head.gain))
            };
        }
        let layout = Channels::from_bits_truncate((1 << head.channels) - 1);
        Ok(OpusDecoder {
            params: params.clone(),
            native,
            channels: head.channels,
            // Ogg's reader trims the encoder's padding itself (it reads the same header
            // into `delay`); Matroska's does not.
            skip: if params.delay.is_some() {
                0
            } else {
                head.pre_skip
            },
            interleaved: vec![0.0; MAX_FRAMES * head.channels],
            output: AudioBuffer::new(MAX_FRAMES as u64, SignalSpec::new(RATE, layout)),
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[support_codec!(CODEC_TYPE_OPUS, "opus", "Opus (libopus)")]
    }

    fn reset(&mut self) {
        // SAFETY: a live decoder; the request takes no argument.
        unsafe { opus_multistream_decoder_ctl(self.native.0.as_ptr(), OPUS_RESET_STATE) };
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        let data = packet.buf();
        // An empty packet asks libopus to conceal a lost one: invented audio, refused.
        if data.is_empty() || data.len() > i32::MAX as usize {
            return decode_error("opus: an empty or impossible packet");
        }
        // SAFETY: `data` is `len` readable bytes; `interleaved` has room for MAX_FRAMES
        // samples of each channel, the most one packet can hold.
        let frames = unsafe {
            opus_multistream_decode_float(
                self.native.0.as_ptr(),
                data.as_ptr(),
                data.len() as i32,
                self.interleaved.as_mut_ptr(),
                MAX_FRAMES as i32,
                0,
            )
        };
        let Ok(frames) = usize::try_from(frames) else {
            return decode_error("opus: libopus could not decode a packet");
        };
        self.output.clear();
        self.output.render_reserved(Some(frames));
        for channel in 0..self.channels {
            let plane = self.output.chan_mut(channel);
            for (sample, frame) in plane
                .iter_mut()
                .zip(self.interleaved.chunks_exact(self.channels))
            {
                *sample = frame[channel];
            }
        }
        let skipped = self.skip.min(frames);
        self.skip -= skipped;
        self.output.trim(
            skipped + packet.trim_start as usize,
            packet.trim_end as usize,
        );
        Ok(self.output.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.output.as_audio_buffer_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(channels: u8, family: u8, tail: &[u8]) -> Vec<u8> {
        let mut data = b"OpusHead".to_vec();
        data.extend([1, channels]);
        data.extend(312u16.to_le_bytes());
        data.extend(48_000u32.to_le_bytes());
        data.extend((-256i16).to_le_bytes());
        data.push(family);
        data.extend(tail);
        data
    }

    #[test]
    fn family_0_is_one_stream_of_one_or_two_channels() {
        let stereo = Head::parse(&head(2, 0, &[])).unwrap();
        assert_eq!(
            stereo,
            Head {
                channels: 2,
                pre_skip: 312,
                gain: -256,
                streams: 1,
                coupled: 1,
                mapping: vec![0, 1],
            }
        );
        assert!(Head::parse(&head(3, 0, &[])).is_err());
    }

    #[test]
    fn family_1_reads_its_streams_and_mapping() {
        // 5.1: four streams, two of them coupled, six channels.
        let surround = Head::parse(&head(6, 1, &[4, 2, 0, 4, 1, 2, 3, 5])).unwrap();
        assert_eq!((surround.streams, surround.coupled), (4, 2));
        assert_eq!(surround.mapping, vec![0, 4, 1, 2, 3, 5]);
    }

    #[test]
    fn lying_headers_are_refused() {
        let cases: [(&str, Vec<u8>); 7] = [
            ("another magic", b"OpusTags\x01\x02".to_vec()),
            ("cut short", head(2, 0, &[])[..12].to_vec()),
            ("no channels", head(0, 0, &[])),
            (
                "nine channels",
                head(9, 1, &[9, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            ),
            ("mapping cut short", head(6, 1, &[4, 2, 0, 4])),
            ("a stream that is not there", head(2, 1, &[1, 0, 0, 1])),
            ("more coupled than streams", head(2, 1, &[1, 2, 0, 1])),
        ];
        for (name, data) in cases {
            assert!(Head::parse(&data).is_err(), "{name}");
        }
        let mut version_2 = head(1, 0, &[]);
        version_2[8] = 0x20;
        assert!(Head::parse(&version_2).is_err());
    }
}
