//! From an engine's timed words to the API's segments: fillers dropped, alternate
//! pronunciations folded (`and(2)` is `and`), words grouped per utterance and split at
//! pauses, stereo channels as the speakers `left` and `right` merged in time order, and
//! segments of one speaker less than a second apart joined (the original's rule).

use super::{Scores, Utterance, Word};
use crate::store::{Segment, TimedWord};

/// A pause this long between two words starts a new segment.
const PAUSE: f64 = 0.5;
/// Segments of one speaker closer than this are joined.
const JOIN: f64 = 1.0;

/// The speaker names of a file with `channels` channels.
pub fn speakers_for(channels: usize) -> &'static [&'static str] {
    if channels == 2 {
        &["left", "right"]
    } else {
        &["speaker"]
    }
}

/// Whether the engine's token is a word of the speech (not `<s>`, `<sil>`, `[NOISE]`).
fn is_speech(word: &Word) -> bool {
    !(word.text.starts_with('<') || word.text.starts_with('['))
}

/// `and(2)` as `and`.
fn spelling(text: &str) -> &str {
    match text.find('(') {
        Some(open) if text.ends_with(')') => &text[..open],
        _ => text,
    }
}

/// The words of `utterance` as a transcript shows them: fillers dropped, spellings folded.
pub fn text_of(utterance: &Utterance) -> String {
    utterance
        .words
        .iter()
        .filter(|word| is_speech(word))
        .map(|word| spelling(&word.text))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The segments of one speaker's utterances.
fn speaker_segments(speaker: &str, utterances: &[Utterance]) -> Vec<Segment> {
    let mut segments = Vec::new();
    for utterance in utterances {
        let mut current: Vec<&Word> = Vec::new();
        for word in utterance.words.iter().filter(|word| is_speech(word)) {
            if current
                .last()
                .is_some_and(|last| word.start - last.end >= PAUSE)
            {
                segments.push(segment(speaker, &current, utterance.scores));
                current.clear();
            }
            current.push(word);
        }
        if !current.is_empty() {
            segments.push(segment(speaker, &current, utterance.scores));
        }
    }
    segments
}

/// The words of an utterance (or a part of it, split at a pause) as a segment, with the
/// utterance's scores.
fn segment(speaker: &str, words: &[&Word], scores: Option<Scores>) -> Segment {
    let text = words
        .iter()
        .map(|word| spelling(&word.text))
        .collect::<Vec<_>>()
        .join(" ");
    Segment {
        speaker: speaker.to_owned(),
        start_time: words[0].start,
        end_time: words[words.len() - 1].end,
        text,
        confidence: words.iter().map(|word| word.confidence).sum::<f64>() / words.len() as f64,
        words: words
            .iter()
            .map(|word| TimedWord {
                word: spelling(&word.text).to_owned(),
                start: word.start,
                end: word.end,
            })
            .collect(),
        avg_logprob: scores.map(|scores| scores.avg_logprob),
        no_speech_prob: scores.map(|scores| scores.no_speech_prob),
    }
}

/// The mean of `a` over `a_words` and `b` over `b_words`, when both are known.
fn weighted(a: Option<f64>, a_words: f64, b: Option<f64>, b_words: f64) -> Option<f64> {
    Some((a? * a_words + b? * b_words) / (a_words + b_words))
}

/// The transcript's segments: one speaker per channel, merged in time order, a speaker's
/// segments less than a second apart joined.
pub fn segments_of(channels: &[Vec<Utterance>]) -> Vec<Segment> {
    let speakers = speakers_for(channels.len());
    let mut all: Vec<Segment> = channels
        .iter()
        .zip(speakers)
        .flat_map(|(utterances, speaker)| speaker_segments(speaker, utterances))
        .collect();
    all.sort_by(|a, b| a.start_time.total_cmp(&b.start_time));
    let mut merged: Vec<Segment> = Vec::with_capacity(all.len());
    for segment in all {
        if let Some(last) = merged.last_mut()
            && last.speaker == segment.speaker
            && segment.start_time - last.end_time < JOIN
        {
            let words_before = last.words.len() as f64;
            let words_added = segment.words.len() as f64;
            last.confidence = (last.confidence * words_before + segment.confidence * words_added)
                / (words_before + words_added);
            last.avg_logprob = weighted(
                last.avg_logprob,
                words_before,
                segment.avg_logprob,
                words_added,
            );
            last.no_speech_prob = weighted(
                last.no_speech_prob,
                words_before,
                segment.no_speech_prob,
                words_added,
            );
            last.text.push(' ');
            last.text.push_str(&segment.text);
            last.end_time = last.end_time.max(segment.end_time);
            last.words.extend(segment.words);
            continue;
        }
        merged.push(segment);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start: f64, end: f64) -> Word {
        Word {
            text: text.to_owned(),
            start,
            end,
            confidence: 0.5,
        }
    }

    #[test]
    fn fillers_go_alternates_fold_and_pauses_split() {
        let utterance = Utterance {
            words: vec![
                word("<s>", 0.0, 0.1),
                word("he", 0.2, 0.3),
                word("was(2)", 0.33, 0.5),
                word("[SPEECH]", 0.5, 0.6),
                word("<sil>", 0.6, 1.4),
                word("here", 1.5, 1.8),
                word("</s>", 1.8, 1.9),
            ],
            scores: None,
        };
        let segments = speaker_segments("speaker", &[utterance]);
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["he was", "here"]);
        assert_eq!((segments[1].start_time, segments[1].end_time), (1.5, 1.8));
    }

    #[test]
    fn stereo_speakers_interleave_in_time_and_close_segments_join() {
        let scored = |avg_logprob, no_speech_prob| {
            Some(Scores {
                avg_logprob,
                no_speech_prob,
            })
        };
        let left = vec![
            Utterance {
                words: vec![word("hello", 0.0, 0.5)],
                scores: scored(-0.2, 0.1),
            },
            Utterance {
                words: vec![word("again", 0.9, 1.2), word("now", 1.2, 1.3)],
                scores: scored(-0.5, 0.4),
            },
            Utterance {
                words: vec![word("bye", 5.0, 5.5)],
                scores: scored(-0.1, 0.0),
            },
        ];
        let right = vec![Utterance {
            words: vec![word("hi", 2.0, 2.4)],
            scores: None,
        }];
        let segments = segments_of(&[left, right]);
        let summary: Vec<(&str, &str)> = segments
            .iter()
            .map(|s| (s.speaker.as_str(), s.text.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("left", "hello again now"),
                ("right", "hi"),
                ("left", "bye")
            ]
        );
        // Joined segments weigh their scores by words; an engine without scores has none.
        assert!((segments[0].avg_logprob.unwrap() - -0.4).abs() < 1e-9);
        assert!((segments[0].no_speech_prob.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(segments[1].avg_logprob, None);
        assert_eq!(segments[2].no_speech_prob, Some(0.0));
        assert_eq!(segments[0].end_time, 1.3);
        let words: Vec<(&str, f64)> = segments[0]
            .words
            .iter()
            .map(|word| (word.word.as_str(), word.start))
            .collect();
        assert_eq!(
            words,
            [("hello", 0.0), ("again", 0.9), ("now", 1.2)],
            "joined words keep their times"
        );
    }
}
