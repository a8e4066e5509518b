//! The mel filter bank Whisper's front end multiplies each power spectrum by: triangular
//! filters on the Slaney mel scale with Slaney area normalisation (what `librosa.filters.mel`
//! computes by default, and what OpenAI's checkpoint was trained with). A CTranslate2 model
//! does not carry it, whisper.cpp's model file does, so the converter computes it.

/// Whisper's sample rate.
pub const SAMPLE_RATE: f64 = 16_000.0;
/// Whisper's FFT size (25 ms windows).
pub const N_FFT: usize = 400;

/// The linear part of the Slaney scale: 200/3 Hz per mel below 1 kHz.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// `n_mels` filters over the `N_FFT / 2 + 1` frequency bins, row-major
/// (`[n_mels][N_FFT / 2 + 1]`), each row a triangle whose area is normalised to 2 / width.
pub fn filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let bin_hz: Vec<f64> = (0..bins)
        .map(|bin| bin as f64 * SAMPLE_RATE / N_FFT as f64)
        .collect();
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|index| mel_to_hz(low + (high - low) * index as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = Vec::with_capacity(n_mels * bins);
    for mel in 0..n_mels {
        let (left, centre, right) = (edges[mel], edges[mel + 1], edges[mel + 2]);
        let norm = 2.0 / (right - left);
        for hz in &bin_hz {
            let rising = (hz - left) / (centre - left);
            let falling = (right - hz) / (right - centre);
            weights.push((rising.min(falling).max(0.0) * norm) as f32);
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values of `mel_80.npy` in the `openai-whisper` package's `assets/mel_filters.npz`
    /// (row, column, value), read from that file.
    const OPENAI: [(usize, usize, f32); 6] = [
        (0, 1, 0.024_862_595),
        (0, 2, 0.0),
        (1, 2, 0.022_871_772),
        (1, 3, 0.0),
        (40, 60, 0.0),
        (79, 190, 0.002_232_055),
    ];

    #[test]
    fn the_bank_matches_openais_at_sampled_points() {
        let bank = filters(80);
        assert_eq!(bank.len(), 80 * 201);
        for (row, column, expected) in OPENAI {
            let got = bank[row * 201 + column];
            assert!(
                (got - expected).abs() < 1e-7,
                "[{row}][{column}]: {got} against {expected}"
            );
        }
    }

    #[test]
    fn each_filter_is_one_triangle_with_the_slaney_area() {
        let bank = filters(80);
        for row in bank.chunks(201) {
            let nonzero: Vec<usize> = (0..201).filter(|&bin| row[bin] > 0.0).collect();
            // Contiguous: one triangle.
            assert_eq!(
                nonzero.last().unwrap() - nonzero.first().unwrap() + 1,
                nonzero.len()
            );
        }
        // Above 1 kHz the filters widen in Hz, so with the same area they flatten.
        let peak = |row: usize| {
            bank[row * 201..(row + 1) * 201]
                .iter()
                .cloned()
                .fold(0.0, f32::max)
        };
        assert!(peak(79) < peak(0) / 5.0, "{} against {}", peak(79), peak(0));
    }
}
