//! OpenAI's Whisper, run in this process by whisper.cpp (through `whisper-rs`).
#![allow(unsafe_code)] // two C callbacks, with their SAFETY notes
//!
//! The model is loaded once, after its bytes are checked against the catalog's pin, and
//! shared; each worker takes a decoding state of its own from a pool (a state holds the
//! key-value caches and compute buffers, tens of MB, so they are made on demand and kept up
//! to the worker count). The language, unless given, is detected from an encoding of the
//! clip's own length ([`detect_language`]); the words come from full 30-second windows, or
//! from the clip's own length too with `engine.whisper.window: fitted`. whisper.cpp does
//! what OpenAI's reference transcriber does: 30-second windows advanced by the predicted timestamps, beam search at temperature 0 with the
//! fallback to higher temperatures when a window's average log-probability is low or its
//! text too repetitive, and a window skipped as non-speech when its no-speech probability is
//! high and the decoding unsure. A channel with no frame above the speech floor is not
//! decoded at all: Whisper invents words ("Thank you.") on silence.

use std::path::Path;
use std::sync::Arc;

use perf_pool::manager::PoolManager;
use perf_pool::object::ObjectPool;
use perf_pool::task::CancelToken;
use whisper_rs::whisper_rs_sys as sys;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{DecodeOptions, Decoded, EngineError, Scores, Task, Transcriber, Utterance, Word};
use crate::config::{WhisperEngineConfig, WhisperWindow};
use crate::models;

/// Whisper's sample rate.
const SAMPLE_RATE: f64 = 16_000.0;

/// Frames of 30 ms whose RMS stays under this (about -50 dBFS) are not speech.
const SPEECH_FLOOR: f64 = 0.003;

/// Samples per encoder position: the encoder halves the mel spectrogram's 100 frames per
/// second into 50 positions.
const SAMPLES_PER_POSITION: usize = 320;

/// The encoder's full window: 30 seconds.
const WINDOW_POSITIONS: usize = 1500;

/// Encoder positions encoded past the end of a short clip: one second.
const FIT_MARGIN: usize = 50;

/// Fitted widths are multiples of this (1.28 s).
const FIT_STEP: usize = 64;

/// The encoder positions that hold `samples` of audio: its own length plus a second,
/// rounded up to a step, or 0 (whisper.cpp's full 30-second window) for audio that fills a
/// window.
///
/// Whisper was trained on windows padded with silence to 30 s, and whisper.cpp encodes all
/// of a window however short the clip; encoding only the clip's length (whisper.cpp's
/// `audio_ctx`) costs a fraction of that. On the recorded speech here it detected the same
/// language and ran about five times faster, but heard a word or two per hundred
/// differently (docs/PERFORMANCE.md): what `WhisperWindow` trades.
#[must_use]
pub fn audio_context(samples: usize) -> i32 {
    let positions =
        (samples.div_ceil(SAMPLES_PER_POSITION) + FIT_MARGIN).next_multiple_of(FIT_STEP);
    i32::try_from(positions)
        .ok()
        .filter(|&positions| positions < WINDOW_POSITIONS as i32)
        .unwrap_or(0)
}

/// The language of `audio` (its id, and the probability of every language), from an
/// encoding `width` positions wide ([`audio_context`]; 0: the full window).
///
/// whisper.cpp detects with the width its state kept from its last decode, so the state is
/// set to `width` first, by a decode of a tenth of a second with the language given (which
/// stores the width and ends before encoding: whisper.cpp leaves the last 100 ms of any
/// audio undecoded; should that change, the encoder-begin callback still stops it). The
/// language a clip is heard in then never depends on the clip decoded before it.
///
/// # Errors
///
/// whisper.cpp's.
pub fn detect_language(
    state: &mut WhisperState,
    audio: &[f32],
    width: i32,
    threads: usize,
) -> Result<(i32, Vec<f32>), whisper_rs::WhisperError> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_language(Some("en"));
    params.set_audio_ctx(width);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    // SAFETY: `stop_before_encoding` reads nothing and answers false.
    unsafe { params.set_start_encoder_callback(Some(stop_before_encoding)) };
    // 1700 samples make the 10 mel frames of a tenth of a second.
    state.full(params, &[0.0; 1_700])?;
    state.pcm_to_mel(audio, threads)?;
    state.lang_detect(0, threads)
}

/// whisper.cpp's encoder-begin callback: never start.
unsafe extern "C" fn stop_before_encoding(
    _context: *mut sys::whisper_context,
    _state: *mut sys::whisper_state,
    _user_data: *mut std::ffi::c_void,
) -> bool {
    false
}

