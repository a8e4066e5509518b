//! Helpers shared by the bench files.

// Every bench file is its own crate and compiles this module alone, using only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::Criterion;

/// The criterion settings of every bench file: a short warm-up and `measurement` per bench, so
/// that a full `cargo bench` stays within minutes on a 2-core machine. We report ratios between
/// implementations measured in the same group, which these windows resolve to a few percent.
pub(crate) fn criterion(measurement: Duration) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(measurement)
}

/// Polls a future that completes without waiting (every bench service does), with no
/// runtime in the measurement.
pub(crate) fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the bench services never wait"),
    }
}
