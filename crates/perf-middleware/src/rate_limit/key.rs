//! Which bucket a request draws from.

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName};

use crate::BuildError;

pub use perf_core::RequestHead;

/// The peer's socket address, as a request extension. The server (or an axum `ConnectInfo`
/// adapter) inserts it; [`PeerIp`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Maps a request to its rate-limit key.
///
/// Implemented for closures `Fn(&RequestHead<'_>) -> K`.
pub trait KeyExtractor {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of `request`.
    fn extract(&self, request: &RequestHead<'_>) -> Self::Key;
}

impl<K, F> KeyExtractor for F
where
    F: Fn(&RequestHead<'_>) -> K,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, request: &RequestHead<'_>) -> K {
        self(request)
    }
}

/// Every request draws from one bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    type Key = ();

    #[inline]
    fn extract(&self, _request: &RequestHead<'_>) {}
}

/// The bearer token of `Authorization: Bearer <token>`; requests without one share the
/// empty key, so anonymous traffic has one bucket rather than none.
#[derive(Debug, Clone, Copy, Default)]
pub struct BearerToken;

impl KeyExtractor for BearerToken {
    type Key = String;

    fn extract(&self, request: &RequestHead<'_>) -> String {
        request
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .unwrap_or_default()
            .to_owned()
    }
}

/// The value of one header (an API key, a tenant id); requests without it share the empty
/// key.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the header `name`.
    pub fn new(name: HeaderName) -> Self {
        HeaderKey { name }
    }
}

impl KeyExtractor for HeaderKey {
    type Key = Vec<u8>;

    fn extract(&self, request: &RequestHead<'_>) -> Vec<u8> {
        request
            .headers
            .get(&self.name)
            .map(|value| value.as_bytes().to_vec())
            .unwrap_or_default()
    }
}

/// The client's IP address: the [`PeerAddr`] extension, or, when the peer is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
/// `X-Forwarded-For` from anyone else is ignored, since a client can write whatever it likes
/// there. Requests without a `PeerAddr` share the unspecified address's bucket.
#[derive(Debug, Clone, Default)]
pub struct PeerIp {
    trusted_proxies: Arc<[IpNet]>,
}

impl PeerIp {
    /// Keys by the peer address, trusting no proxy.
    pub fn new() -> Self {
        PeerIp::default()
    }

    /// Trusts `X-Forwarded-For` from these networks (`10.0.0.0/8`, `127.0.0.1`, `::1/128`).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an entry that is not an address or a network.
    pub fn trusted_proxies<I, S>(networks: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let parsed: Result<Vec<IpNet>, BuildError> = networks
            .into_iter()
            .map(|network| IpNet::parse(network.as_ref()))
            .collect();
        Ok(PeerIp {
            trusted_proxies: parsed?.into(),
        })
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(address))
    }
}

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract(&self, request: &RequestHead<'_>) -> IpAddr {
        let Some(PeerAddr(peer)) = request.extensions.get::<PeerAddr>() else {
            return IpAddr::from([0, 0, 0, 0]);
        };
        let peer = peer.ip();
        if !self.is_trusted(peer) {
            return peer;
        }
        // Walk the chain from the nearest hop back; the first untrusted address is the
        // client as far as our proxies can vouch.
        let hops = request
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        hops.iter()
            .rev()
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .find(|address| !self.is_trusted(*address))
            .unwrap_or(peer)
    }
}

/// The key a configuration chose (see [`RateLimitKey`]), for stacks built from a file.
#[derive(Debug, Clone)]
pub struct ConfiguredKey {
    kind: KeyKind,
}

#[derive(Debug, Clone)]
enum KeyKind {
    Global,
    PeerIp(PeerIp),
    BearerToken,
    Header(HeaderKey),
}

/// What a configured rate limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum RateLimitKey {
    /// One bucket for all requests.
    Global,
    /// The client IP; `X-Forwarded-For` is believed from these proxies only.
    PeerIp {
        /// Addresses or networks of trusted proxies.
        #[cfg_attr(feature = "serde", serde(default))]
        trusted_proxies: Vec<String>,
    },
    /// The bearer token (the guide's "per token" limit).
    #[default]
    BearerToken,
    /// The value of this header.
    Header(String),
}

