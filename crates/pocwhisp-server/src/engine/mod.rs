//! Speech engines behind one [`Transcriber`] trait, and what turns an engine's timed words
//! into the API's transcript: segments per speaker split at pauses, stereo channels merged
//! in time order ([`segments_of`]), and a summary ([`summary`]).

pub mod openai;
mod segments;
mod sphinx;
pub mod summary;
pub mod whisper;

use std::path::PathBuf;
use std::sync::Arc;

use perf_pool::manager::PoolManager;
use perf_pool::object::ObjectPool;
use perf_pool::task::CancelToken;

pub use segments::{segments_of, speakers_for, text_of};
pub use whisper::WhisperEngine;

use crate::config::{EngineConfig, EngineKind};

/// What the speech is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Text in the language spoken.
    #[default]
    Transcribe,
    /// English text, whatever the language spoken.
    Translate,
}

/// How a client asked for its audio to be decoded. Part of a session, and of the key under
/// which its transcript is reused.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DecodeOptions {
    /// The language spoken (ISO-639-1); `None` to detect it.
    pub language: Option<String>,
    /// Transcribe or translate.
    pub task: Task,
    /// Text that came before, to steer spelling and style.
    pub prompt: Option<String>,
    /// The first temperature tried (0: beam search, falling back to higher ones).
    pub temperature: f32,
}

/// A recognised word with its time (seconds from the start of its channel) and the engine's
/// confidence in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as the engine spells it (fillers like `<sil>` included).
    pub text: String,
    /// Seconds.
    pub start: f64,
    /// Seconds.
    pub end: f64,
    /// 0 to 1.
    pub confidence: f64,
}

/// The words between two pauses the engine detected.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Utterance {
    /// In time order.
    pub words: Vec<Word>,
    /// How sure the decoder was, when it says (Whisper does, per segment).
    pub scores: Option<Scores>,
}

/// A decoder's own judgement of a stretch of speech, as OpenAI's `verbose_json` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// Mean natural-log probability of its tokens.
    pub avg_logprob: f64,
    /// Probability that the window held no speech.
    pub no_speech_prob: f64,
}

/// One channel, decoded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// The utterances, in time order.
    pub utterances: Vec<Utterance>,
    /// The language of the text (ISO-639-1), when the engine knows it.
    pub language: Option<String>,
}

/// How an engine is doing, for `/api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStatus {
    /// `ok`, `degraded` or `down`.
    pub status: &'static str,
    /// What was found (the failing servers of a remote engine).
    pub detail: String,
}

