//! The breaker clock: tokio's `Instant`, so tests can pause and advance it, read as whole
//! milliseconds since an epoch so that times fit in the state word.

use tokio::time::Instant;

/// Milliseconds from `epoch` to now, saturating.
#[inline]
pub(crate) fn millis_since(epoch: Instant) -> u64 {
    let elapsed = Instant::now().saturating_duration_since(epoch);
    // u64 arithmetic rather than `as_millis`, which goes through u128: this is on the open
    // (rejecting) path.
    elapsed
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(elapsed.subsec_millis()))
}
