//! CMU PocketSphinx, loaded at run time from Debian's `libpocketsphinx3` with libloading, so
//! building the server never needs it. The one module of the crate with unsafe code: the
//! C calls, each with the reason it is sound.
//!
//! Decoding follows `pocketsphinx_continuous` exactly (blocks of 2048 samples, an utterance
//! ended whenever the voice-activity detector leaves speech), so the words are the CLI's.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use libloading::Library;
use perf_pool::task::CancelToken;

use super::{EngineError, Utterance, Word};

/// The libraries' file names (Debian 12: 5prealpha).
const POCKETSPHINX: &str = "libpocketsphinx.so.3";
const SPHINXBASE: &str = "libsphinxbase.so.3";
/// Samples per `ps_process_raw` call, as the CLI reads them.
const BLOCK: usize = 2048;
/// Frames per second of the front end (`-frate`'s default).
const FRAME_RATE: f64 = 100.0;

type Ptr = *mut c_void;

/// The C functions used, resolved once.
struct Api {
    ps_args: unsafe extern "C" fn() -> *const c_void,
    ps_init: unsafe extern "C" fn(Ptr) -> Ptr,
    ps_free: unsafe extern "C" fn(Ptr) -> c_int,
    ps_start_stream: unsafe extern "C" fn(Ptr) -> c_int,
    ps_start_utt: unsafe extern "C" fn(Ptr) -> c_int,
    ps_process_raw: unsafe extern "C" fn(Ptr, *const i16, usize, c_int, c_int) -> c_int,
    ps_end_utt: unsafe extern "C" fn(Ptr) -> c_int,
    ps_get_in_speech: unsafe extern "C" fn(Ptr) -> u8,
    ps_seg_iter: unsafe extern "C" fn(Ptr) -> Ptr,
    ps_seg_next: unsafe extern "C" fn(Ptr) -> Ptr,
    ps_seg_word: unsafe extern "C" fn(Ptr) -> *const c_char,
    ps_seg_frames: unsafe extern "C" fn(Ptr, *mut c_int, *mut c_int),
    ps_seg_prob: unsafe extern "C" fn(Ptr, *mut i32, *mut i32, *mut i32) -> i32,
    ps_get_logmath: unsafe extern "C" fn(Ptr) -> Ptr,
    ps_get_feat: unsafe extern "C" fn(Ptr) -> Ptr,
    cmd_ln_parse_r: unsafe extern "C" fn(Ptr, *const c_void, c_int, *mut *mut c_char, c_int) -> Ptr,
    cmd_ln_free_r: unsafe extern "C" fn(Ptr) -> c_int,
    logmath_exp: unsafe extern "C" fn(Ptr, c_int) -> f64,
}

/// The loaded libraries and their functions. Never unloaded while a decoder exists: each
/// decoder holds an `Arc` of this.
pub(crate) struct Sphinx {
    api: Api,
    _pocketsphinx: Library,
    _sphinxbase: Library,
}

impl std::fmt::Debug for Sphinx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sphinx")
    }
}

