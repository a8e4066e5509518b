//! Responses the layers answer themselves.

use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

/// An empty response with `status`.
pub(crate) fn empty<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

/// An empty response with `status` and `Retry-After`.
pub(crate) fn retry_later<B: Default>(status: StatusCode, after: Duration) -> Response<B> {
    let mut response = empty(status);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, number(retry_after_seconds(after)));
    response
}

/// Whole seconds, rounded up, and at least 1: `Retry-After: 0` invites an immediate retry
/// into the same refusal.
pub(crate) fn retry_after_seconds(after: Duration) -> u64 {
    ceil_seconds(after).max(1)
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Numbers below this are served from a table of static header values.
const CACHED_NUMBERS: u64 = 4096;

/// `value` as a header value. Small numbers (quota sizes, remaining tokens, seconds to
/// reset) come from a table built once, so writing them costs no allocation: a layer that
/// adds several numeric headers to every response would otherwise allocate for each.
#[inline]
pub(crate) fn number(value: u64) -> HeaderValue {
    static TABLE: OnceLock<Box<[HeaderValue]>> = OnceLock::new();
    match usize::try_from(value) {
        Ok(index) if value < CACHED_NUMBERS => TABLE.get_or_init(number_table)[index].clone(),
        _ => HeaderValue::from(value),
    }
}

/// One leaked string holding every cached number's digits: `from_static` values clone
/// without touching a reference count. The leak is a few kilobytes, made once.
fn number_table() -> Box<[HeaderValue]> {
    let digits: String = (0..CACHED_NUMBERS).map(|n| n.to_string()).collect();
    let digits: &'static str = Box::leak(digits.into_boxed_str());
    let mut start = 0;
    (0..CACHED_NUMBERS)
        .map(|n| {
            let len = n.to_string().len();
            let value = HeaderValue::from_static(&digits[start..start + len]);
            start += len;
            value
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_and_uncached_numbers_render_the_same() {
        for value in [0, 1, 9, 10, 99, 100, 4095, 4096, 123_456_789] {
            assert_eq!(number(value), HeaderValue::from(value), "{value}");
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(3)), 3);
    }
}
