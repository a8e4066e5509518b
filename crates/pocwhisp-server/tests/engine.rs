//! The speech engine against the library's own command-line decoder on Debian's recorded
//! speech: the same words, file by file, and a word error rate against the reference
//! transcripts no worse than the CLI's.

use std::path::{Path, PathBuf};
use std::process::Command;

use perf_pool::task::CancelToken;
use pocwhisp_server::audio::{decode, resample};
use pocwhisp_server::config::{AudioConfig, EngineConfig};
use pocwhisp_server::engine::{SphinxEngine, Transcriber, segments_of};

const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

fn engine() -> SphinxEngine {
    SphinxEngine::load(EngineConfig::default().sphinx_model_dir, 1)
        .expect("PocketSphinx from Debian (scripts/test installs it)")
}

/// The reference transcripts: file id to words.
fn references() -> Vec<(String, Vec<String>)> {
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
fn cli_words(file: &Path) -> Vec<String> {
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

fn our_words(engine: &SphinxEngine, file: &Path) -> Vec<String> {
    let decoded = decode::decode(file, &AudioConfig::default()).unwrap();
    let channels: Vec<_> = decoded
        .channels
        .iter()
        .map(|samples| {
            let pcm = resample::to_engine_rate(samples, decoded.info.sample_rate).unwrap();
            engine.transcribe(&pcm, &CancelToken::default()).unwrap()
        })
        .collect();
    segments_of(&channels)
        .iter()
        .flat_map(|segment| segment.text.split_whitespace())
        .map(str::to_owned)
        .collect()
}

/// Word-level edit distance.
fn errors(reference: &[String], hypothesis: &[String]) -> usize {
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

#[test]
fn a_reused_decoder_hears_a_file_as_a_fresh_one_does() {
    let engine = engine();
    let file = Path::new(LIBRIVOX).join("sense_and_sensibility_01_austen_64kb-0880.wav");
    let first = our_words(&engine, &file);
    let other = Path::new(LIBRIVOX).join("sense_and_sensibility_01_austen_64kb-0870.wav");
    our_words(&engine, &other);
    assert_eq!(
        our_words(&engine, &file),
        first,
        "the same words whatever came before"
    );
}

#[test]
fn the_engine_hears_what_the_cli_hears() {
    let engine = engine();
    let mut ours_errors = 0;
    let mut cli_errors = 0;
    let mut words = 0;
    for (id, reference) in references() {
        let file: PathBuf = Path::new(LIBRIVOX).join(format!("{id}.wav"));
        let ours = our_words(&engine, &file);
        let cli = cli_words(&file);
        assert_eq!(ours, cli, "{id}");
        ours_errors += errors(&reference, &ours);
        cli_errors += errors(&reference, &cli);
        words += reference.len();
    }
    let wer = ours_errors as f64 / words as f64;
    eprintln!(
        "word error rate: ours {wer:.3}, CLI {:.3}",
        cli_errors as f64 / words as f64
    );
    assert!(
        ours_errors <= cli_errors,
        "{ours_errors} errors against the CLI's {cli_errors}"
    );
}
