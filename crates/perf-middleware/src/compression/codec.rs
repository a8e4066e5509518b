//! One encoder per response, driven frame by frame.

use std::io;

use async_compression::Level;
use async_compression::codecs::brotli::params::EncoderParams as BrotliParams;
use async_compression::codecs::{BrotliEncoder, DeflateEncoder, Encode, GzipEncoder, ZstdEncoder};
use async_compression::core::util::PartialBuffer;
use bytes::BytesMut;

use super::{CompressionConfig, Encoding};

/// Output grows in steps of this many bytes while an encoder has more to say.
const OUTPUT_STEP: usize = 8 * 1024;

pub(crate) enum Encoder {
    Gzip(GzipEncoder),
    Deflate(DeflateEncoder),
    // Brotli's state is kilobytes; the others are pointers to heap state already.
    Brotli(Box<BrotliEncoder>),
    Zstd(ZstdEncoder),
}

impl Encoder {
    pub(crate) fn new(encoding: Encoding, config: &CompressionConfig) -> Self {
        let flate_level = || Level::Precise(config.level as i32).into();
        match encoding {
            Encoding::Gzip => Encoder::Gzip(GzipEncoder::new(flate_level())),
            Encoding::Deflate => Encoder::Deflate(DeflateEncoder::new(flate_level())),
            Encoding::Brotli => Encoder::Brotli(Box::new(BrotliEncoder::new(
                BrotliParams::default().quality(Level::Precise(config.brotli_level as i32)),
            ))),
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::new(config.zstd_level)),
        }
    }

    /// Compresses all of `input` into `output`, then flushes so that everything written so
    /// far can be sent: a streamed response (server-sent events) is never held back.
    pub(crate) fn encode_and_flush(
        &mut self,
        input: &[u8],
        output: &mut BytesMut,
    ) -> io::Result<()> {
        let mut input = PartialBuffer::new(input);
        while !input.unwritten().is_empty() {
            write_into(output, |out| {
                self.with(|e| e.encode(&mut input, out)).map(|()| false)
            })?;
        }
        loop {
            if write_into(output, |out| self.with(|e| e.flush(out)))? {
                return Ok(());
            }
        }
    }

    /// Writes the end of the stream.
    pub(crate) fn finish(&mut self, output: &mut BytesMut) -> io::Result<()> {
        loop {
            if write_into(output, |out| self.with(|e| e.finish(out)))? {
                return Ok(());
            }
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut dyn EncodeOnce) -> R) -> R {
        match self {
            Encoder::Gzip(encoder) => f(encoder),
            Encoder::Deflate(encoder) => f(encoder),
            Encoder::Brotli(encoder) => f(&mut **encoder),
            Encoder::Zstd(encoder) => f(encoder),
        }
    }
}

/// The codec operations on the concrete buffer types used here, object-safe.
trait EncodeOnce {
    fn encode(
        &mut self,
        input: &mut PartialBuffer<&[u8]>,
        output: &mut PartialBuffer<&mut [u8]>,
    ) -> io::Result<()>;
    fn flush(&mut self, output: &mut PartialBuffer<&mut [u8]>) -> io::Result<bool>;
    fn finish(&mut self, output: &mut PartialBuffer<&mut [u8]>) -> io::Result<bool>;
}

impl<T: Encode> EncodeOnce for T {
    fn encode(
        &mut self,
        input: &mut PartialBuffer<&[u8]>,
        output: &mut PartialBuffer<&mut [u8]>,
    ) -> io::Result<()> {
        Encode::encode(self, input, output)
    }

    fn flush(&mut self, output: &mut PartialBuffer<&mut [u8]>) -> io::Result<bool> {
        Encode::flush(self, output)
    }

    fn finish(&mut self, output: &mut PartialBuffer<&mut [u8]>) -> io::Result<bool> {
        Encode::finish(self, output)
    }
}

/// Gives `step` a window of spare room at the end of `output`, keeps what it wrote.
fn write_into<R>(
    output: &mut BytesMut,
    step: impl FnOnce(&mut PartialBuffer<&mut [u8]>) -> io::Result<R>,
) -> io::Result<R> {
    let start = output.len();
    output.resize(start + OUTPUT_STEP, 0);
    let mut window = PartialBuffer::new(&mut output[start..]);
    let result = step(&mut window);
    let written = window.written_len();
    output.truncate(start + written);
    result
}