impl Sphinx {
    /// Loads the libraries, or says why they cannot be used.
    pub(crate) fn load() -> Result<Arc<Self>, EngineError> {
        let missing = |error: libloading::Error| {
            EngineError::Unavailable(format!(
                "PocketSphinx is not installed ({error}); install it with `apt-get install libpocketsphinx3 pocketsphinx-en-us`"
            ))
        };
        // SAFETY: loading runs the libraries' initialisers, which for these two C libraries
        // only set up static tables; nothing else in the process depends on them.
        let sphinxbase = unsafe { Library::new(SPHINXBASE) }.map_err(missing)?;
        // SAFETY: as above; libpocketsphinx's dependency on libsphinxbase is resolved by the
        // dynamic loader, which finds the copy loaded just before.
        let pocketsphinx = unsafe { Library::new(POCKETSPHINX) }.map_err(missing)?;
        macro_rules! resolve {
            ($library:expr, $name:ident) => {{
                // SAFETY: the type written in `Api` is the function's C prototype in the
                // 5prealpha headers (pocketsphinx.h, cmd_ln.h, logmath.h); the pointer is
                // copied out of the `Symbol` and stays valid as long as the library, which
                // `Sphinx` owns.
                let symbol = unsafe { $library.get(concat!(stringify!($name), "\0").as_bytes()) }
                    .map_err(missing)?;
                *symbol
            }};
        }
        let api = Api {
            ps_args: resolve!(pocketsphinx, ps_args),
            ps_init: resolve!(pocketsphinx, ps_init),
            ps_free: resolve!(pocketsphinx, ps_free),
            ps_start_stream: resolve!(pocketsphinx, ps_start_stream),
            ps_start_utt: resolve!(pocketsphinx, ps_start_utt),
            ps_process_raw: resolve!(pocketsphinx, ps_process_raw),
            ps_end_utt: resolve!(pocketsphinx, ps_end_utt),
            ps_get_in_speech: resolve!(pocketsphinx, ps_get_in_speech),
            ps_seg_iter: resolve!(pocketsphinx, ps_seg_iter),
            ps_seg_next: resolve!(pocketsphinx, ps_seg_next),
            ps_seg_word: resolve!(pocketsphinx, ps_seg_word),
            ps_seg_frames: resolve!(pocketsphinx, ps_seg_frames),
            ps_seg_prob: resolve!(pocketsphinx, ps_seg_prob),
            ps_get_logmath: resolve!(pocketsphinx, ps_get_logmath),
            ps_get_feat: resolve!(pocketsphinx, ps_get_feat),
            cmd_ln_parse_r: resolve!(sphinxbase, cmd_ln_parse_r),
            cmd_ln_free_r: resolve!(sphinxbase, cmd_ln_free_r),
            logmath_exp: resolve!(sphinxbase, logmath_exp),
        };
        Ok(Arc::new(Sphinx {
            api,
            _pocketsphinx: pocketsphinx,
            _sphinxbase: sphinxbase,
        }))
    }
}

/// One decoder: the acoustic model, language model and dictionary loaded (a second or two),
/// so decoders are kept in a pool and reused.
///
/// A decoder learns the channel as it listens: its cepstral mean (live CMN) moves after every
/// utterance. Reused as it is, it would hear a file differently depending on what it decoded
/// before, and differently from `pocketsphinx_continuous`, which starts fresh. So the
/// state it started with is kept and restored before each file ([`CmnReset`]).
pub(crate) struct Decoder {
    ps: NonNull<c_void>,
    sphinx: Arc<Sphinx>,
    reset: Option<CmnReset>,
}

/// A decoder's CMN state (`cmn_t`) and a copy of it as it was when the decoder was made.
/// sphinxbase has no call that puts it back as it was (`cmn_live_set` also claims 500
/// frames of history, which a fresh decoder does not have), so the fields are restored.
struct CmnReset {
    cmn: NonNull<u8>,
    mean: Vec<u32>,
    sum: Vec<u32>,
    nframe: i32,
}

/// sphinxbase 5prealpha's layouts on 64-bit targets (feat.h, cmn.h). `feat_t`: `cepsize`
/// (int32) at byte 16, `cmn_struct` at 88. `cmn_t`: `cmn_mean` at 0, `sum` at 16 (arrays of
/// `veclen` 4-byte values), `nframe` at 24, `veclen` at 28. The library exports no getter
/// for these; they are used only when both structs report the model's cepstrum length at
/// the expected places, which another layout would not, and a decoder whose layout does not
/// check out is not reused (see [`Decoder::reusable`]).
const FEAT_CEPSIZE: usize = 16;
const FEAT_CMN: usize = 88;
const CMN_MEAN: usize = 0;
const CMN_SUM: usize = 16;
const CMN_NFRAME: usize = 24;
const CMN_VECLEN: usize = 28;
/// The cepstrum length of Debian's en-us model.
const CEPSIZE: i32 = 13;