/// Why an engine produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine cannot run on this machine; the message says how to fix it.
    Unavailable(String),
    /// The configuration asks for an engine that cannot be made as configured (PocketSphinx
    /// named but missing, a remote engine's settings wrong): the server does not start.
    Misconfigured(String),
    /// The job was cancelled (its session deleted, the server stopping).
    Cancelled,
    /// The engine failed on this audio.
    Failed(String),
    /// No server of a remote engine could be reached or answered: nothing is known about the
    /// audio, so the job should wait rather than spend an attempt.
    Unreachable(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Unavailable(reason)
            | EngineError::Misconfigured(reason)
            | EngineError::Failed(reason)
            | EngineError::Unreachable(reason) => f.write_str(reason),
            EngineError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for EngineError {}

/// A speech engine: 16 kHz mono samples in, utterances of timed words out. Blocking: it runs
/// on the task pool's blocking threads.
pub trait Transcriber: Send + Sync {
    /// The engine's name, recorded on each session (`sphinx`).
    fn name(&self) -> &'static str;
    /// The model, recorded on each session (`en-us`).
    fn model(&self) -> &str;
    /// Recognises one channel, handing each utterance to `on_utterance` as soon as it is
    /// decoded (the OpenAI endpoint streams them).
    ///
    /// # Errors
    ///
    /// An [`EngineError`].
    fn transcribe(
        &self,
        samples: &[i16],
        options: &DecodeOptions,
        cancel: &CancelToken,
        on_utterance: &mut dyn FnMut(&Utterance),
    ) -> Result<Decoded, EngineError>;

    /// Bytes it takes beyond the samples to transcribe `samples` of one channel (its own copy
    /// of them, its features), counted against `memory.limit` with the decoded audio.
    fn working_bytes(&self, _samples: usize) -> u64 {
        0
    }
    /// Lists the engine's pools (decoders, connections) on the server's pool manager, for
    /// `/performance` and the metrics.
    fn register_pools(&self, _pools: &PoolManager) {}

    /// The model names it answers to on `/v1/audio/transcriptions` (`GET /v1/models`).
    fn models(&self) -> Vec<String> {
        vec![self.name().to_owned()]
    }

    /// Whether it transcribes `language` (an ISO-639-1 code).
    fn understands(&self, language: &str) -> bool {
        self.languages().contains(&language)
    }

    /// The languages it transcribes (ISO-639-1 codes), for error messages.
    fn languages(&self) -> Vec<&'static str> {
        vec!["en"]
    }

    /// Whether it translates speech into English (`Task::Translate`).
    fn translates(&self) -> bool {
        false
    }

    /// How it is doing now.
    fn status(&self) -> EngineStatus {
        EngineStatus {
            status: "ok",
            detail: format!("{} ({})", self.name(), self.model()),
        }
    }

    /// How long until the engine can take work again, when it cannot now (every remote
    /// down): uploads are refused at once rather than stored to fail.
    fn unavailable_for(&self) -> Option<std::time::Duration> {
        None
    }
}

/// CMU PocketSphinx with Debian's English model; decoders pooled, since making one loads
/// the models.
pub struct SphinxEngine {
    sphinx: Arc<sphinx::Sphinx>,
    model_dir: PathBuf,
    decoders: ObjectPool<Result<sphinx::Decoder, EngineError>>,
}

impl std::fmt::Debug for SphinxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SphinxEngine")
            .field("model_dir", &self.model_dir)
            .finish_non_exhaustive()
    }
}

impl SphinxEngine {
    /// Loads the library and makes one decoder to check that the model loads; up to
    /// `decoders` are kept for reuse.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] with the fix when the library or model is missing.
    pub fn load(model_dir: PathBuf, decoders: usize) -> Result<Self, EngineError> {
        let sphinx = sphinx::Sphinx::load()?;
        let (pool_sphinx, pool_dir) = (Arc::clone(&sphinx), model_dir.clone());
        let decoders = checked_pool("decoders", decoders, move || {
            sphinx::Decoder::new(Arc::clone(&pool_sphinx), &pool_dir)
        })?;
        Ok(SphinxEngine {
            sphinx,
            model_dir,
            decoders,
        })
    }
}

impl Transcriber for SphinxEngine {
    fn name(&self) -> &'static str {
        "sphinx"
    }

    fn model(&self) -> &str {
        "en-us"
    }

    fn transcribe(
        &self,
        samples: &[i16],
        _options: &DecodeOptions,
        cancel: &CancelToken,
        on_utterance: &mut dyn FnMut(&Utterance),
    ) -> Result<Decoded, EngineError> {
        let mut decoder = self.decoders.get();
        if decoder.is_err() {
            *decoder = sphinx::Decoder::new(Arc::clone(&self.sphinx), &self.model_dir);
        }
        let result = match &mut *decoder {
            Ok(decoder) => decoder
                .decode(samples, cancel, on_utterance)
                .map(|utterances| Decoded {
                    utterances,
                    language: Some("en".to_owned()),
                }),
            Err(error) => Err(error.clone()),
        };
        if decoder.as_ref().is_ok_and(|decoder| !decoder.reusable()) {
            // Its state cannot be reset: the next job loads a fresh one.
            *decoder = Err(EngineError::Failed("decoder spent".to_owned()));
        }
        result
    }

    fn register_pools(&self, pools: &PoolManager) {
        pools.register_objects("decoders", &self.decoders);
    }
}

