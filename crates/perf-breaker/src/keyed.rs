//! One breaker per key (host, route, tenant) in a bounded map that forgets idle keys.

use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Gauge, Label};
use perf_core::clock::AnyClock;
use quick_cache::sync::Cache;

use crate::breaker::CircuitBreaker;
use crate::builder::Builder;
use crate::clock;
use crate::config::Config;
use crate::error::BuildError;
use crate::state::State;

type KeyLabel<K> = Arc<dyn Fn(&K) -> String + Send + Sync>;

/// Settings of a [`KeyedCircuitBreaker`]: every key's breaker, and the bounds of the map.
///
/// | field | default |
/// |---|---|
/// | `breaker` | [`Config`]'s defaults, for every key |
/// | `max_keys` | 10,000 breakers held at most |
/// | `idle_timeout` | 10 min: a breaker unused this long (and not open) is dropped |
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct KeyedConfig {
    /// The configuration every key's breaker is built from.
    pub breaker: Config,
    /// The most breakers held at once.
    pub max_keys: usize,
    /// A breaker unused this long (and not open) is dropped.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub idle_timeout: Duration,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        KeyedConfig {
            breaker: Config::default(),
            max_keys: 10_000,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// A breaker per key, created on first use from one template configuration.
///
/// Memory stays bounded whatever keys arrive: the map holds at most `max_keys` breakers
/// (quick_cache's S3-FIFO evicts keys seen once before keys in steady use), and keys unused
/// for `idle_timeout` are swept out lazily when new keys arrive; no background task is
/// needed. A breaker that is open or forced is never swept while idle, so an outage is not
/// forgotten just because callers stopped calling; capacity eviction can still drop it when
/// the map is full of busier keys, which at worst re-tests that dependency early.
///
/// ```
/// use perf_breaker::KeyedCircuitBreaker;
///
/// let breakers = KeyedCircuitBreaker::<String>::builder()
///     .template(perf_breaker::CircuitBreaker::builder().failure_threshold(1))
///     .max_keys(1_000)
///     .build()
///     .unwrap();
/// breakers.get(&"db-1".to_owned()).try_acquire().unwrap().failure();
/// assert!(breakers.get(&"db-1".to_owned()).try_acquire().is_err());
/// assert!(breakers.get(&"db-2".to_owned()).try_acquire().is_ok());
/// ```
pub struct KeyedCircuitBreaker<K> {
    inner: Arc<KeyedInner<K>>,
}

struct KeyedInner<K> {
    template: Builder,
    breakers: Cache<K, CircuitBreaker>,
    idle_ms: u64,
    last_sweep_ms: AtomicU64,
    clock: AnyClock,
    key_label: Option<KeyLabel<K>>,
    /// `{prefix}_open_keys`, recounted on every transition of any key.
    open_keys: Gauge,
}

impl<K> Clone for KeyedCircuitBreaker<K> {
    fn clone(&self) -> Self {
        KeyedCircuitBreaker {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> KeyedCircuitBreaker<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Breakers per key with `config`.
    ///
    /// # Errors
    ///
    /// As [`KeyedBuilder::build`].
    pub fn new(config: KeyedConfig) -> Result<Self, BuildError> {
        KeyedBuilder::from_config(config).build()
    }

    /// A builder with the defaults of [`KeyedConfig`].
    pub fn builder() -> KeyedBuilder<K> {
        KeyedBuilder::from_config(KeyedConfig::default())
    }

    /// The breaker for `key`, created from the template if the key is new.
    pub fn get(&self, key: &K) -> CircuitBreaker {
        let inner = &*self.inner;
        let now = inner.now_ms();
        let breaker = match inner.breakers.get(key) {
            Some(breaker) => breaker,
            None => {
                inner.sweep_if_due(now);
                let created = inner.breakers.get_or_insert_with(key, || {
                    Ok::<_, Infallible>(inner.create(key, Arc::downgrade(&self.inner)))
                });
                match created {
                    Ok(breaker) => breaker,
                    Err(never) => match never {},
                }
            }
        };
        // Coarse on purpose: a write per call would make every caller of a hot key fight
        // over the same cache line, and idleness is measured in minutes.
        let last = breaker.inner.last_used_ms.load(Relaxed);
        if now.saturating_sub(last) >= 1_000 {
            breaker.inner.last_used_ms.store(now, Relaxed);
        }
        breaker
    }

    /// The breaker for `key` if it exists, without creating it or marking it used.
    pub fn peek(&self, key: &K) -> Option<CircuitBreaker> {
        self.inner.breakers.peek(key)
    }

    /// Drops the breaker of `key`; the next call starts a fresh one.
    pub fn remove(&self, key: &K) -> Option<CircuitBreaker> {
        self.inner.breakers.remove(key).map(|(_, breaker)| breaker)
    }

    /// Breakers held now.
    pub fn len(&self) -> usize {
        self.inner.breakers.len()
    }

    /// Whether no breaker is held.
    pub fn is_empty(&self) -> bool {
        self.inner.breakers.is_empty()
    }

    /// The keys whose breaker currently rejects calls (open, or forced open).
    pub fn open_keys(&self) -> Vec<K> {
        self.inner
            .breakers
            .iter()
            .filter(|(_, breaker)| matches!(breaker.state(), State::Open | State::ForcedOpen))
            .map(|(key, _)| key)
            .collect()
    }

    /// Removes every idle breaker now instead of waiting for the next new key.
    pub fn sweep_idle(&self) {
        let now = self.inner.now_ms();
        self.inner.sweep(now);
    }
}

impl<K> KeyedInner<K>
where
    K: Hash + Eq + Clone,
{
    fn now_ms(&self) -> u64 {
        clock::millis(&self.clock)
    }

    fn create(&self, key: &K, registry: Weak<KeyedInner<K>>) -> CircuitBreaker
    where
        K: Send + Sync + 'static,
    {
        let mut labels = vec![Label::new("breaker", self.template.config().name.clone())];
        if let Some(key_label) = &self.key_label {
            labels.push(Label::new("key", key_label(key)));
        }
        // Without a key label every key's breaker has the same labels, so none may write
        // the state gauge (a new closed key would hide an open one); the open-key count
        // says what the registry as a whole is doing.
        let recount: crate::transition::Listener = Arc::new(move |_: &crate::Transition| {
            if let Some(registry) = registry.upgrade() {
                registry.publish_open_keys();
            }
        });
        let breaker =
            self.template
                .build_with_labels(labels, self.key_label.is_some(), Some(recount));
        breaker.inner.last_used_ms.store(self.now_ms(), Relaxed);
        breaker
    }

    fn count_open(&self) -> usize {
        self.breakers
            .iter()
            .filter(|(_, breaker)| matches!(breaker.state(), State::Open | State::ForcedOpen))
            .count()
    }

    fn publish_open_keys(&self) {
        self.open_keys.set(self.count_open() as f64);
    }

    /// Sweeps at most four times per idle period, so a burst of new keys costs one pass.
    fn sweep_if_due(&self, now: u64) {
        let last = self.last_sweep_ms.load(Relaxed);
        if now.saturating_sub(last) >= self.idle_ms / 4
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
    }

    fn sweep(&self, now: u64) {
        self.breakers.retain(|_, breaker| {
            let idle = now.saturating_sub(breaker.inner.last_used_ms.load(Relaxed)) >= self.idle_ms;
            !idle
                || matches!(
                    breaker.state(),
                    State::Open | State::ForcedOpen | State::HalfOpen
                )
        });
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for KeyedCircuitBreaker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("name", &self.inner.template.config().name)
            .field("keys", &self.inner.breakers.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`KeyedCircuitBreaker`].
#[must_use = "builder does nothing itself, call build()"]
pub struct KeyedBuilder<K> {
    template: Builder,
    max_keys: usize,
    idle_timeout: Duration,
    key_label: Option<KeyLabel<K>>,
}

impl<K> KeyedBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder starting from `config` (read from a file, say).
    pub fn from_config(config: KeyedConfig) -> Self {
        KeyedBuilder {
            template: Builder::from_config(config.breaker),
            max_keys: config.max_keys,
            idle_timeout: config.idle_timeout,
            key_label: None,
        }
    }

    /// The configuration (and listeners) every key's breaker is built from.
    pub fn template(mut self, template: Builder) -> Self {
        self.template = template;
        self
    }

    /// The most breakers held at once.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// A breaker unused this long (and not open) is dropped.
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Adds a `key` label to each key's metrics, rendered by `label`. Off by default: only
    /// turn it on for keys of bounded, low cardinality (a handful of upstream hosts), since
    /// each key then gets its own metric series.
    pub fn key_label<F>(mut self, label: F) -> Self
    where
        F: Fn(&K) -> String + Send + Sync + 'static,
    {
        self.key_label = Some(Arc::new(label));
        self
    }

    /// Validates the template and the bounds.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for an invalid template field, a zero `max_keys` or an
    /// `idle_timeout` under a second.
    pub fn build(self) -> Result<KeyedCircuitBreaker<K>, BuildError> {
        self.template.config().validate()?;
        if self.max_keys == 0 {
            return Err(BuildError::new("max_keys", "must be at least 1"));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(BuildError::new("idle_timeout", "must be at least 1s"));
        }
        let config = self.template.config();
        metrics::describe_gauge!(
            format!("{}_open_keys", config.metrics_prefix),
            "Keys whose circuit breaker refuses calls (open or forced open)"
        );
        let open_keys = metrics::gauge!(
            format!("{}_open_keys", config.metrics_prefix),
            vec![Label::new("breaker", config.name.clone())]
        );
        open_keys.set(0.0);
        Ok(KeyedCircuitBreaker {
            inner: Arc::new(KeyedInner {
                open_keys,
                clock: self.template.new_clock(),
                template: self.template,
                breakers: Cache::new(self.max_keys),
                idle_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
                last_sweep_ms: AtomicU64::new(0),
                key_label: self.key_label,
            }),
        })
    }
}

impl<K> fmt::Debug for KeyedBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBuilder")
            .field("template", &self.template)
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .field("key_label", &self.key_label.is_some())
            .finish()
    }
}
