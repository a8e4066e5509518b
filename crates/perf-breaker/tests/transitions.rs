//! The state machine: every transition, the probe limit, cancellation and backoff, on tokio's
//! paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_breaker::{
    Builder, CallError, CircuitBreaker, FailureRate, Reason, SlidingWindow, State, Transition,
};
use tokio::time::advance;

const OPEN: Duration = Duration::from_secs(10);

fn builder() -> Builder {
    CircuitBreaker::builder()
        .tokio_clock()
        .failure_threshold(3)
        .open_duration(OPEN)
        .max_open_duration(Duration::from_secs(80))
        .jitter(0.0)
}

fn fail(breaker: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").failure();
    }
}

fn succeed(breaker: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").success();
    }
}

type Log = Arc<Mutex<Vec<(State, State, Reason)>>>;

/// Records every transition a breaker makes.
fn recorded(builder: Builder) -> (CircuitBreaker, Log) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    let breaker = builder
        .on_transition(move |t: &Transition| sink.lock().unwrap().push((t.from, t.to, t.reason)))
        .build()
        .unwrap();
    (breaker, log)
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_the_circuit() {
    let (breaker, log) = recorded(builder());
    fail(&breaker, 2);
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        *log.lock().unwrap(),
        [(State::Closed, State::Open, Reason::ConsecutiveFailures)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_breaks_the_run_of_failures() {
    let breaker = builder().build().unwrap();
    fail(&breaker, 2);
    succeed(&breaker, 1);
    fail(&breaker, 2);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 2);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_time_left_then_admits_a_probe() {
    let (breaker, log) = recorded(builder());
    fail(&breaker, 3);

    advance(Duration::from_secs(4)).await;
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Duration::from_secs(6));

    advance(Duration::from_secs(6)).await;
    let probe = breaker
        .try_acquire()
        .expect("probe admitted after the open period");
    assert!(probe.is_probe());
    assert_eq!(breaker.state(), State::HalfOpen);
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *log.lock().unwrap(),
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Reason::OpenPeriodElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
    let stats = breaker.stats();
    assert_eq!((stats.rejections, stats.transitions), (1, 3));
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_the_probe_limit() {
    let breaker = builder()
        .half_open_max_probes(2)
        .half_open_success_threshold(2)
        .build()
        .unwrap();
    fail(&breaker, 3);
    advance(OPEN).await;

    let first = breaker.try_acquire().unwrap();
    let second = breaker.try_acquire().unwrap();
    let third = breaker.try_acquire().unwrap_err();
    assert_eq!(third.state(), State::HalfOpen);
    assert_eq!(third.retry_after(), Duration::from_secs(1));

    // A finished probe frees its slot; the circuit stays half-open until two succeed.
    first.success();
    assert_eq!(breaker.state(), State::HalfOpen);
    let replacement = breaker
        .try_acquire()
        .expect("slot freed by the finished probe");
    second.success();
    assert_eq!(breaker.state(), State::Closed);
    // A probe that finishes after the circuit closed belongs to an older generation.
    replacement.failure();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn probe_slots_are_reserved_atomically_across_threads() {
    const PROBES: u32 = 3;
    let breaker = builder().half_open_max_probes(PROBES).build().unwrap();
    fail(&breaker, 3);
    advance(OPEN).await;
    // The first probe moves the breaker to half-open on the paused clock; the threads below
    // read the real clock, which only the open state consults.
    let first = breaker.try_acquire().unwrap();

    // Eight threads race for probe slots and hold what they win until all have tried.
    let barrier = std::sync::Barrier::new(8);
    let admitted = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let permits: Vec<_> =
                        (0..4).filter_map(|_| breaker.try_acquire().ok()).collect();
                    barrier.wait();
                    let count = permits.len();
                    drop(permits);
                    count
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(admitted, PROBES as usize - 1);
    assert_eq!(breaker.state(), State::HalfOpen);
    // Every slot the threads held came back when their permits were dropped.
    drop(first);
    for _ in 0..PROBES {
        std::mem::forget(breaker.try_acquire().expect("slot returned"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_longer_period() {
    let (breaker, log) = recorded(builder());
    fail(&breaker, 3);
    advance(OPEN).await;
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.stats().consecutive_trips, 2);
    // Second trip: twice the open duration.
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), 2 * OPEN);

    advance(2 * OPEN).await;
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), 4 * OPEN);

    advance(4 * OPEN).await;
    breaker.try_acquire().unwrap().failure();
    // Capped at max_open_duration (80 s), not 8 × 10 s... which happens to be 80 s; one more
    // trip proves the cap.
    advance(8 * OPEN).await;
    breaker.try_acquire().unwrap().failure();
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Duration::from_secs(80)
    );

    // Closing resets the backoff: the next trip opens for the base duration again.
    advance(Duration::from_secs(80)).await;
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.stats().consecutive_trips, 0);
    fail(&breaker, 3);
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), OPEN);
    assert!(
        log.lock()
            .unwrap()
            .contains(&(State::HalfOpen, State::Open, Reason::ProbeFailed))
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_within_its_spread() {
    let breaker = builder().jitter(0.5).build().unwrap();
    fail(&breaker, 3);
    assert_eq!(breaker.try_acquire().unwrap_err().retry_after(), OPEN);
    advance(OPEN).await;
    breaker.try_acquire().unwrap().failure();
    let second = breaker.try_acquire().unwrap_err().retry_after();
    assert!(
        (Duration::from_secs(10)..=Duration::from_secs(30)).contains(&second),
        "{second:?} outside 20 s ± 50 %"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_slot_back() {
    let breaker = builder().build().unwrap();
    fail(&breaker, 3);
    advance(OPEN).await;

    // The probe's future is dropped before it finishes, as a timeout would do.
    let call = breaker.call(std::future::pending::<Result<(), ()>>);
    let timed_out = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(timed_out.is_err());
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.stats().cancelled, 1);

    // Without the slot back, this would be rejected forever.
    let result = breaker.call(|| async { Ok::<_, ()>("recovered") }).await;
    assert_eq!(result, Ok("recovered"));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_from_before_a_transition_are_ignored() {
    let breaker = builder().build().unwrap();
    let slow = breaker.try_acquire().unwrap();
    fail(&breaker, 3);
    advance(OPEN).await;
    let probe = breaker.try_acquire().unwrap();
    // The call admitted while closed finishes now; it must not close the circuit.
    slow.success();
    assert_eq!(breaker.state(), State::HalfOpen);
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_count_window() {
    let (breaker, log) = recorded(
        builder()
            .failure_threshold(0)
            .failure_rate(FailureRate::new(0.5, SlidingWindow::Count(10)).minimum_calls(6)),
    );
    // Alternating outcomes never make three in a row, but reach 50 % once six calls are in.
    for round in 0..2 {
        succeed(&breaker, 1);
        fail(&breaker, 1);
        assert_eq!(breaker.state(), State::Closed, "round {round}");
    }
    succeed(&breaker, 1);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(log.lock().unwrap()[0].2, Reason::FailureRate);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_under_the_threshold_keeps_the_circuit_closed() {
    let breaker = builder()
        .failure_threshold(0)
        .failure_rate(FailureRate::new(0.5, SlidingWindow::Count(10)).minimum_calls(10))
        .build()
        .unwrap();
    for _ in 0..20 {
        succeed(&breaker, 2);
        fail(&breaker, 1);
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_time_window_forgets_old_calls() {
    let breaker = builder()
        .failure_threshold(0)
        .failure_rate(
            FailureRate::new(0.5, SlidingWindow::Time(Duration::from_secs(10))).minimum_calls(4),
        )
        .build()
        .unwrap();
    fail(&breaker, 3);
    // The three failures leave the window before the next call arrives.
    advance(Duration::from_secs(11)).await;
    succeed(&breaker, 1);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Closed);
    // Within one window: 3 of 5 calls failed.
    fail(&breaker, 1);
    succeed(&breaker, 1);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_count_as_failures() {
    let breaker = builder()
        .failure_threshold(2)
        .slow_call_threshold(Duration::from_millis(100))
        .build()
        .unwrap();
    for _ in 0..2 {
        let result = breaker
            .call(|| async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<_, ()>(())
            })
            .await;
        // The caller still gets its result; only the breaker counts it against the dependency.
        assert_eq!(result, Ok(()));
    }
    assert_eq!(breaker.state(), State::Open);
    let stats = breaker.stats();
    assert_eq!(
        (stats.successes, stats.slow_calls, stats.failures),
        (2, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn call_with_decides_what_is_a_failure() {
    let breaker = builder().failure_threshold(1).build().unwrap();
    let not_found = breaker
        .call_with(
            |result: &Result<(), &str>| !matches!(result, Err("not found")),
            || async { Err("not found") },
        )
        .await;
    assert_eq!(not_found, Err(CallError::Inner("not found")));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn force_open_force_closed_and_reset() {
    let (breaker, log) = recorded(builder());
    breaker.force_open();
    let open = breaker.try_acquire().unwrap_err();
    assert_eq!(open.state(), State::ForcedOpen);
    // Forced open does not end by itself.
    advance(Duration::from_secs(3600)).await;
    assert!(breaker.try_acquire().is_err());

    breaker.force_closed();
    fail(&breaker, 10);
    assert_eq!(breaker.state(), State::ForcedClosed);

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    fail(&breaker, 3);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        log.lock().unwrap()[..3],
        [
            (State::Closed, State::ForcedOpen, Reason::Forced),
            (State::ForcedOpen, State::ForcedClosed, Reason::Forced),
            (State::ForcedClosed, State::Closed, Reason::Reset),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stats_count_every_outcome_and_time_in_state() {
    let breaker = builder().build().unwrap();
    succeed(&breaker, 4);
    fail(&breaker, 3);
    drop(breaker.try_acquire());
    advance(Duration::from_secs(2)).await;
    assert!(breaker.try_acquire().is_err());
    let stats = breaker.stats();
    assert_eq!(stats.state, State::Open);
    assert_eq!(
        (
            stats.calls,
            stats.successes,
            stats.failures,
            stats.rejections
        ),
        (7, 4, 3, 2)
    );
    assert_eq!(
        stats.cancelled, 0,
        "a rejected acquire is not a cancelled call"
    );
    assert_eq!(stats.time_in_state, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn without_tokio_clock_the_open_period_runs_on_the_cpu_clock() {
    let breaker = CircuitBreaker::builder()
        .failure_threshold(1)
        .open_duration(OPEN)
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(OPEN * 2).await;
    assert!(
        breaker.try_acquire().is_err(),
        "advancing tokio's paused clock must not end an open period timed by FastClock"
    );
}