/// Whisper in this process.
pub struct WhisperEngine {
    context: Arc<WhisperContext>,
    model: &'static str,
    states: ObjectPool<Result<WhisperState, EngineError>>,
    threads: usize,
    beam_size: usize,
    best_of: usize,
    window: WhisperWindow,
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine")
            .field("model", &self.model)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl WhisperEngine {
    /// Verifies the model `config.model` under `models_dir` against its pin, loads it, and
    /// makes one decoding state to check it runs; up to `workers` states are kept.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] with the fix when the model is missing, partial, altered
    /// or does not load.
    pub fn load(
        config: &WhisperEngineConfig,
        models_dir: &Path,
        workers: usize,
    ) -> Result<Self, EngineError> {
        let path = models::verify(models_dir, &config.model)
            .map_err(|problem| EngineError::Unavailable(problem.0))?;
        let model = models::spec(&config.model)
            .map(|spec| spec.name)
            .ok_or_else(|| EngineError::Unavailable(format!("unknown model `{}`", config.model)))?;
        whisper_rs::install_logging_hooks();
        let path_text = path.to_str().ok_or_else(|| {
            EngineError::Unavailable(format!("the models path {} is not UTF-8", path.display()))
        })?;
        let mut parameters = WhisperContextParameters::default();
        parameters.use_gpu(false).flash_attn(true);
        let context = WhisperContext::new_with_params(path_text, parameters)
            .map(Arc::new)
            .map_err(|error| {
                EngineError::Unavailable(format!(
                    "whisper.cpp cannot load {}: {error}; run `{}`",
                    path.display(),
                    models::install_command(model, models_dir)
                ))
            })?;
        let pool_context = Arc::clone(&context);
        let states = super::checked_pool("whisper_states", workers, move || {
            pool_context
                .create_state()
                .map_err(|error| EngineError::Failed(format!("a Whisper decoding state: {error}")))
        })
        .map_err(|error| EngineError::Unavailable(error.to_string()))?;
        Ok(WhisperEngine {
            context,
            model,
            states,
            threads: config.threads_per_worker(workers),
            beam_size: config.beam_size,
            best_of: config.best_of,
            window: config.window,
        })
    }

    /// The decoding parameters of one job in `language`, at encoder `width`. `cancel` is
    /// read by whisper.cpp between graph computations, so it must outlive the decoding that
    /// uses these parameters.
    fn params<'a>(
        &self,
        options: &'a DecodeOptions,
        language: &'a str,
        width: i32,
        cancel: &'a CancelToken,
    ) -> FullParams<'a, 'a> {
        let strategy = if self.beam_size > 1 {
            SamplingStrategy::BeamSearch {
                beam_size: self.beam_size as i32,
                patience: -1.0,
            }
        } else {
            SamplingStrategy::Greedy {
                best_of: self.best_of as i32,
            }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.threads as i32);
        params.set_audio_ctx(width);
        params.set_translate(options.task == Task::Translate);
        params.set_language(Some(language));
        params.set_temperature(options.temperature);
        if let Some(prompt) = &options.prompt {
            params.set_initial_prompt(prompt);
        }
        params.set_token_timestamps(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        // whisper-rs's `set_abort_callback_safe` hands whisper.cpp a pointer to a boxed trait
        // object but reads it back as the closure itself, so it answers garbage (it aborted
        // every encode here): the plain C callback is set instead.
        // SAFETY: the callback reads `user_data` as the `CancelToken` it is given here, which
        // the `'a` bound keeps alive for as long as these parameters are used; a
        // `CancelToken` is an `Arc<AtomicBool>`, safe to read from whisper.cpp's threads.
        unsafe {
            params.set_abort_callback(Some(abort_when_cancelled));
            params.set_abort_callback_user_data(std::ptr::from_ref(cancel).cast_mut().cast());
        }
        params
    }
}

/// whisper.cpp's abort callback: stop when the job is cancelled.
unsafe extern "C" fn abort_when_cancelled(user_data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `user_data` is the `&CancelToken` set in `WhisperEngine::params`, alive while
    // whisper.cpp decodes with those parameters.
    let cancel = unsafe { &*user_data.cast::<CancelToken>() };
    cancel.is_cancelled()
}

/// Whether `samples` hold no 30 ms frame louder than the speech floor. Read from the 16-bit
/// samples, so a silent channel is never copied as floats.
fn is_silent(samples: &[i16]) -> bool {
    samples.chunks(480).all(|frame| {
        let energy: f64 = frame
            .iter()
            .map(|&s| (f64::from(s) / 32768.0).powi(2))
            .sum();
        (energy / frame.len() as f64).sqrt() < SPEECH_FLOOR
    })
}

impl Transcriber for WhisperEngine {
    fn name(&self) -> &'static str {
        "whisper"
    }

    fn model(&self) -> &str {
        self.model
    }