impl CmnReset {
    /// The CMN state of a fresh decoder `ps`, if the layouts check out.
    ///
    /// # Safety
    ///
    /// `ps` is a live decoder, `ps_get_feat` its API's function.
    unsafe fn capture(ps_get_feat: unsafe extern "C" fn(Ptr) -> Ptr, ps: Ptr) -> Option<Self> {
        if cfg!(not(target_pointer_width = "64")) {
            return None;
        }
        // SAFETY: `feat` is the decoder's live `feat_t` and `cmn` its `cmn_t`, both larger
        // than the offsets read (plain integers and pointers, read unaligned); the arrays are
        // read only after both structs agree on their length, CEPSIZE.
        unsafe {
            let feat = ps_get_feat(ps).cast::<u8>();
            if feat.is_null() || feat.add(FEAT_CEPSIZE).cast::<i32>().read_unaligned() != CEPSIZE {
                return None;
            }
            let cmn = NonNull::new(feat.add(FEAT_CMN).cast::<*mut u8>().read_unaligned())?;
            let base = cmn.as_ptr();
            if base.add(CMN_VECLEN).cast::<i32>().read_unaligned() != CEPSIZE {
                return None;
            }
            let array = |offset: usize| -> Option<Vec<u32>> {
                let values = base.add(offset).cast::<*const u32>().read_unaligned();
                (!values.is_null())
                    .then(|| std::slice::from_raw_parts(values, CEPSIZE as usize).to_vec())
            };
            Some(CmnReset {
                cmn,
                mean: array(CMN_MEAN)?,
                sum: array(CMN_SUM)?,
                nframe: base.add(CMN_NFRAME).cast::<i32>().read_unaligned(),
            })
        }
    }

    /// Puts the state back as captured.
    ///
    /// # Safety
    ///
    /// The decoder this was captured from is live and used by no other thread.
    unsafe fn restore(&self) {
        let base = self.cmn.as_ptr();
        // SAFETY: the same fields `capture` read, in the same live struct; the arrays hold
        // CEPSIZE values, the length checked then.
        unsafe {
            for (offset, values) in [(CMN_MEAN, &self.mean), (CMN_SUM, &self.sum)] {
                let target = base.add(offset).cast::<*mut u32>().read_unaligned();
                std::ptr::copy_nonoverlapping(values.as_ptr(), target, values.len());
            }
            base.add(CMN_NFRAME)
                .cast::<i32>()
                .write_unaligned(self.nframe);
        }
    }
}

