//! What the cache stores per key, and how fresh it is.

use std::sync::Arc;

/// A value with its expiry (nanoseconds on the cache clock). Kept small: quick_cache
/// clones the entry on every hit. The stale windows are the cache's, added to
/// `fresh_until` when needed; tags sit behind a thin pointer.
#[derive(Debug, Clone)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) fresh_until: u64,
    pub(crate) tags: Option<Arc<Vec<Box<str>>>>,
    /// A caller is reloading this stale entry; the others keep being served the old value.
    pub(crate) refreshing: bool,
}

/// Where an entry is in its life at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    /// Past its TTL, inside the stale-while-revalidate window.
    Stale,
    /// Past the stale window, inside the stale-if-error window: served only if a reload
    /// fails.
    ErrorOnly,
    Dead,
}

/// The cache's stale windows, in nanoseconds after expiry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub(crate) revalidate: u64,
    pub(crate) on_error: u64,
}

impl<V> Entry<V> {
    #[inline]
    pub(crate) fn freshness(&self, now: u64, windows: Windows) -> Freshness {
        let past = now.saturating_sub(self.fresh_until);
        if now < self.fresh_until {
            Freshness::Fresh
        } else if past < windows.revalidate {
            Freshness::Stale
        } else if past < windows.on_error {
            Freshness::ErrorOnly
        } else {
            Freshness::Dead
        }
    }

    /// When the entry stops being of any use.
    pub(crate) fn dead_at(&self, windows: Windows) -> u64 {
        self.fresh_until
            .saturating_add(windows.revalidate.max(windows.on_error))
    }

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.tags
            .as_ref()
            .is_some_and(|tags| tags.iter().any(|t| &**t == tag))
    }
}
