//! Content codings and `Accept-Encoding` negotiation.

use http::HeaderValue;
use http::header::{ACCEPT_ENCODING, HeaderMap};

/// A content coding this layer can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// `gzip`.
    Gzip,
    /// `deflate` (zlib-wrapped, as RFC 9110 defines it).
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// The token in `Content-Encoding`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    pub(crate) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    /// Server preference when the client weighs codings equally: better ratio at the fast
    /// levels used here first.
    const PREFERENCE: [Encoding; 4] = [
        Encoding::Brotli,
        Encoding::Zstd,
        Encoding::Gzip,
        Encoding::Deflate,
    ];

    fn from_token(token: &str) -> Option<Self> {
        Encoding::PREFERENCE
            .into_iter()
            .find(|encoding| token.eq_ignore_ascii_case(encoding.as_str()))
    }
}

/// At most this many entries of `Accept-Encoding` are read; a header with thousands of
/// entries costs no more than one with 32.
const MAX_ENTRIES: usize = 32;

/// Picks the coding for a response from the request's `Accept-Encoding`, among `enabled`:
/// the highest q-value, ties broken by server preference; `None` for identity. Malformed
/// entries are ignored rather than failing the request.
pub(crate) fn negotiate(headers: &HeaderMap, enabled: &[Encoding]) -> Option<Encoding> {
    let mut weights: [Option<u16>; 4] = [None; 4];
    let mut wildcard = None;
    let entries = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .take(MAX_ENTRIES);
    for entry in entries {
        let mut parts = entry.split(';');
        let token = parts.next().unwrap_or_default().trim();
        let Some(weight) = parse_weight(parts) else {
            continue;
        };
        if token == "*" {
            wildcard = Some(weight);
        } else if let Some(encoding) = Encoding::from_token(token) {
            let slot = &mut weights[index(encoding)];
            *slot = Some(slot.map_or(weight, |w| w.max(weight)));
        }
    }
    Encoding::PREFERENCE
        .into_iter()
        .filter(|encoding| enabled.contains(encoding))
        .map(|encoding| (encoding, weights[index(encoding)].or(wildcard).unwrap_or(0)))
        .filter(|(_, weight)| *weight > 0)
        // max_by_key keeps the last maximum; reverse so the most preferred wins ties.
        .rev()
        .max_by_key(|(_, weight)| *weight)
        .map(|(encoding, _)| encoding)
}

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Brotli => 0,
        Encoding::Zstd => 1,
        Encoding::Gzip => 2,
        Encoding::Deflate => 3,
    }
}

/// The q-value of an entry in thousandths (1000 when absent); `None` when malformed.
fn parse_weight<'a>(mut params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let Some(param) = params.next() else {
        return Some(1000);
    };
    let (name, value) = param.split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("q") {
        return None;
    }
    let value = value.trim();
    // RFC 9110: "0" or "1", optionally followed by "." and up to three digits.
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Encoding; 4] = Encoding::PREFERENCE;

    fn pick(accept: &str) -> Option<Encoding> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        negotiate(&headers, &ALL)
    }

    #[test]
    fn q_values_decide_and_preference_breaks_ties() {
        assert_eq!(pick("gzip"), Some(Encoding::Gzip));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Encoding::Brotli));
        assert_eq!(pick("gzip;q=1.0, br;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(pick("br;q=0, gzip;q=0.001"), Some(Encoding::Gzip));
        assert_eq!(pick("GZIP ; Q=0.8, Deflate;q=0.9"), Some(Encoding::Deflate));
        assert_eq!(pick("*;q=0.5, br;q=0"), Some(Encoding::Zstd));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("gzip;q=0"), None);
    }

    #[test]
    fn malformed_entries_are_ignored() {
        assert_eq!(
            pick("gzip;q=2, br;q=abc, zstd;q=0.5555, deflate;q=0.5"),
            Some(Encoding::Deflate)
        );
        assert_eq!(pick(";;;,,,=,q=1"), None);
        assert_eq!(pick(&"x, ".repeat(10_000)), None);
        let flood = format!("{}gzip", "x, ".repeat(40));
        assert_eq!(pick(&flood), None, "entries past the cap are not read");
    }

    #[test]
    fn only_enabled_codings_are_chosen() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.1"));
        assert_eq!(negotiate(&headers, &[Encoding::Gzip]), Some(Encoding::Gzip));
        assert_eq!(negotiate(&headers, &[]), None);
    }
}
