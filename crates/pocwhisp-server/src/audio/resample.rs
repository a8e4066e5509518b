//! Resampling to the engine's rate with rubato (a windowed-sinc resampler), then conversion
//! to 16-bit samples.

use rubato::{FftFixedIn, Resampler};

/// The rate PocketSphinx's English model expects.
pub const ENGINE_RATE: u32 = 16_000;

/// Frames per resampling call.
const CHUNK: usize = 1024;

/// One channel resampled to [`ENGINE_RATE`] block by block as it is decoded: it holds at
/// most one chunk of the source rate, so a long upload at 48 kHz never sits in memory at
/// that rate, only as the 16-bit samples the engine takes.
pub struct ToEngineRate {
    /// `None` when the source is at the engine's rate already.
    resampler: Option<FftFixedIn<f32>>,
    /// Source samples not yet a whole chunk.
    pending: Vec<f32>,
    /// One call's output.
    scratch: Vec<Vec<f32>>,
    output: Vec<i16>,
    /// Output samples of the resampler's lead-in still to drop, so time 0 stays time 0.
    lead_in: usize,
    /// Source samples taken, to cut the flushed tail to the exact length.
    taken: u64,
    rate: u32,
}

impl std::fmt::Debug for ToEngineRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToEngineRate")
            .field("rate", &self.rate)
            .field("taken", &self.taken)
            .field("output", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl ToEngineRate {
    /// A resampler from `rate` Hz.
    ///
    /// # Errors
    ///
    /// rubato's error for a rate it cannot convert (never for 8 to 48 kHz).
    pub fn new(rate: u32) -> Result<Self, String> {
        let resampler = (rate != ENGINE_RATE)
            .then(|| FftFixedIn::<f32>::new(rate as usize, ENGINE_RATE as usize, CHUNK, 2, 1))
            .transpose()
            .map_err(|error| error.to_string())?;
        let (scratch, lead_in) = resampler.as_ref().map_or((Vec::new(), 0), |resampler| {
            (
                resampler.output_buffer_allocate(true),
                resampler.output_delay(),
            )
        });
        Ok(ToEngineRate {
            resampler,
            pending: Vec::with_capacity(CHUNK),
            scratch,
            output: Vec::new(),
            lead_in,
            taken: 0,
            rate,
        })
    }

    /// Makes room at once for the output of `source_frames` samples of the source (what a
    /// file's header announces), rather than growing by doubling as they come.
    pub fn reserve_for(&mut self, source_frames: u64) {
        let frames = source_frames as f64 * f64::from(ENGINE_RATE) / f64::from(self.rate);
        self.output
            .reserve_exact((frames.ceil() as usize).saturating_sub(self.output.len()));
    }

    /// Bytes the output holds (its capacity), for the memory it is counted against.
    pub fn held_bytes(&self) -> usize {
        self.output.capacity() * std::mem::size_of::<i16>()
    }

    /// Resamples the next `samples` of the channel.
    ///
    /// # Errors
    ///
    /// rubato's error (never for a resampler [`new`](Self::new) made).
    pub fn push(&mut self, mut samples: &[f32]) -> Result<(), String> {
        self.taken += samples.len() as u64;
        if self.resampler.is_none() {
            self.output
                .extend(samples.iter().map(|&sample| to_i16(sample)));
            return Ok(());
        }
        while !samples.is_empty() {
            let wanted = CHUNK - self.pending.len();
            let (now, later) = samples.split_at(wanted.min(samples.len()));
            samples = later;
            if self.pending.is_empty() && now.len() == CHUNK {
                self.process(Some(now))?;
            } else {
                self.pending.extend_from_slice(now);
                if self.pending.len() == CHUNK {
                    let chunk = std::mem::take(&mut self.pending);
                    self.process(Some(&chunk))?;
                    self.pending = chunk;
                    self.pending.clear();
                }
            }
        }
        Ok(())
    }

    /// The whole channel at [`ENGINE_RATE`]: the last partial chunk and the resampler's
    /// delay line flushed, cut to the source's length at the new rate.
    ///
    /// # Errors
    ///
    /// rubato's error (never for a resampler [`new`](Self::new) made).
    pub fn finish(mut self) -> Result<Vec<i16>, String> {
        if self.resampler.is_none() {
            return Ok(self.output);
        }
        let rest = std::mem::take(&mut self.pending);
        // rubato reads an empty partial chunk as a missing channel, not as no samples.
        if !rest.is_empty() {
            self.process(Some(&rest))?;
        }
        self.process(None)?;
        let expected =
            (self.taken as f64 * f64::from(ENGINE_RATE) / f64::from(self.rate)).round() as usize;
        self.output.truncate(expected);
        self.output.shrink_to_fit();
        Ok(self.output)
    }

    /// Runs the resampler on one chunk: a whole one, a last shorter one, or `None` to flush
    /// its delay line.
    fn process(&mut self, chunk: Option<&[f32]>) -> Result<(), String> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let (_, produced) = match chunk {
            Some(chunk) if chunk.len() == CHUNK => {
                resampler.process_into_buffer(&[chunk], &mut self.scratch, None)
            }
            Some(last) => {
                resampler.process_partial_into_buffer(Some(&[last]), &mut self.scratch, None)
            }
            None => {
                resampler.process_partial_into_buffer::<&[f32], _>(None, &mut self.scratch, None)
            }
        }
        .map_err(|error| error.to_string())?;
        let produced = &self.scratch[0][..produced];
        let skipped = self.lead_in.min(produced.len());
        self.lead_in -= skipped;
        self.output
            .extend(produced[skipped..].iter().map(|&sample| to_i16(sample)));
        Ok(())
    }
}

