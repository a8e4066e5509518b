//! Circuit breakers side by side: perf-breaker, failsafe, recloser and tower-resilience.
//!
//! Four groups, each with every breaker in it so that one run gives the ratios:
//! `closed_call` and `open_rejection` on one thread, and the same two with two threads
//! calling through one shared breaker at once (time per call as each thread sees it).
//!
//! Every breaker is set to trip on consecutive failures where it supports that. recloser
//! only has a failure-rate ring (100 calls here), so ours runs twice: plain, and with a
//! failure-rate window of the same 100 calls (`permit_window_100`), the like-for-like row.
//! The direct APIs (our permit, failsafe's and recloser's `call`) are compared with each
//! other, and the two tower layers (ours and tower-resilience's) with each other.
//!
//! A Prometheus recorder is installed before any breaker is built, so ours really counts
//! every rejection and publishes the count to the recorder (the peers count nothing);
//! without one, `metrics` calls are no-ops and the rejection rows would flatter us.
//!
//! Multi-thread rows measure steady state: the threads (or the runtime and its tasks) exist
//! before the clock starts. Layer calls run as tasks on a persistent multi-thread runtime
//! with a worker per calling task, so a waiting task parks a worker the way it would in a
//! server, not a single-threaded runtime of its own.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench breaker`

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use failsafe::{CircuitBreaker as _, backoff, failure_policy};
use perf_breaker::{BreakerLayer, CircuitBreaker, FailureRate, SlidingWindow};
use tower::{Layer, Service, ServiceExt, service_fn};

const OPEN_FOR: Duration = Duration::from_secs(3600);

/// The operation every breaker guards: succeeds unless told to fail.
#[inline]
fn operation(fail: bool) -> Result<u64, u64> {
    if fail {
        Err(black_box(1))
    } else {
        Ok(black_box(0))
    }
}

fn ours(failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .failure_threshold(failures)
        .open_duration(OPEN_FOR)
        .max_open_duration(OPEN_FOR)
        .build()
        .expect("valid config")
}

/// Ours with recloser's shape: a failure-rate window over the last 100 calls.
fn ours_windowed(failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .failure_threshold(failures)
        .failure_rate(FailureRate::new(0.5, SlidingWindow::Count(100)))
        .open_duration(OPEN_FOR)
        .max_open_duration(OPEN_FOR)
        .build()
        .expect("valid config")
}

/// Our direct API: a permit, the operation, the outcome.
#[inline]
fn ours_call(breaker: &CircuitBreaker, fail: bool) -> bool {
    match breaker.try_acquire() {
        Ok(permit) => {
            let result = operation(fail);
            permit.record(result.is_err());
            result.is_ok()
        }
        Err(_) => false,
    }
}

type Failsafe = failsafe::StateMachine<failure_policy::ConsecutiveFailures<backoff::Constant>, ()>;

fn failsafe(failures: u32) -> Failsafe {
    failsafe::Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            failures,
            backoff::constant(OPEN_FOR),
        ))
        .build()
}

fn recloser(open: bool) -> recloser::Recloser {
    let recloser = recloser::Recloser::custom()
        .closed_len(if open { 1 } else { 100 })
        .open_wait(OPEN_FOR)
        .build();
    if open {
        for _ in 0..2 {
            let _ = recloser.call(|| operation(true));
        }
    }
    recloser
}

type Request = bool;

fn inner_service()
-> impl Service<Request, Response = u64, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    service_fn(|fail: Request| {
        std::future::ready(operation(fail).map_err(|_| std::io::Error::other("failed")))
    })
}

/// Each breaker behind its tower layer, as a service both threads can clone.
fn ours_layered(
    open: bool,
) -> impl Service<Request, Response = u64, Error: std::fmt::Debug, Future: Send> + Clone + Send + 'static
{
    let breaker = ours(1);
    if open {
        breaker.try_acquire().expect("closed").failure();
    }
    BreakerLayer::new(breaker).layer(inner_service())
}

