//! Which bucket a request draws from.

use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use foldhash::SharedSeed;
use foldhash::fast::{FixedState, SeedableRandomState};
use http::header::{AUTHORIZATION, HeaderName};

use crate::BuildError;

pub use perf_core::RequestHead;

/// The peer's socket address, as a request extension. The server (or an axum `ConnectInfo`
/// adapter) inserts it; [`PeerIp`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Who the application has verified a request comes from (a user id, an API key's id), as
/// a request extension that an authentication layer outside the rate limit inserts.
/// [`IdentityOrPeerIp`] keys by it, so a bucket belongs to someone the server knows and a
/// client cannot mint fresh buckets by sending made-up credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity(pub Arc<str>);

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

/// The secret client-supplied values are hashed with: random per process unless
/// [`share_key_secret`] set one first.
static SECRET: OnceLock<SeedableRandomState> = OnceLock::new();

/// A client-supplied value as a bucket key: 64 bits of a hash keyed with a secret chosen at
/// start-up. The key map then holds eight bytes whatever a client sends (a megabyte-long
/// token is not kept), and without the secret nobody can make two values share a bucket.
fn digest(value: &[u8]) -> u64 {
    SECRET
        .get_or_init(SeedableRandomState::random)
        .hash_one(value)
}

/// Hashes client-supplied key values (tokens, identities, header values) with a secret
/// derived from `secret` instead of a random one, so that every process given the same
/// secret puts a client in the same bucket: what limiters shared between processes
/// (the `redis` feature) need. Call it once at start, before the first request.
///
/// # Errors
///
/// A [`BuildError`] when keys were already hashed with another secret in this process.
pub fn share_key_secret(secret: &[u8]) -> Result<(), BuildError> {
    let seed = FixedState::with_seed(0x7065_7266_2d6b_6579).hash_one(secret);
    let wanted = SeedableRandomState::with_seed(seed, SharedSeed::global_fixed());
    let probe = b"perf-middleware key secret probe";
    let held = SECRET.get_or_init(|| wanted.clone());
    if held.hash_one(probe) == wanted.hash_one(probe) {
        Ok(())
    } else {
        Err(BuildError::new(
            "key_secret",
            "keys were already hashed with another secret in this process; share the secret before the first request",
        ))
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

/// A digest of the bearer token of `Authorization: Bearer <token>` (see the digest note on
/// [`HeaderKey`]); requests without one share one bucket.
///
/// The token is not verified here, so any client gets a fresh bucket per made-up token. Use
/// it only behind a layer that refuses unknown tokens, or better, key by the verified
/// [`Identity`] with [`IdentityOrPeerIp`], which falls back to the peer's address.
#[derive(Debug, Clone, Copy, Default)]
pub struct BearerToken;

impl BearerToken {
    /// The key of requests bearing `token`, to give it its own quota
    /// ([`RateLimiterBuilder::quota_for`](super::RateLimiterBuilder::quota_for)).
    pub fn key_of(token: &str) -> u64 {
        digest(token.as_bytes())
    }
}

impl KeyExtractor for BearerToken {
    type Key = u64;

    fn extract(&self, request: &RequestHead<'_>) -> u64 {
        let token = request
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .unwrap_or_default();
        digest(token.as_bytes())
    }
}

/// A digest of one header's value (an API key, a tenant id); requests without it share one
/// bucket. The value is kept as 64 bits of a hash keyed with a per-process secret, so the
/// key map's memory does not depend on what clients send.
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
    type Key = u64;

    fn extract(&self, request: &RequestHead<'_>) -> u64 {
        digest(
            request
                .headers
                .get(&self.name)
                .map(|value| value.as_bytes())
                .unwrap_or_default(),
        )
    }
}

/// The client's IP address: the [`PeerAddr`] extension, or, when the peer is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
/// `X-Forwarded-For` from anyone else is ignored, since a client can write whatever it likes
/// there. Requests without a `PeerAddr` share the unspecified address's bucket.
///
/// The chain is read from the nearest hop back, and only as far as trusted proxies vouch
/// for it: `203.0.113.7`, `203.0.113.7:5000`, `[2001:db8::1]:443` and `[2001:db8::1]` are
/// understood; at the first entry that is none of these the walk stops, and the key is the
/// trusted proxy that wrote it, rather than skipping to whatever a client wrote further
/// left. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as their IPv4 address.
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
        let mut nearest = peer.ip().to_canonical();
        if !self.is_trusted(nearest) {
            return nearest;
        }
        let hops = request
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok());
        // Each hop was written by the proxy to its right; a trusted one vouches for it.
        let mut hops: Vec<Option<&str>> = hops.collect();
        while let Some(value) = hops.pop() {
            let Some(value) = value else { return nearest };
            for hop in value.rsplit(',') {
                let Some(address) = parse_hop(hop) else {
                    return nearest;
                };
                if !self.is_trusted(address) {
                    return address;
                }
                nearest = address;
            }
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port` for IPv6).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let address = if let Some(rest) = hop.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?
    } else if let Ok(address) = hop.parse::<IpAddr>() {
        address
    } else {
        let (address, port) = hop.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(address.parse().ok()?)
    };
    Some(address.to_canonical())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.parse::<u16>().is_ok()
}

/// The verified [`Identity`] the application put in the request's extensions, or the
/// client's IP (by [`PeerIp`]'s rules) when there is none: anonymous and unauthenticated
/// requests share their address's bucket instead of each made-up credential getting one.
#[derive(Debug, Clone, Default)]
pub struct IdentityOrPeerIp {
    peer: PeerIp,
}

impl IdentityOrPeerIp {
    /// Falls back to `peer` for requests without an identity.
    pub fn new(peer: PeerIp) -> Self {
        IdentityOrPeerIp { peer }
    }
}

impl KeyExtractor for IdentityOrPeerIp {
    type Key = KeyValue;

    fn extract(&self, request: &RequestHead<'_>) -> KeyValue {
        match request.extensions.get::<Identity>() {
            Some(Identity(identity)) => KeyValue::identity(identity),
            None => KeyValue::Ip(self.peer.extract(request)),
        }
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
    Identity(IdentityOrPeerIp),
    BearerToken,
    Header(HeaderKey),
}

/// What a configured rate limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// The verified [`Identity`] an authentication layer set, else the client IP (the
    /// default: a limit per caller, counted per verified token).
    Identity {
        /// Addresses or networks of trusted proxies, for the fallback.
        #[cfg_attr(feature = "serde", serde(default))]
        trusted_proxies: Vec<String>,
    },
    /// The bearer token as sent, unverified: see [`BearerToken`] before choosing it.
    BearerToken,
    /// The value of this header.
    Header(String),
}

impl Default for RateLimitKey {
    fn default() -> Self {
        RateLimitKey::Identity {
            trusted_proxies: Vec::new(),
        }
    }
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
            RateLimitKey::Identity { trusted_proxies } => KeyKind::Identity(IdentityOrPeerIp::new(
                PeerIp::trusted_proxies(trusted_proxies)?,
            )),
            RateLimitKey::BearerToken => KeyKind::BearerToken,
            RateLimitKey::Header(name) => KeyKind::Header(HeaderKey::new(
                HeaderName::try_from(name.as_str()).map_err(|_| {
                    BuildError::new("header", format!("`{name}` is not a header name"))
                })?,
            )),
        };
        Ok(ConfiguredKey { kind })
    }
}

impl KeyValue {
    /// The key of requests carrying [`Identity`] `identity`, to give it its own quota
    /// ([`RateLimiterBuilder::quota_for`](super::RateLimiterBuilder::quota_for)).
    pub fn identity(identity: &str) -> Self {
        KeyValue::Hashed(digest(identity.as_bytes()))
    }
}

/// The key value of a [`ConfiguredKey`] or an [`IdentityOrPeerIp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyValue {
    /// The one global bucket.
    Global,
    /// A client address.
    Ip(IpAddr),
    /// An identity, a token or a header value, as a keyed 64-bit digest.
    Hashed(u64),
}

impl KeyExtractor for ConfiguredKey {
    type Key = KeyValue;

    fn extract(&self, request: &RequestHead<'_>) -> KeyValue {
        match &self.kind {
            KeyKind::Global => KeyValue::Global,
            KeyKind::PeerIp(peer) => KeyValue::Ip(peer.extract(request)),
            KeyKind::Identity(identity) => identity.extract(request),
            KeyKind::BearerToken => KeyValue::Hashed(BearerToken.extract(request)),
            KeyKind::Header(header) => KeyValue::Hashed(header.extract(request)),
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
        // A mapped network (`::ffff:10.0.0.0/104`) is its IPv4 network.
        let (address, prefix) = match (address, prefix) {
            (IpAddr::V6(v6), prefix) if v6.to_ipv4_mapped().is_some() => {
                let shift = |p: &str| p.trim().parse::<u8>().ok().and_then(|p| p.checked_sub(96));
                let prefix = match prefix {
                    Some(p) => Some(shift(p).ok_or_else(invalid)?.to_string()),
                    None => None,
                };
                (address.to_canonical(), prefix)
            }
            (address, prefix) => (address, prefix.map(str::to_owned)),
        };
        let prefix = prefix.as_deref();
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
        let (network, candidate, bits) = match (self.address, address.to_canonical()) {
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
        let same = Request::get("/")
            .header("authorization", "Bearer tok-1")
            .body(())
            .unwrap();
        let key = BearerToken.extract(&head_of(&request));
        assert_eq!(key, BearerToken.extract(&head_of(&same)));
        let basic = Request::get("/")
            .header("authorization", "Basic abc")
            .body(())
            .unwrap();
        let anonymous = Request::get("/").body(()).unwrap();
        assert_eq!(
            BearerToken.extract(&head_of(&basic)),
            BearerToken.extract(&head_of(&anonymous))
        );
        assert_ne!(key, BearerToken.extract(&head_of(&anonymous)));
    }

    #[test]
    fn a_huge_token_is_kept_as_eight_bytes() {
        let token = format!("Bearer {}", "x".repeat(64 * 1024));
        let request = Request::get("/")
            .header("authorization", token)
            .body(())
            .unwrap();
        let key: u64 = BearerToken.extract(&head_of(&request));
        assert_eq!(std::mem::size_of_val(&key), 8);
    }

    fn from_peer(peer: &str, forwarded: &[&str]) -> Request<()> {
        let mut request = Request::get("/");
        for value in forwarded {
            request = request.header("x-forwarded-for", *value);
        }
        let mut request = request.body(()).unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().unwrap()));
        request
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn hops_with_ports_are_understood_and_garbage_stops_the_walk() {
        let proxies = PeerIp::trusted_proxies(["10.0.0.0/8"]).unwrap();
        let key =
            |peer: &str, forwarded: &[&str]| proxies.extract(&head_of(&from_peer(peer, forwarded)));
        // A trusted proxy that writes ports: the spoofed entry on the left stays unread.
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6, 203.0.113.7:5123, 10.1.2.3:80"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6, [2001:db8::7]:443"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6, [2001:db8::8]"]),
            ip("2001:db8::8")
        );
        // An entry nobody can parse: the proxy that wrote it is the key, not the spoofed
        // address further left.
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6, unknown, 10.1.2.3"]),
            ip("10.1.2.3")
        );
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6, 1.2.3.4:99999"]),
            ip("10.0.0.2")
        );
        // Several header lines: the last is the nearest.
        assert_eq!(
            key("10.0.0.2:443", &["6.6.6.6", "198.51.100.1, 10.9.9.9"]),
            ip("198.51.100.1")
        );
        // Every hop trusted: the farthest one vouched for.
        assert_eq!(key("10.0.0.2:443", &["10.3.3.3, 10.4.4.4"]), ip("10.3.3.3"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_ranges() {
        let proxies = PeerIp::trusted_proxies(["10.0.0.0/8"]).unwrap();
        let request = from_peer("[::ffff:10.0.0.2]:443", &["203.0.113.9"]);
        assert_eq!(proxies.extract(&head_of(&request)), ip("203.0.113.9"));
        let direct = from_peer("[::ffff:198.51.100.4]:5000", &["1.1.1.1"]);
        assert_eq!(proxies.extract(&head_of(&direct)), ip("198.51.100.4"));
        let mapped = PeerIp::trusted_proxies(["::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(
            mapped.extract(&head_of(&from_peer("10.0.0.2:1", &["203.0.113.9"]))),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn identity_wins_and_the_peer_is_the_fallback() {
        let extractor = IdentityOrPeerIp::new(PeerIp::new());
        let mut alice = from_peer("198.51.100.4:1", &[]);
        alice
            .extensions_mut()
            .insert(Identity(Arc::from("user:alice")));
        let mut alice_elsewhere = from_peer("203.0.113.1:1", &[]);
        alice_elsewhere
            .extensions_mut()
            .insert(Identity(Arc::from("user:alice")));
        let anonymous = Request::get("/")
            .header("authorization", "Bearer made-up")
            .body(())
            .unwrap();
        let mut anonymous = anonymous;
        anonymous
            .extensions_mut()
            .insert(PeerAddr("198.51.100.4:2".parse().unwrap()));
        let key = |request: &Request<()>| extractor.extract(&head_of(request));
        assert_eq!(key(&alice), key(&alice_elsewhere));
        assert_eq!(key(&anonymous), KeyValue::Ip(ip("198.51.100.4")));
        assert_ne!(key(&alice), key(&anonymous));
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

        let garbage = from_peer("[::1]:80", &["not-an-ip, ,"]);
        assert_eq!(proxies.extract(&head_of(&garbage)), ip("::1"));
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
        for bad in [
            "10.0.0.0/33",
            "nonsense",
            "10.0.0.0/x",
            "::/129",
            "::ffff:10.0.0.0/90",
        ] {
            assert_eq!(
                IpNet::parse(bad).unwrap_err().field(),
                "trusted_proxies",
                "{bad}"
            );
        }
    }
}
