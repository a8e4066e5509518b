//! The speech engine against the library's own command-line decoder on Debian's recorded
//! speech: the same words, file by file, and a word error rate against the reference
//! transcripts no worse than the CLI's.

#[path = "support/speech.rs"]
mod speech;

use std::path::Path;

use perf_pool::task::CancelToken;
use pocwhisp_server::config::EngineConfig;
use pocwhisp_server::engine::{SphinxEngine, Transcriber, segments_of};
use speech::{at_engine_rate, cli_words, errors, recording, references};

fn engine() -> SphinxEngine {
    SphinxEngine::load(EngineConfig::default().sphinx_model_dir, 1)
        .expect("PocketSphinx from Debian (scripts/test installs it)")
}

fn our_words(engine: &SphinxEngine, file: &Path) -> Vec<String> {
    let channels: Vec<_> = at_engine_rate(file)
        .iter()
        .map(|pcm| {
            engine
                .transcribe(
                    pcm,
                    &Default::default(),
                    &CancelToken::default(),
                    &mut |_| {},
                )
                .unwrap()
                .utterances
        })
        .collect();
    segments_of(&channels)
        .iter()
        .flat_map(|segment| segment.text.split_whitespace())
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_reused_decoder_hears_a_file_as_a_fresh_one_does() {
    let engine = engine();
    let file = recording("sense_and_sensibility_01_austen_64kb-0880");
    let first = our_words(&engine, &file);
    let other = recording("sense_and_sensibility_01_austen_64kb-0870");
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
        let file = recording(&id);
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
