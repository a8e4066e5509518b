//! What a breaker reports through the `metrics` facade.

use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use perf_breaker::{CircuitBreaker, State};

/// The value of the metric `name` whose labels include all of `labels`. Taking a snapshot
/// drains the recorder's counters, so one snapshot serves all the lookups of a moment.
fn value<'a>(
    snapshot: &'a [Sample],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, _, _, _)| {
            let key = key.key();
            key.name() == name
                && labels.iter().all(|(k, v)| {
                    key.labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                })
        })
        .map(|(_, _, _, value)| value)
}

type Sample = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

#[test]
fn transitions_and_rejections_are_recorded_with_the_configured_prefix() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::builder()
            .name("engine")
            .metrics_prefix("pocwhisp_breaker")
            .failure_threshold(1)
            .build()
            .unwrap();
        assert_eq!(
            value(
                &snapshotter.snapshot().into_vec(),
                "pocwhisp_breaker_state",
                &[("breaker", "engine")]
            ),
            Some(&DebugValue::Gauge(0.0.into())),
            "the state series exists from the start"
        );
        breaker.try_acquire().unwrap().failure();
        for _ in 0..3 {
            assert!(breaker.try_acquire().is_err());
        }
        assert_eq!(breaker.state(), State::Open);

        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            value(
                &snapshot,
                "pocwhisp_breaker_state",
                &[("breaker", "engine")]
            ),
            Some(&DebugValue::Gauge(1.0.into()))
        );
        assert_eq!(
            value(
                &snapshot,
                "pocwhisp_breaker_transitions_total",
                &[
                    ("breaker", "engine"),
                    ("from", "closed"),
                    ("to", "open"),
                    ("reason", "consecutive_failures")
                ]
            ),
            Some(&DebugValue::Counter(1))
        );
        // The first rejection is published at once; the next two, within the same interval,
        // wait for the next publication.
        assert_eq!(
            value(
                &snapshot,
                "pocwhisp_breaker_rejections_total",
                &[("breaker", "engine")]
            ),
            Some(&DebugValue::Counter(1))
        );

        // A state change publishes the rest: the series is exact (this snapshot holds what
        // was added since the last one, which drained the counter).
        breaker.reset();
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            value(
                &snapshot,
                "pocwhisp_breaker_rejections_total",
                &[("breaker", "engine")]
            ),
            Some(&DebugValue::Counter(2))
        );
    });
}

#[test]
fn a_new_key_does_not_hide_an_open_one() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breakers = perf_breaker::KeyedCircuitBreaker::<&'static str>::builder()
            .template(
                CircuitBreaker::builder()
                    .name("upstreams")
                    .failure_threshold(1),
            )
            .build()
            .unwrap();
        breakers.get(&"db-1").try_acquire().unwrap().failure();
        assert_eq!(breakers.get(&"db-1").state(), State::Open);
        // A new key, closed, shares the labels of the open one.
        breakers.get(&"db-2").try_acquire().unwrap().success();
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            value(
                &snapshot,
                "circuit_breaker_open_keys",
                &[("breaker", "upstreams")]
            ),
            Some(&DebugValue::Gauge(1.0.into()))
        );
        assert!(
            value(
                &snapshot,
                "circuit_breaker_state",
                &[("breaker", "upstreams")]
            )
            .is_none(),
            "no shared state series to overwrite"
        );
        breakers.get(&"db-1").force_closed();
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            value(
                &snapshot,
                "circuit_breaker_open_keys",
                &[("breaker", "upstreams")]
            ),
            Some(&DebugValue::Gauge(0.0.into()))
        );
    });
}
