use std::fmt::Write;
use std::net::IpAddr;

use crate::rate_limit::KeyValue;

/// A rate-limit key as it is named in Redis: the part after the limiter's prefix.
///
/// Keys must name the same client in every process: [`KeyValue`]'s digests of tokens and
/// identities do so only when every process shares the secret
/// ([`share_key_secret`](crate::rate_limit::share_key_secret)).
pub trait RedisKey {
    /// Appends this key's name to `out`.
    fn write_redis_key(&self, out: &mut String);
}

impl RedisKey for KeyValue {
    fn write_redis_key(&self, out: &mut String) {
        match self {
            KeyValue::Global => out.push_str("global"),
            KeyValue::Ip(address) => address.write_redis_key(out),
            KeyValue::Hashed(digest) => {
                let _ = write!(out, "h:{digest:016x}");
            }
        }
    }
}

impl RedisKey for IpAddr {
    fn write_redis_key(&self, out: &mut String) {
        let _ = write!(out, "ip:{}", self.to_canonical());
    }
}

impl RedisKey for () {
    fn write_redis_key(&self, out: &mut String) {
        out.push_str("global");
    }
}

impl RedisKey for String {
    fn write_redis_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl RedisKey for &str {
    fn write_redis_key(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl RedisKey for u64 {
    fn write_redis_key(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}