// SAFETY: a PocketSphinx decoder (and the CMN state inside it that `reset` points at) has
// no thread affinity; it must not be used by two threads at once, which `&mut self` on every
// use and the pool's one-owner guard ensure.
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("reusable", &self.reusable())
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for the model in `model_dir` (Debian's `en-us`).
    pub(crate) fn new(sphinx: Arc<Sphinx>, model_dir: &Path) -> Result<Self, EngineError> {
        for file in ["en-us", "en-us.lm.bin", "cmudict-en-us.dict"] {
            if !model_dir.join(file).exists() {
                return Err(EngineError::Unavailable(format!(
                    "the PocketSphinx model is missing {} (install pocketsphinx-en-us)",
                    model_dir.join(file).display()
                )));
            }
        }
        let path = |file: &str| model_dir.join(file).display().to_string();
        // argv as a C program's main gets it: the program name first.
        let arguments = [
            "pocwhisp".to_owned(),
            "-hmm".to_owned(),
            path("en-us"),
            "-lm".to_owned(),
            path("en-us.lm.bin"),
            "-dict".to_owned(),
            path("cmudict-en-us.dict"),
            "-logfn".to_owned(),
            "/dev/null".to_owned(),
        ];
        let owned: Vec<CString> = arguments
            .iter()
            .map(|argument| CString::new(argument.as_str()).expect("paths hold no NUL"))
            .collect();
        let mut argv: Vec<*mut c_char> = owned.iter().map(|arg| arg.as_ptr().cast_mut()).collect();
        let api = &sphinx.api;
        // SAFETY: `ps_args` returns a pointer to a static table of the decoder's argument
        // definitions; `argv` holds `argc` valid NUL-terminated strings that outlive the call
        // (`owned`), which only reads them and copies what it keeps.
        let config = unsafe {
            (api.cmd_ln_parse_r)(
                std::ptr::null_mut(),
                (api.ps_args)(),
                argv.len() as c_int,
                argv.as_mut_ptr(),
                1,
            )
        };
        let config = NonNull::new(config)
            .ok_or_else(|| EngineError::Failed("PocketSphinx refused its arguments".to_owned()))?;
        // SAFETY: `config` is the live configuration just parsed; `ps_init` takes its own
        // reference, so ours is released right after whatever it returns.
        let ps = unsafe {
            let ps = (api.ps_init)(config.as_ptr());
            (api.cmd_ln_free_r)(config.as_ptr());
            ps
        };
        let ps = NonNull::new(ps).ok_or_else(|| {
            EngineError::Failed(format!(
                "PocketSphinx could not load the model in {}",
                model_dir.display()
            ))
        })?;
        // SAFETY: `ps` was just made and is used by this thread alone.
        let reset = unsafe { CmnReset::capture(sphinx.api.ps_get_feat, ps.as_ptr()) };
        Ok(Decoder { ps, sphinx, reset })
    }

    /// Whether this decoder can decode another file after this one and hear it as a fresh
    /// one would (its CMN can be reset).
    pub(crate) fn reusable(&self) -> bool {
        self.reset.is_some()
    }

    /// Decodes one channel of 16 kHz samples into utterances of timed words.
    pub(crate) fn decode(
        &mut self,
        samples: &[i16],
        cancel: &CancelToken,
        on_utterance: &mut dyn FnMut(&Utterance),
    ) -> Result<Vec<Utterance>, EngineError> {
        let api = &self.sphinx.api;
        let ps = self.ps.as_ptr();
        let mut utterances = Vec::new();
        // SAFETY: `ps` is this decoder's live handle, used by this thread alone (`&mut
        // self`); every sample block is a valid slice for the length given, which the call
        // only reads.
        unsafe {
            if let Some(reset) = &self.reset {
                reset.restore();
            }
            (api.ps_start_stream)(ps);
            if (api.ps_start_utt)(ps) < 0 {
                return Err(EngineError::Failed("ps_start_utt failed".to_owned()));
            }
            let mut in_utterance = false;
            for block in samples.chunks(BLOCK) {
                if cancel.is_cancelled() {
                    (api.ps_end_utt)(ps);
                    return Err(EngineError::Cancelled);
                }
                if (api.ps_process_raw)(ps, block.as_ptr(), block.len(), 0, 0) < 0 {
                    (api.ps_end_utt)(ps);
                    return Err(EngineError::Failed("ps_process_raw failed".to_owned()));
                }
                let in_speech = (api.ps_get_in_speech)(ps) != 0;
                if in_speech && !in_utterance {
                    in_utterance = true;
                }
                if !in_speech && in_utterance {
                    (api.ps_end_utt)(ps);
                    let utterance = self.words();
                    on_utterance(&utterance);
                    utterances.push(utterance);
                    (api.ps_start_utt)(ps);
                    in_utterance = false;
                }
            }
            (api.ps_end_utt)(ps);
            if in_utterance {
                let utterance = self.words();
                on_utterance(&utterance);
                utterances.push(utterance);
            }
        }
        Ok(utterances)
    }

    /// The words of the utterance just ended.
    fn words(&self) -> Utterance {
        let api = &self.sphinx.api;
        let ps = self.ps.as_ptr();
        let mut words = Vec::new();
        // SAFETY: the segment iterator belongs to `ps` and is advanced to its end, where
        // `ps_seg_next` frees it and returns null; each word string is owned by the decoder
        // and copied before the next call; `logmath` lives as long as `ps`.
        unsafe {
            let logmath = (api.ps_get_logmath)(ps);
            let mut segment = (api.ps_seg_iter)(ps);
            while !segment.is_null() {
                let word = CStr::from_ptr((api.ps_seg_word)(segment))
                    .to_string_lossy()
                    .into_owned();
                let (mut start, mut end) = (0, 0);
                (api.ps_seg_frames)(segment, &mut start, &mut end);
                let probability = (api.ps_seg_prob)(
                    segment,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                let confidence = (api.logmath_exp)(logmath, probability);
                words.push(Word {
                    text: word,
                    start: f64::from(start) / FRAME_RATE,
                    // As the CLI prints them: the last frame's start.
                    end: f64::from(end) / FRAME_RATE,
                    confidence: confidence.clamp(0.0, 1.0),
                });
                segment = (api.ps_seg_next)(segment);
            }
        }
        Utterance {
            words,
            scores: None,
        }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the handle is live and dropped once; nothing uses it after.
        unsafe {
            (self.sphinx.api.ps_free)(self.ps.as_ptr());
        }
    }
}