    fn transcribe(
        &self,
        samples: &[i16],
        options: &DecodeOptions,
        cancel: &CancelToken,
        on_utterance: &mut dyn FnMut(&Utterance),
    ) -> Result<Decoded, EngineError> {
        if is_silent(samples) {
            return Ok(Decoded {
                utterances: Vec::new(),
                language: options.language.clone(),
            });
        }
        let audio: Vec<f32> = samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
        let mut state = self.states.get();
        if state.is_err() {
            *state = self
                .context
                .create_state()
                .map_err(|error| EngineError::Failed(format!("a Whisper decoding state: {error}")));
        }
        let state = match &mut *state {
            Ok(state) => state,
            Err(error) => return Err(error.clone()),
        };
        let fitted = audio_context(audio.len());
        let language = match &options.language {
            Some(language) => language.clone(),
            None => {
                let (id, _) = detect_language(state, &audio, fitted, self.threads)
                    .map_err(|error| EngineError::Failed(format!("whisper.cpp: {error}")))?;
                whisper_rs::get_lang_str(id)
                    .ok_or_else(|| EngineError::Failed(format!("whisper.cpp: language id {id}")))?
                    .to_owned()
            }
        };
        let width = match self.window {
            WhisperWindow::Full => 0,
            WhisperWindow::Fitted => fitted,
        };
        let mut collector = Collector {
            on_utterance,
            utterances: Vec::new(),
            duration: audio.len() as f64 / SAMPLE_RATE,
        };
        let mut params = self.params(options, &language, width, cancel);
        // whisper-rs's safe segment callback leaks its closure on every call: the plain C
        // callback is given the collector on this stack frame instead.
        // SAFETY: whisper.cpp calls `on_new_segments` only from inside `full` below, on this
        // thread, while `collector` is alive and not otherwise borrowed.
        unsafe {
            params.set_new_segment_callback(Some(on_new_segments));
            params.set_new_segment_callback_user_data(std::ptr::from_mut(&mut collector).cast());
        }
        let outcome = state.full(params, &audio);
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        outcome.map_err(|error| EngineError::Failed(format!("whisper.cpp: {error}")))?;
        Ok(Decoded {
            utterances: collector.utterances,
            language: Some(language),
        })
    }

    fn working_bytes(&self, samples: usize) -> u64 {
        // The samples as floats, and whisper.cpp's log-mel spectrogram of them: 80 floats
        // per 160 samples.
        (samples * std::mem::size_of::<f32>() + samples / 160 * 80 * std::mem::size_of::<f32>())
            as u64
    }

    fn register_pools(&self, pools: &PoolManager) {
        pools.register_objects("whisper_states", &self.states);
    }

    fn models(&self) -> Vec<String> {
        // `whisper-1` is what OpenAI's clients send; it names the model this server runs.
        vec![self.model.to_owned(), "whisper-1".to_owned()]
    }

    fn understands(&self, language: &str) -> bool {
        whisper_rs::get_lang_id(language).is_some()
    }

    fn languages(&self) -> Vec<&'static str> {
        (0..=whisper_rs::get_lang_max_id())
            .filter_map(whisper_rs::get_lang_str)
            .collect()
    }

    fn translates(&self) -> bool {
        true
    }

    fn status(&self) -> super::EngineStatus {
        super::EngineStatus {
            status: "ok",
            detail: format!(
                "whisper ({}, {} threads per worker, beam {}, {} windows)",
                self.model, self.threads, self.beam_size, self.window
            ),
        }
    }
}

/// Where decoded segments go as whisper.cpp reports them.
struct Collector<'a> {
    on_utterance: &'a mut dyn FnMut(&Utterance),
    utterances: Vec<Utterance>,
    /// Seconds of audio: no word ends after it.
    duration: f64,
}

/// One decoded token: its bytes, its start and end (seconds), its probability.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    bytes: Vec<u8>,
    start: f64,
    end: f64,
    probability: f32,
}

