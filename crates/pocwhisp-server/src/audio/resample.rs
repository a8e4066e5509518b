//! Resampling to the engine's rate with rubato (a windowed-sinc resampler), then conversion
//! to 16-bit samples.

use rubato::{FftFixedIn, Resampler};

/// The rate PocketSphinx's English model expects.
pub const ENGINE_RATE: u32 = 16_000;

/// Frames per resampling call.
const CHUNK: usize = 1024;

/// `samples` at `rate` Hz as 16-bit samples at [`ENGINE_RATE`].
///
/// # Errors
///
/// rubato's error for a rate it cannot convert (never for 8 to 48 kHz).
pub fn to_engine_rate(samples: &[f32], rate: u32) -> Result<Vec<i16>, String> {
    if rate == ENGINE_RATE {
        return Ok(samples.iter().map(|&sample| to_i16(sample)).collect());
    }
    let mut resampler = FftFixedIn::<f32>::new(rate as usize, ENGINE_RATE as usize, CHUNK, 2, 1)
        .map_err(|error| error.to_string())?;
    let expected =
        (samples.len() as f64 * f64::from(ENGINE_RATE) / f64::from(rate)).round() as usize;
    let mut output = Vec::with_capacity(expected + CHUNK);
    let mut chunks = samples.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        let resampled = resampler
            .process(&[chunk], None)
            .map_err(|error| error.to_string())?;
        output.extend(resampled[0].iter().map(|&sample| to_i16(sample)));
    }
    let rest = chunks.remainder();
    let tail = resampler
        .process_partial(Some(&[rest]), None)
        .map_err(|error| error.to_string())?;
    output.extend(tail[0].iter().map(|&sample| to_i16(sample)));
    // Flush the delay line, then drop the resampler's lead-in so time 0 stays time 0.
    let flushed = resampler
        .process_partial::<&[f32]>(None, None)
        .map_err(|error| error.to_string())?;
    output.extend(flushed[0].iter().map(|&sample| to_i16(sample)));
    let delay = resampler.output_delay();
    let output: Vec<i16> = output.into_iter().skip(delay).take(expected).collect();
    Ok(output)
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
    fn samples_are_clamped_to_16_bits() {
        let converted = to_engine_rate(&[2.0, -2.0, 0.5, -1.0], ENGINE_RATE).unwrap();
        assert_eq!(converted, [i16::MAX, i16::MIN, 16_384, i16::MIN]);
    }
}