/// A pool of what each job decodes with (a decoder, a decoding state), made by `make` and
/// kept up to `keep` idle; one is made now to check that it can be, and stays in the pool for
/// the first job.
///
/// # Errors
///
/// The error of that first one.
fn checked_pool<T: Send + 'static>(
    name: &'static str,
    keep: usize,
    make: impl Fn() -> Result<T, EngineError> + Send + Sync + 'static,
) -> Result<ObjectPool<Result<T, EngineError>>, EngineError> {
    let pool = ObjectPool::builder(make)
        .name(name)
        .metrics_prefix("pocwhisp_pool")
        .max_idle(keep.max(1))
        .build()
        .map_err(|error| EngineError::Failed(error.to_string()))?;
    if let Err(error) = &*pool.get() {
        return Err(error.clone());
    }
    Ok(pool)
}

/// The engine the configuration chose.
///
/// # Errors
///
/// [`EngineError::Unavailable`] when none is configured or can run (`auto` on a machine with
/// neither a Whisper model nor PocketSphinx, `whisper` without its model), saying how to fix
/// it: the server then starts degraded. [`EngineError::Misconfigured`] when `sphinx` was
/// asked for and cannot run, or the remote engine's configuration is wrong: the server does
/// not start.
pub fn select(
    config: &EngineConfig,
    models_dir: &std::path::Path,
    workers: usize,
) -> Result<Arc<dyn Transcriber>, EngineError> {
    let whisper = || {
        WhisperEngine::load(&config.whisper, models_dir, workers)
            .map(|engine| Arc::new(engine) as Arc<dyn Transcriber>)
    };
    let sphinx = || {
        SphinxEngine::load(config.sphinx_model_dir.clone(), workers)
            .map(|engine| Arc::new(engine) as Arc<dyn Transcriber>)
    };
    let misconfigured = |error: EngineError| EngineError::Misconfigured(error.to_string());
    match config.kind {
        EngineKind::None => Err(EngineError::Unavailable(
            "no speech engine is configured (engine.kind is none); set POCWHISP_ENGINE=whisper, sphinx or auto".to_owned(),
        )),
        EngineKind::Whisper => whisper(),
        EngineKind::Sphinx => sphinx().map_err(misconfigured),
        EngineKind::Openai => openai::OpenAiEngine::new(&config.openai)
            .map(|engine| Arc::new(engine) as Arc<dyn Transcriber>)
            .map_err(misconfigured),
        EngineKind::Auto => whisper().or_else(|whisper_error| {
            sphinx().map_err(|sphinx_error| {
                EngineError::Unavailable(format!("{whisper_error}; and {sphinx_error}"))
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_asked_for_and_missing_stops_the_server_and_none_degrades_it() {
        let models = tempfile::TempDir::new().unwrap();
        let select_kind = |kind, sphinx_model_dir: &str| {
            let config = EngineConfig {
                kind,
                sphinx_model_dir: sphinx_model_dir.into(),
                ..EngineConfig::default()
            };
            select(&config, models.path(), 1).err()
        };
        // PocketSphinx named, its model absent: a configuration to fix before starting.
        assert!(matches!(
            select_kind(EngineKind::Sphinx, "/nonexistent/pocketsphinx"),
            Some(EngineError::Misconfigured(_))
        ));
        // No engine, or Whisper without its model: the server starts and says why.
        assert!(matches!(
            select_kind(EngineKind::None, "/nonexistent/pocketsphinx"),
            Some(EngineError::Unavailable(_))
        ));
        assert!(matches!(
            select_kind(EngineKind::Whisper, "/nonexistent/pocketsphinx"),
            Some(EngineError::Unavailable(_))
        ));
    }
}
