//! A transcript as people read it: plain text, SRT and WebVTT subtitles. Both doors render
//! with these: OpenAI's `response_format` and the session downloads of `/api/v1`.

use crate::store::Segment;

/// The text of a transcript: its segments in time order.
pub(crate) fn text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|segment| segment.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// SubRip: numbered cues, times with a comma.
pub(crate) fn srt(segments: &[Segment]) -> String {
    let mut body = String::new();
    for (index, segment) in segments.iter().enumerate() {
        body.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            index + 1,
            timestamp(segment.start_time, ','),
            timestamp(segment.end_time, ','),
            segment.text
        ));
    }
    body
}

/// WebVTT: a header, then cues with times with a full stop.
pub(crate) fn vtt(segments: &[Segment]) -> String {
    let mut body = String::from("WEBVTT\n\n");
    for segment in segments {
        body.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(segment.start_time, '.'),
            timestamp(segment.end_time, '.'),
            segment.text
        ));
    }
    body
}

/// `seconds` as a subtitle time: `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT); hours
/// keep counting past 99.
fn timestamp(seconds: f64, separator: char) -> String {
    let millis = (seconds.max(0.0) * 1000.0).round() as u64;
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (secs, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{secs:02}{separator}{millis:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_times_count_hours_past_a_day() {
        assert_eq!(timestamp(0.15, ','), "00:00:00,150");
        assert_eq!(timestamp(3_725.042, '.'), "01:02:05.042");
        assert_eq!(timestamp(100.0 * 3600.0 + 0.5, ','), "100:00:00,500");
    }
}