/// `samples` at `rate` Hz as 16-bit samples at [`ENGINE_RATE`].
///
/// # Errors
///
/// rubato's error for a rate it cannot convert (never for 8 to 48 kHz).
pub fn to_engine_rate(samples: &[f32], rate: u32) -> Result<Vec<i16>, String> {
    let mut resampler = ToEngineRate::new(rate)?;
    resampler.push(samples)?;
    resampler.finish()
}

/// The inverse of symphonia's conversion (a 16-bit sample over 32768), so 16-bit PCM comes
/// back bit for bit.
fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sine of `hz` at `rate` for `seconds`.
    fn tone(hz: f32, rate: u32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize)
            .map(|n| 0.5 * (2.0 * std::f32::consts::PI * hz * n as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn resampling_keeps_duration_and_pitch() {
        for rate in [8_000, 22_050, 44_100, 48_000] {
            let resampled = to_engine_rate(&tone(440.0, rate, 1.5), rate).unwrap();
            assert_eq!(resampled.len(), 24_000, "{rate} Hz");
            // Zero crossings of a 440 Hz tone over 1.5 s: about 1320.
            let crossings = resampled
                .windows(2)
                .filter(|pair| (pair[0] < 0) != (pair[1] < 0))
                .count();
            assert!((1300..1340).contains(&crossings), "{rate} Hz: {crossings}");
        }
    }

    #[test]
    fn blocks_of_any_size_give_the_samples_of_the_whole() {
        let samples = tone(440.0, 44_100, 0.7);
        let whole = to_engine_rate(&samples, 44_100).unwrap();
        for block in [1, 7, 1000, 1024, 1025, 4096, samples.len()] {
            let mut streamed = ToEngineRate::new(44_100).unwrap();
            for piece in samples.chunks(block) {
                streamed.push(piece).unwrap();
            }
            assert_eq!(streamed.finish().unwrap(), whole, "blocks of {block}");
        }
    }

    #[test]
    fn a_length_of_whole_chunks_resamples_too() {
        let samples = &tone(440.0, 48_000, 1.0)[..30 * CHUNK];
        assert_eq!(to_engine_rate(samples, 48_000).unwrap().len(), 10 * CHUNK);
    }

    #[test]
    fn samples_are_clamped_to_16_bits() {
        let converted = to_engine_rate(&[2.0, -2.0, 0.5, -1.0], ENGINE_RATE).unwrap();
        assert_eq!(converted, [i16::MAX, i16::MIN, 16_384, i16::MIN]);
    }
}
