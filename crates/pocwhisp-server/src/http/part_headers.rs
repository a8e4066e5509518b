//! A bound on the headers of each part of a multipart body, checked as the bytes stream in.
//!
//! The multipart parser keeps a part's headers in memory until it finds the blank line that
//! ends them, so a part whose headers never end (a field name of a hundred megabytes) would
//! be held whole. [`PartHeaderLimit`] watches the raw body on its way to the parser and
//! fails it once any part's headers pass [`MAX_PART_HEADER_BYTES`]; the parser sees that
//! failure as a read error and the upload is refused.

use std::fmt;

use memchr::memmem;

/// The most a part's headers (its field name, file name and content type among them) may
/// take, the line breaks included.
pub(crate) const MAX_PART_HEADER_BYTES: usize = 8 << 10;

/// A part whose headers passed [`MAX_PART_HEADER_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartHeadersTooLarge;

impl fmt::Display for PartHeadersTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a form part's headers are larger than the {} KiB accepted",
            MAX_PART_HEADER_BYTES >> 10
        )
    }
}

impl std::error::Error for PartHeadersTooLarge {}

/// Where the scan is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In a part's data (or the preamble), looking for the next delimiter.
    Data,
    /// Just after a delimiter: `--` closes the body, anything else starts headers.
    Delimiter,
    /// In a part's headers, `seen` bytes so far.
    Headers { seen: usize },
    /// After the closing delimiter: nothing more is parsed.
    Closed,
}

/// Follows a multipart body chunk by chunk; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct PartHeaderLimit {
    /// `\r\n--boundary`: what starts each part.
    delimiter: memmem::Finder<'static>,
    /// `\r\n\r\n`: what ends a part's headers.
    blank_line: memmem::Finder<'static>,
    place: Place,
    /// The last bytes of earlier chunks that may begin what is looked for.
    carry: Vec<u8>,
    /// The carry and the start of the next chunk, searched together; kept to be reused.
    joined: Vec<u8>,
}

impl PartHeaderLimit {
    /// A scan of a body whose parts are separated by `boundary`.
    pub(crate) fn new(boundary: &str) -> Self {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        PartHeaderLimit {
            delimiter: memmem::Finder::new(&delimiter).into_owned(),
            blank_line: memmem::Finder::new(b"\r\n\r\n").into_owned(),
            place: Place::Data,
            // The first delimiter may open the body without a line break before it.
            carry: b"\r\n".to_vec(),
            joined: Vec::new(),
        }
    }

    /// Takes the next chunk of the body: an error once a part's headers are too large.
    pub(crate) fn check(&mut self, chunk: &[u8]) -> Result<(), PartHeadersTooLarge> {
        let mut rest = chunk;
        loop {
            match self.place {
                Place::Closed => return Ok(()),
                Place::Data => match self.find(rest) {
                    Some(end) => {
                        rest = &rest[end..];
                        self.place = Place::Delimiter;
                    }
                    None => return Ok(()),
                },
                Place::Delimiter => {
                    // Two bytes tell a closing delimiter (`--`) from a part's headers.
                    let wanted = 2 - self.carry.len();
                    let taken = wanted.min(rest.len());
                    self.carry.extend_from_slice(&rest[..taken]);
                    rest = &rest[taken..];
                    if self.carry.len() < 2 {
                        return Ok(());
                    }
                    // The two bytes stay carried: they may begin the blank line.
                    self.place = if self.carry == b"--" {
                        Place::Closed
                    } else {
                        Place::Headers { seen: 2 }
                    };
                }
                Place::Headers { seen } => match self.find(rest) {
                    Some(end) if seen + end <= MAX_PART_HEADER_BYTES => {
                        rest = &rest[end..];
                        self.place = Place::Data;
                    }
                    None if seen + rest.len() <= MAX_PART_HEADER_BYTES => {
                        self.place = Place::Headers {
                            seen: seen + rest.len(),
                        };
                        return Ok(());
                    }
                    _ => return Err(PartHeadersTooLarge),
                },
            }
        }
    }

    /// Where in `rest` what the current place looks for (the delimiter, or in headers the
    /// blank line) ends, counting the carried bytes before `rest`; the carry is cleared on a
    /// find and otherwise keeps the tail that may begin a match.
    fn find(&mut self, rest: &[u8]) -> Option<usize> {
        let finder = match self.place {
            Place::Headers { .. } => &self.blank_line,
            _ => &self.delimiter,
        };
        let tail = finder.needle().len() - 1;
        // A match that starts in the carry ends in the first `tail` bytes of `rest`.
        self.joined.clear();
        self.joined.extend_from_slice(&self.carry);
        self.joined.extend_from_slice(&rest[..rest.len().min(tail)]);
        let found = finder
            .find(&self.joined)
            .map(|start| start + tail + 1 - self.carry.len())
            .or_else(|| finder.find(rest).map(|start| start + tail + 1));
        // What may begin the next match: the last `tail` bytes of the carry and `rest`.
        let kept = match found {
            Some(_) => &[][..],
            None if rest.len() >= tail => &rest[rest.len() - tail..],
            // `joined` holds the carry and all of `rest`.
            None => &self.joined[self.joined.len().saturating_sub(tail)..],
        };
        self.carry.clear();
        self.carry.extend_from_slice(kept);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, value: &str) -> String {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    }

    /// Feeds `body` in chunks of `size` bytes; the error, if any.
    fn scan(body: &[u8], size: usize) -> Result<(), PartHeadersTooLarge> {
        let mut limit = PartHeaderLimit::new("XyZ");
        body.chunks(size).try_for_each(|chunk| limit.check(chunk))
    }

    #[test]
    fn an_ordinary_form_passes_however_it_is_cut() {
        let mut body = part("model", "whisper-1") + &part("language", "en");
        // Data longer than any header limit, with a near-delimiter inside.
        body += &part("prompt", &"\r\n--XyQ ".repeat(4000));
        body += "--XyZ--\r\nan epilogue that is not parsed";
        for size in [1, 2, 3, 5, 7, 64, 4096, body.len()] {
            assert_eq!(scan(body.as_bytes(), size), Ok(()), "chunks of {size}");
        }
    }

    #[test]
    fn headers_that_never_end_are_refused_at_the_limit_however_they_are_cut() {
        let endless = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"{}",
            "n".repeat(MAX_PART_HEADER_BYTES)
        );
        for size in [1, 3, 1000, endless.len()] {
            assert_eq!(
                scan(endless.as_bytes(), size),
                Err(PartHeadersTooLarge),
                "chunks of {size}"
            );
        }
        // Just within the limit, the same name passes.
        let name = "n".repeat(MAX_PART_HEADER_BYTES - 100);
        assert_eq!(scan(part(&name, "x").as_bytes(), 7), Ok(()));
    }

    #[test]
    fn the_second_part_is_held_to_the_limit_too() {
        let body = part("model", "whisper-1")
            + &format!(
                "--XyZ\r\nX-Padding: {}",
                "p".repeat(2 * MAX_PART_HEADER_BYTES)
            );
        assert_eq!(scan(body.as_bytes(), 512), Err(PartHeadersTooLarge));
    }

    #[test]
    fn a_part_without_headers_ends_them_at_once() {
        let body =
            "--XyZ\r\n\r\n".to_owned() + &"d".repeat(3 * MAX_PART_HEADER_BYTES) + "\r\n--XyZ--";
        for size in [1, 2, 9, body.len()] {
            assert_eq!(scan(body.as_bytes(), size), Ok(()), "chunks of {size}");
        }
    }
}