impl ConfiguredKey {
    /// The extractor for `key`.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an invalid trusted proxy or header name.
    pub fn new(key: &RateLimitKey) -> Result<Self, BuildError> {
        let kind = match key {
            RateLimitKey::Global => KeyKind::Global,
            RateLimitKey::PeerIp { trusted_proxies } => {
                KeyKind::PeerIp(PeerIp::trusted_proxies(trusted_proxies)?)
            }
            RateLimitKey::BearerToken => KeyKind::BearerToken,
            RateLimitKey::Header(name) => KeyKind::Header(HeaderKey::new(
                HeaderName::try_from(name.as_str()).map_err(|_| {
                    BuildError::new("rate_limit.key", format!("`{name}` is not a header name"))
                })?,
            )),
        };
        Ok(ConfiguredKey { kind })
    }
}

/// The key value of a [`ConfiguredKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyValue {
    /// The one global bucket.
    Global,
    /// A client address.
    Ip(IpAddr),
    /// A token or a header value.
    Bytes(Vec<u8>),
}

impl KeyExtractor for ConfiguredKey {
    type Key = KeyValue;

    fn extract(&self, request: &RequestHead<'_>) -> KeyValue {
        match &self.kind {
            KeyKind::Global => KeyValue::Global,
            KeyKind::PeerIp(peer) => KeyValue::Ip(peer.extract(request)),
            KeyKind::BearerToken => KeyValue::Bytes(BearerToken.extract(request).into_bytes()),
            KeyKind::Header(header) => KeyValue::Bytes(header.extract(request)),
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IpNet {
    address: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(text: &str) -> Result<Self, BuildError> {
        let invalid = || {
            BuildError::new(
                "trusted_proxies",
                format!("`{text}` is not an IP address or network"),
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(invalid)?,
            None => max,
        };
        Ok(IpNet { address, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let (network, candidate, bits) = match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => (
                u128::from(network.to_bits()) << 96,
                u128::from(candidate.to_bits()) << 96,
                self.prefix,
            ),
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                (network.to_bits(), candidate.to_bits(), self.prefix)
            }
            _ => return false,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(bits))
        };
        network & mask == candidate & mask
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn head_of(request: &Request<()>) -> RequestHead<'_> {
        RequestHead::of(request)
    }

    #[test]
    fn bearer_tokens_are_case_insensitive_in_the_scheme_only() {
        let request = Request::get("/")
            .header("authorization", "bEaReR tok-1")
            .body(())
            .unwrap();
        assert_eq!(BearerToken.extract(&head_of(&request)), "tok-1");
        let basic = Request::get("/")
            .header("authorization", "Basic abc")
            .body(())
            .unwrap();
        assert_eq!(BearerToken.extract(&head_of(&basic)), "");
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let proxies = PeerIp::trusted_proxies(["10.0.0.0/8", "::1"]).unwrap();
        let mut via_proxy = Request::get("/")
            .header("x-forwarded-for", "203.0.113.7, 10.1.2.3")
            .body(())
            .unwrap();
        via_proxy
            .extensions_mut()
            .insert(PeerAddr("10.0.0.2:443".parse().unwrap()));
        assert_eq!(
            proxies.extract(&head_of(&via_proxy)),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );

        let mut direct = Request::get("/")
            .header("x-forwarded-for", "1.2.3.4")
            .body(())
            .unwrap();
        direct
            .extensions_mut()
            .insert(PeerAddr("198.51.100.9:5000".parse().unwrap()));
        assert_eq!(
            proxies.extract(&head_of(&direct)),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );

        let mut garbage = Request::get("/")
            .header("x-forwarded-for", "not-an-ip, ,")
            .body(())
            .unwrap();
        garbage
            .extensions_mut()
            .insert(PeerAddr("[::1]:80".parse().unwrap()));
        assert_eq!(
            proxies.extract(&head_of(&garbage)),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net = IpNet::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.44.1".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert_eq!(
                IpNet::parse(bad).unwrap_err().field(),
                "trusted_proxies",
                "{bad}"
            );
        }
    }
}
