//! The summary of a transcript, made from the transcript alone (no model behind it, and it
//! says so in `model_used`): the opening of the longest segments as text, the most frequent
//! content words as key points, and a sentiment from a small lexicon of evaluative words.

use std::collections::HashMap;

use crate::store::{Segment, Summary};

/// What made the summary.
pub const MODEL: &str = "extractive-v1";

/// Words left out of the key points: function words carry no topic.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "being", "but", "by", "can", "could", "did", "do", "does", "for", "from",
    "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "just", "me", "more", "most", "much", "my", "no", "not", "now", "of", "on", "one",
    "only", "or", "our", "out", "over", "said", "she", "should", "so", "some", "such", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "too",
    "up", "us", "very", "was", "we", "were", "what", "when", "which", "while", "who", "will",
    "with", "would", "you", "your", "mr", "mrs", "even", "might", "still", "made",
];

const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "happy",
    "glad",
    "pleased",
    "love",
    "like",
    "thanks",
    "thank",
    "amiable",
    "respectable",
    "kind",
    "best",
    "better",
    "wonderful",
    "agree",
    "yes",
    "fine",
    "right",
    "success",
    "well",
];

const NEGATIVE: &[&str] = &[
    "bad", "poor", "sad", "angry", "hate", "problem", "wrong", "worse", "worst", "fail", "failed",
    "ill", "cold", "selfish", "sorry", "no", "never", "terrible", "disposed", "not",
];

/// Words in the summary's text, at most.
const SUMMARY_WORDS: usize = 40;
/// Key points, at most.
const KEY_POINTS: usize = 5;

/// The summary of `segments`; `None` when nothing was said.
pub fn summarize(segments: &[Segment]) -> Option<Summary> {
    let words: Vec<String> = segments
        .iter()
        .flat_map(|segment| segment.text.split_whitespace())
        .map(|word| word.to_lowercase())
        .collect();
    if words.is_empty() {
        return None;
    }
    // The longest segments carry the most; kept in spoken order.
    let mut by_length: Vec<(usize, &Segment)> = segments.iter().enumerate().collect();
    by_length.sort_by_key(|(_, segment)| std::cmp::Reverse(segment.text.len()));
    let mut chosen: Vec<(usize, &Segment)> = Vec::new();
    let mut count = 0;
    for (index, segment) in by_length {
        if count >= SUMMARY_WORDS {
            break;
        }
        count += segment.text.split_whitespace().count();
        chosen.push((index, segment));
    }
    chosen.sort_by_key(|(index, _)| *index);
    let text: Vec<&str> = chosen
        .iter()
        .flat_map(|(_, segment)| segment.text.split_whitespace())
        .take(SUMMARY_WORDS)
        .collect();

    let mut frequency: HashMap<&str, usize> = HashMap::new();
    for word in &words {
        if word.len() > 2 && !STOP_WORDS.contains(&word.as_str()) {
            *frequency.entry(word.as_str()).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, usize)> = frequency.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let key_points = ranked
        .into_iter()
        .take(KEY_POINTS)
        .map(|(word, times)| format!("{word} ({times}×)"))
        .collect();

    let score: i64 = words
        .iter()
        .map(|word| {
            i64::from(POSITIVE.contains(&word.as_str()))
                - i64::from(NEGATIVE.contains(&word.as_str()))
        })
        .sum();
    let sentiment = match score {
        s if s > 0 => "positive",
        s if s < 0 => "negative",
        _ => "neutral",
    };
    Some(Summary {
        text: text.join(" "),
        key_points,
        sentiment: sentiment.to_owned(),
        model_used: MODEL.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(text: &str) -> Segment {
        Segment {
            words: Vec::new(),
            speaker: "speaker".into(),
            start_time: 0.0,
            end_time: 1.0,
            text: text.into(),
            confidence: 1.0,
            avg_logprob: None,
            no_speech_prob: None,
        }
    }

    #[test]
    fn the_summary_comes_from_what_was_said() {
        let summary = summarize(&[
            segment("the invoice is wrong again"),
            segment("the invoice was sent twice and the invoice total is wrong"),
        ])
        .unwrap();
        assert!(summary.text.starts_with("the invoice is wrong again"));
        assert_eq!(summary.key_points[0], "invoice (3×)");
        assert_eq!(summary.sentiment, "negative");
        assert_eq!(summary.model_used, MODEL);
        assert!(summarize(&[]).is_none());
        let glad = summarize(&[segment("thank you that was great")]).unwrap();
        assert_eq!(glad.sentiment, "positive");
    }
}
