//! whisper.cpp used directly, without the server: the baseline `scripts/bench-transcription`
//! runs beside the server, with the same model file, threads, beam, flash attention, language
//! detection (on the clip's own length) and encoder window (`full`: 30 seconds, the server's
//! default; `fitted`: the clip's own length). It loads the model once, makes one decoding
//! state, and prints one JSON line per file: its decode seconds, text and language.
//!
//! `whisper_direct MODEL THREADS BEAM full|fitted FILE...`, each file 16 kHz mono 16-bit WAV.

use std::time::Instant;

use pocwhisp_server::engine::whisper::{audio_context, detect_language};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

/// The samples of a 16 kHz mono 16-bit WAV file, as whisper.cpp takes them.
fn samples(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("a readable WAV file");
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + size).min(bytes.len());
            return bytes[at + 8..end]
                .chunks_exact(2)
                .map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
                .collect();
        }
        at += 8 + size + size % 2;
    }
    panic!("{path}: no data chunk");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, threads, beam, window, files @ ..] = args.as_slice() else {
        eprintln!("usage: whisper_direct MODEL THREADS BEAM full|fitted FILE...");
        std::process::exit(2);
    };
    let (threads, beam): (usize, i32) = (threads.parse().unwrap(), beam.parse().unwrap());
    whisper_rs::install_logging_hooks();
    let mut parameters = WhisperContextParameters::default();
    parameters.use_gpu(false).flash_attn(true);
    let context = WhisperContext::new_with_params(model, parameters).expect("a whisper.cpp model");
    let mut state = context.create_state().expect("a decoding state");
    for file in files {
        let audio = samples(file);
        let started = Instant::now();
        let fitted = audio_context(audio.len());
        let (id, _) = detect_language(&mut state, &audio, fitted, threads).expect("a language");
        let language = whisper_rs::get_lang_str(id).expect("a known language");
        let strategy = if beam > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: beam,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy { best_of: 5 }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(threads as i32);
        params.set_language(Some(language));
        params.set_audio_ctx(if window == "fitted" { fitted } else { 0 });
        params.set_token_timestamps(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        state.full(params, &audio).expect("decoding");
        let seconds = started.elapsed().as_secs_f64();
        let text: String = state
            .as_iter()
            .map(|segment| {
                segment
                    .to_str_lossy()
                    .map(|text| text.into_owned())
                    .unwrap_or_default()
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"file": file, "seconds": seconds, "text": text.trim(), "language": language})
        );
    }
}
