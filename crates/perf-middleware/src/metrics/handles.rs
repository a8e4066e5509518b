//! Metric handles cached per label set.
//!
//! Resolving a metric through the recorder hashes its name and labels and looks them up in
//! the recorder's registry, several times per request. The label sets are bounded (methods ×
//! capped routes × status codes), so each is resolved once and its handles kept here.
//!
//! As with any `metrics` handle, a handle resolved before a recorder is installed stays a
//! no-op: install the recorder before the first request.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use foldhash::fast::RandomState;
use metrics::{Counter, Gauge, Histogram, Label, SharedString};
use perf_core::sync::{read, write};

use super::labels::Route;

/// The handles of one `(method, route, status)`.
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) requests: Counter,
    pub(crate) duration: Histogram,
    pub(crate) response_bytes: Counter,
}

#[derive(Debug)]
pub(crate) struct Names {
    pub(crate) requests: SharedString,
    pub(crate) duration: SharedString,
    pub(crate) in_flight: SharedString,
    pub(crate) request_bytes: SharedString,
    pub(crate) response_bytes: SharedString,
}

#[derive(Debug)]
pub(crate) struct HandleCache {
    names: Names,
    by_status: RwLock<HashMap<u64, Handles, RandomState>>,
    request_bytes: RwLock<HashMap<u64, Counter, RandomState>>,
    in_flight: OnceLock<Gauge>,
}

/// The method, route and status of a request, as labels and as a cache key.
#[derive(Debug, Clone)]
pub(crate) struct LabelSet {
    pub(crate) method: (u8, SharedString),
    pub(crate) route: Route,
}

impl LabelSet {
    fn route_key(&self) -> u64 {
        (u64::from(self.method.0) << 48) | (u64::from(self.route.id) << 16)
    }

    fn labels(&self) -> Vec<Label> {
        vec![
            Label::new("method", self.method.1.clone()),
            Label::new("route", self.route.label.clone()),
        ]
    }
}

impl HandleCache {
    pub(crate) fn new(names: Names) -> Self {
        HandleCache {
            names,
            by_status: RwLock::default(),
            request_bytes: RwLock::default(),
            in_flight: OnceLock::new(),
        }
    }

    pub(crate) fn in_flight(&self) -> &Gauge {
        self.in_flight
            .get_or_init(|| metrics::gauge!(self.names.in_flight.clone()))
    }

    /// Runs `f` on the handles of `labels` with `status` (0 for an inner error).
    pub(crate) fn with<R>(
        &self,
        labels: &LabelSet,
        status: (u16, SharedString),
        f: impl FnOnce(&Handles) -> R,
    ) -> R {
        let key = labels.route_key() | u64::from(status.0);
        if let Some(handles) = read(&self.by_status).get(&key) {
            return f(handles);
        }
        let mut by_status = write(&self.by_status);
        let handles = by_status.entry(key).or_insert_with(|| {
            let mut with_status = labels.labels();
            with_status.push(Label::new("status", status.1));
            Handles {
                requests: metrics::counter!(self.names.requests.clone(), with_status.clone()),
                duration: metrics::histogram!(self.names.duration.clone(), with_status.clone()),
                response_bytes: metrics::counter!(self.names.response_bytes.clone(), with_status),
            }
        });
        f(handles)
    }

    /// Adds `bytes` to the request-bytes counter of `labels`.
    pub(crate) fn request_bytes(&self, labels: &LabelSet, bytes: u64) {
        let key = labels.route_key();
        if let Some(counter) = read(&self.request_bytes).get(&key) {
            counter.increment(bytes);
            return;
        }
        write(&self.request_bytes)
            .entry(key)
            .or_insert_with(|| metrics::counter!(self.names.request_bytes.clone(), labels.labels()))
            .increment(bytes);
    }
}
