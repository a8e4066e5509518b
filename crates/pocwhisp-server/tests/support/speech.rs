//! Debian's recorded speech and the library's own command-line decoder, shared by the
//! engine tests and the API tests.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use pocwhisp_server::audio::decode;
use pocwhisp_server::config::{AudioConfig, EngineConfig, MemoryLimit};
use pocwhisp_server::memory::MemoryGuard;

/// `pocketsphinx-testdata`'s LibriVox recordings and their reference transcripts.
pub(crate) const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// The recording `id` (`sense_and_sensibility_01_austen_64kb-0870`).
pub(crate) fn recording(id: &str) -> PathBuf {
    Path::new(LIBRIVOX).join(format!("{id}.wav"))
}

/// `file` decoded at the engine's rate, as a job decodes it: one vector per channel.
pub(crate) fn at_engine_rate(file: &Path) -> Vec<Vec<i16>> {
    let memory = MemoryGuard::new(MemoryLimit::Unset);
    decode::decode_for_engine(file, &AudioConfig::default(), &mut memory.reservation())
        .unwrap()
        .channels
}

/// The reference transcripts: file id to words.
pub(crate) fn references() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(Path::new(LIBRIVOX).join("transcription")).unwrap();
    text.lines()
        .map(|line| {
            let (words, id) = line.rsplit_once(" (").unwrap();
            let words = words
                .split_whitespace()
                .filter(|word| !word.starts_with('<'))
                .map(str::to_owned)
                .collect();
            (id.trim_end_matches(')').to_owned(), words)
        })
        .collect()
}

/// What `pocketsphinx_continuous` hears in `file`.
pub(crate) fn cli_words(file: &Path) -> Vec<String> {
    let model = EngineConfig::default().sphinx_model_dir;
    let output = Command::new("pocketsphinx_continuous")
        .arg("-infile")
        .arg(file)
        .arg("-hmm")
        .arg(model.join("en-us"))
        .arg("-lm")
        .arg(model.join("en-us.lm.bin"))
        .arg("-dict")
        .arg(model.join("cmudict-en-us.dict"))
        .arg("-logfn")
        .arg("/dev/null")
        .output()
        .expect("pocketsphinx_continuous, from Debian's pocketsphinx (scripts/test installs it)");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Word-level edit distance.
pub(crate) fn errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, word) in reference.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, heard) in hypothesis.iter().enumerate() {
            let substitution = previous[j] + usize::from(word != heard);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[hypothesis.len()]
}

/// Words of a transcript's text, fillers and case aside.
pub(crate) fn words_of(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Runs sox (Debian's `sox` and `libsox-fmt-mp3`, which scripts/test installs).
pub(crate) fn sox(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let status = Command::new("sox")
        .args(args.iter().map(|arg| arg.as_ref()))
        .status()
        .expect("sox, from Debian (scripts/test installs it)");
    assert!(status.success(), "sox failed");
}

/// Runs ffmpeg (Debian's, which scripts/test installs) quietly, overwriting its output.
pub(crate) fn ffmpeg(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args.iter().map(|arg| arg.as_ref()))
        .status()
        .expect("ffmpeg, from Debian (scripts/test installs it)");
    assert!(status.success(), "ffmpeg failed");
}

/// The five recordings back to back (about 25 s of speech, a few seconds to transcribe),
/// starting with the `first`-th, written to `dir`: long enough that a job is still running
/// when a test acts on it, and different audio for each `first`.
pub(crate) fn joined_recordings(dir: &Path, first: usize) -> PathBuf {
    let mut files: Vec<PathBuf> = references()
        .into_iter()
        .map(|(id, _)| recording(&id))
        .collect();
    let count = files.len();
    files.rotate_left(first % count);
    let joined = dir.join(format!("joined-{first}.wav"));
    files.push(joined.clone());
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = files.iter().map(|path| path as _).collect();
    sox(&args);
    joined
}

/// Where `scripts/test` installed the Whisper models: `POCWHISP_MODELS_DIR`, else the
/// default directory.
pub(crate) fn models_dir() -> PathBuf {
    std::env::var_os("POCWHISP_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(pocwhisp_server::models::default_dir)
}

/// An English sentence of about 11 s and its German counterpart of about 12 s as espeak-ng
/// speaks them (long enough for language detection to be sure of a robotic voice).
pub(crate) const ENGLISH: &str = "The quick brown fox jumps over the lazy dog. Please send the quarterly report to the finance team by Friday. The meeting has been moved to Tuesday afternoon.";
pub(crate) const GERMAN: &str = "Der schnelle braune Fuchs springt über den faulen Hund. Bitte schicken Sie den Quartalsbericht bis Freitag an das Finanzteam. Die Besprechung wurde auf Dienstagnachmittag verschoben.";

/// `text` spoken by espeak-ng (Debian's `espeak-ng`) in `voice`, written to `dir`.
pub(crate) fn spoken(dir: &Path, voice: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{voice}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng, from Debian (scripts/test installs it)");
    assert!(status.success(), "espeak-ng failed");
    path
}

/// The words of a text as the references spell them: lower case, punctuation gone, hyphens
/// and apostrophes' parts as words (`ill-disposed` is `ill disposed`).
pub(crate) fn normalized(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
        })
        .filter(|word| !word.is_empty())
        .collect()
}

/// Word error rate of `heard` against `reference`.
pub(crate) fn wer(reference: &[String], heard: &[String]) -> f64 {
    errors(reference, heard) as f64 / reference.len().max(1) as f64
}