fn tower_resilience_layered(
    open: bool,
) -> impl Service<Request, Response = u64, Error: std::fmt::Debug, Future: Send> + Clone + Send + 'static
{
    let layer = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .wait_duration_in_open(OPEN_FOR)
        .build()
        .expect("valid config");
    let mut service = layer.layer(inner_service());
    if open {
        runtime().block_on(async {
            let _ = service.ready().await.expect("ready").call(true).await;
        });
    }
    service
}

fn runtime() -> tokio::runtime::Runtime {
    // tower-resilience's breaker needs the time driver.
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Time `iters` calls of `call` on each of `threads` threads started together; returns the
/// wall time, so the per-iteration figure is the cost of one call as each thread sees it.
fn on_threads<F>(threads: usize, iters: u64, call: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let start_line = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                start_line.wait();
                for i in 0..iters {
                    call(i);
                }
            });
        }
        start_line.wait();
        let started = Instant::now();
        // The scope joins every thread before returning.
        started
    })
    .elapsed()
}

/// The runtime the layer rows run on: `threads` workers, built once per row.
fn layer_runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_time()
        .build()
        .expect("runtime")
}

/// Drives `iters` service calls in each of `threads` tasks on `runtime`; the time runs from
/// the spawn of the tasks to the end of the last.
fn service_calls<S>(
    runtime: &tokio::runtime::Runtime,
    threads: usize,
    iters: u64,
    service: &S,
) -> Duration
where
    S: Service<Request, Future: Send> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..threads)
            .map(|_| {
                let mut service = service.clone();
                tokio::spawn(async move {
                    for _ in 0..iters {
                        let ready = service.ready().await.expect("ready");
                        let _ = black_box(ready.call(false).await);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("no panic");
        }
        started.elapsed()
    })
}

fn bench_state(c: &mut Criterion, open: bool, threads: usize) {
    let state = if open {
        "open_rejection"
    } else {
        "closed_call"
    };
    let name = if threads == 1 {
        format!("breaker/{state}")
    } else {
        format!("breaker/{state}/{threads}_threads")
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));

    for (row, breaker) in [("permit", ours(5)), ("permit_window_100", ours_windowed(5))] {
        if open {
            for _ in 0..5 {
                ours_call(&breaker, true);
            }
            assert_eq!(breaker.state(), perf_breaker::State::Open);
        }
        group.bench_function(BenchmarkId::new("perf-breaker", row), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, |_| {
                    black_box(ours_call(&breaker, false));
                })
            })
        });
    }

    let failsafe = failsafe(5);
    if open {
        for _ in 0..5 {
            let _ = failsafe.call(|| operation(true));
        }
        assert!(!failsafe.is_call_permitted(), "failsafe should be open");
    }
    group.bench_function(BenchmarkId::new("failsafe", "call"), |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, |_| {
                black_box(failsafe.call(|| operation(false)).is_ok());
            })
        })
    });

    let recloser = recloser(open);
    group.bench_function(BenchmarkId::new("recloser", "call"), |b| {
        b.iter_custom(|iters| {
            on_threads(threads, iters, |_| {
                black_box(recloser.call(|| operation(false)).is_ok());
            })
        })
    });

    let runtime = layer_runtime(threads);
    let layered = ours_layered(open);
    group.bench_function(BenchmarkId::new("perf-breaker", "tower_layer"), |b| {
        b.iter_custom(|iters| service_calls(&runtime, threads, iters, &layered))
    });

    let layered = tower_resilience_layered(open);
    group.bench_function(BenchmarkId::new("tower-resilience", "tower_layer"), |b| {
        b.iter_custom(|iters| service_calls(&runtime, threads, iters, &layered))
    });

    group.finish();
}

fn breakers(c: &mut Criterion) {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the bench installs the only recorder");
    for threads in [1, 2] {
        bench_state(c, false, threads);
        bench_state(c, true, threads);
    }
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_secs(2));
    targets = breakers
}
criterion_main!(benches);
