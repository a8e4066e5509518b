use super::Encoding;
use crate::BuildError;

/// Settings of the compression layer.
///
/// | field | default |
/// |---|---|
/// | `gzip`, `deflate`, `br`, `zstd` | all on |
/// | `min_size` | 1024 bytes: below it the headers cost more than the saving |
/// | `level` | 6 for gzip and deflate (zlib's own default: most of the gain for a fraction of the time of 9) |
/// | `brotli_level` | 4: brotli's own default (11) is far too slow for dynamic responses |
/// | `zstd_level` | 3 |
/// | `content_types` | `application/json`, `application/xml`, `application/javascript`, `text/`, `+json`, `+xml` |
///
/// A `content_types` entry ending in `/` matches a whole type (`text/`), one starting with
/// `+` a structured suffix (`+json` matches `application/problem+json`), any other entry a
/// media type exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct CompressionConfig {
    /// Offer gzip.
    pub gzip: bool,
    /// Offer deflate.
    pub deflate: bool,
    /// Offer brotli.
    pub br: bool,
    /// Offer zstd.
    pub zstd: bool,
    /// Responses declaring a smaller `Content-Length` are sent as they are.
    pub min_size: usize,
    /// gzip and deflate level, 0 to 9.
    pub level: u32,
    /// brotli quality, 0 to 11.
    pub brotli_level: u32,
    /// zstd level, 1 to 22.
    pub zstd_level: i32,
    /// Media types worth compressing.
    pub content_types: Vec<String>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            gzip: true,
            deflate: true,
            br: true,
            zstd: true,
            min_size: 1024,
            level: 6,
            brotli_level: 4,
            zstd_level: 3,
            content_types: [
                "application/json",
                "application/xml",
                "application/javascript",
                "text/",
                "+json",
                "+xml",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl CompressionConfig {
    /// Checks the levels and content types.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.level > 9 {
            return Err(BuildError::new("level", "must be 0 to 9"));
        }
        if self.brotli_level > 11 {
            return Err(BuildError::new("brotli_level", "must be 0 to 11"));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(BuildError::new("zstd_level", "must be 1 to 22"));
        }
        if self.content_types.iter().any(|t| t.is_empty()) {
            return Err(BuildError::new(
                "content_types",
                "must not contain an empty entry",
            ));
        }
        Ok(())
    }

    pub(crate) fn enabled(&self) -> Vec<Encoding> {
        [
            (self.br, Encoding::Brotli),
            (self.zstd, Encoding::Zstd),
            (self.gzip, Encoding::Gzip),
            (self.deflate, Encoding::Deflate),
        ]
        .into_iter()
        .filter_map(|(on, encoding)| on.then_some(encoding))
        .collect()
    }

    pub(crate) fn compresses(&self, content_type: &str) -> bool {
        // Compared without case and without allocating: this runs for every response.
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .as_bytes();
        self.content_types.iter().any(|pattern| {
            let pattern = pattern.as_bytes();
            if pattern.ends_with(b"/") {
                media_type
                    .get(..pattern.len())
                    .is_some_and(|start| start.eq_ignore_ascii_case(pattern))
            } else if pattern.starts_with(b"+") {
                media_type
                    .len()
                    .checked_sub(pattern.len())
                    .is_some_and(|at| media_type[at..].eq_ignore_ascii_case(pattern))
            } else {
                media_type.eq_ignore_ascii_case(pattern)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_patterns() {
        let config = CompressionConfig::default();
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/html",
            "text/event-stream",
            "application/problem+json",
        ] {
            assert!(config.compresses(yes), "{yes}");
        }
        for no in [
            "image/png",
            "audio/wav",
            "application/octet-stream",
            "application/jsonx",
            "",
        ] {
            assert!(!config.compresses(no), "{no}");
        }
    }

    #[test]
    fn levels_are_checked() {
        let bad = CompressionConfig {
            brotli_level: 12,
            ..CompressionConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), "brotli_level");
        CompressionConfig::default().validate().unwrap();
    }
}