/// whisper.cpp's new-segment callback: the last `new` segments as utterances.
unsafe extern "C" fn on_new_segments(
    context: *mut sys::whisper_context,
    state: *mut sys::whisper_state,
    new: std::ffi::c_int,
    user_data: *mut std::ffi::c_void,
) {
    // SAFETY: `user_data` is the `Collector` set in `transcribe`, alive and unborrowed while
    // `full` runs; `context` and `state` are whisper.cpp's own, valid during the callback, and
    // the indexes stay below the counts it reports.
    unsafe {
        let collector = &mut *user_data.cast::<Collector<'_>>();
        let end_of_text = sys::whisper_token_eot(context);
        let segments = sys::whisper_full_n_segments_from_state(state);
        for segment in (segments - new).max(0)..segments {
            let start = sys::whisper_full_get_segment_t0_from_state(state, segment) as f64 / 100.0;
            let end = sys::whisper_full_get_segment_t1_from_state(state, segment) as f64 / 100.0;
            let mut tokens = Vec::new();
            let mut logprob = 0.0;
            for index in 0..sys::whisper_full_n_tokens_from_state(state, segment) {
                let data = sys::whisper_full_get_token_data_from_state(state, segment, index);
                if data.id >= end_of_text {
                    continue;
                }
                logprob += f64::from(data.plog);
                let text = sys::whisper_token_to_str(context, data.id);
                if text.is_null() {
                    continue;
                }
                tokens.push(Token {
                    bytes: std::ffi::CStr::from_ptr(text).to_bytes().to_vec(),
                    start: data.t0 as f64 / 100.0,
                    end: data.t1 as f64 / 100.0,
                    probability: data.p,
                });
            }
            let words = words_of(&tokens, start, end.min(collector.duration));
            if !words.is_empty() {
                let scores = Scores {
                    avg_logprob: logprob / tokens.len() as f64,
                    no_speech_prob: f64::from(
                        sys::whisper_full_get_segment_no_speech_prob_from_state(state, segment),
                    ),
                };
                let utterance = Utterance {
                    words,
                    scores: Some(scores),
                };
                (collector.on_utterance)(&utterance);
                collector.utterances.push(utterance);
            }
        }
    }
}

/// A segment's tokens as words: a token that starts with a space starts a word, and a word
/// runs from its first token's start to its last token's end, kept in order inside the
/// segment (`start` to `end`). Its confidence is its tokens' mean probability.
fn words_of(tokens: &[Token], start: f64, end: f64) -> Vec<Word> {
    let end = end.max(start);
    let mut grouped: Vec<(Vec<u8>, f64, f64, Vec<f32>)> = Vec::new();
    for token in tokens {
        if token.bytes.first() == Some(&b' ') || grouped.is_empty() {
            grouped.push((Vec::new(), token.start, token.end, Vec::new()));
        }
        if let Some(word) = grouped.last_mut() {
            word.0.extend_from_slice(&token.bytes);
            word.2 = word.2.max(token.end);
            word.3.push(token.probability);
        }
    }
    let mut previous_end = start;
    grouped
        .into_iter()
        .filter_map(|(bytes, word_start, word_end, probabilities)| {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            if text.is_empty() {
                return None;
            }
            let word_start = word_start.clamp(previous_end, end);
            let word_end = word_end.clamp(word_start, end);
            previous_end = word_end;
            Some(Word {
                text,
                start: word_start,
                end: word_end,
                confidence: probabilities.iter().map(|p| f64::from(*p)).sum::<f64>()
                    / probabilities.len() as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_faint_hiss_are_not_speech() {
        assert!(is_silent(&vec![0; 16_000]));
        // 0.001 of full scale.
        let hiss: Vec<i16> = (0..16_000)
            .map(|i| if i % 2 == 0 { 33 } else { -33 })
            .collect();
        assert!(is_silent(&hiss));
        let mut speech = hiss;
        for sample in &mut speech[8000..8480] {
            *sample *= 50;
        }
        assert!(!is_silent(&speech));
    }

    fn token(text: &str, start: f64, end: f64) -> Token {
        Token {
            bytes: text.as_bytes().to_vec(),
            start,
            end,
            probability: 0.5,
        }
    }

    #[test]
    fn tokens_join_into_words_at_spaces_in_time_order() {
        let tokens = [
            token(" Hel", 1.0, 1.2),
            token("lo", 1.2, 1.4),
            token(" world", 1.3, 1.9),
            token(".", 1.9, 2.0),
            // A timestamp that runs past the segment is held inside it.
            token(" again", 2.4, 9.0),
        ];
        let words = words_of(&tokens, 1.0, 3.0);
        let texts: Vec<&str> = words.iter().map(|word| word.text.as_str()).collect();
        assert_eq!(texts, ["Hello", "world.", "again"]);
        assert_eq!((words[0].start, words[0].end), (1.0, 1.4));
        // The second word may not start before the first ends.
        assert_eq!((words[1].start, words[1].end), (1.4, 2.0));
        assert_eq!(words[2].end, 3.0);
    }

    #[test]
    fn a_character_split_across_tokens_is_whole_in_its_word() {
        // "é" is 0xC3 0xA9; Whisper's byte-level tokens may cut it in two.
        let tokens = [
            Token {
                bytes: b" caf\xC3".to_vec(),
                start: 0.0,
                end: 0.2,
                probability: 0.9,
            },
            Token {
                bytes: vec![0xA9],
                start: 0.2,
                end: 0.3,
                probability: 0.7,
            },
        ];
        let words = words_of(&tokens, 0.0, 1.0);
        assert_eq!(words[0].text, "café");
        assert!((words[0].confidence - 0.8).abs() < 1e-6);
    }
}
