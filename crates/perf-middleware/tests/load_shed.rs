//! Load shedding: immediate refusal, priorities, and the adaptive limit finding a service's
//! capacity, on tokio's paused clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use perf_middleware::clock::TokioClock;
use perf_middleware::load_shed::{AdaptiveConfig, LoadShedLayer, LoadShedder, Priority};
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep};
use tower::{Layer, Service, ServiceExt, service_fn};

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

/// A service that can work on `capacity` requests at once, each taking `work`; the rest
/// queue inside it, so latency grows with load like a real saturated dependency.
fn saturating_service(
    capacity: usize,
    work: Duration,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let slots = Arc::new(Semaphore::new(capacity));
    service_fn(move |_: Request<()>| {
        let slots = Arc::clone(&slots);
        async move {
            let _slot = slots.acquire().await.expect("never closed");
            sleep(work).await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_converges_on_the_service_capacity() {
    const CAPACITY: usize = 8;
    let shedder = LoadShedder::adaptive(AdaptiveConfig {
        initial_limit: 64,
        tolerance: 1.5,
        window: 200,
        decrease_interval: Duration::from_millis(20),
        ..AdaptiveConfig::default()
    })
    .clock(TokioClock::new())
    .build()
    .unwrap();
    let service = LoadShedLayer::new(shedder.clone())
        .layer(saturating_service(CAPACITY, Duration::from_millis(10)));

    // 64 clients keep sending for 20 simulated seconds; a refused client backs off 5 ms.
    let end = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let mut service = service.clone();
            tokio::spawn(async move {
                let (mut served, mut refused) = (0u64, 0u64);
                while Instant::now() < end {
                    let response = send(&mut service, Request::new(())).await.unwrap();
                    if response.status() == StatusCode::OK {
                        served += 1;
                    } else {
                        refused += 1;
                        sleep(Duration::from_millis(5)).await;
                    }
                }
                (served, refused)
            })
        })
        .collect();

    // Sample the limit over the last ten seconds.
    sleep(Duration::from_secs(10)).await;
    let mut limits = Vec::new();
    while Instant::now() < end {
        limits.push(shedder.stats().limit);
        sleep(Duration::from_millis(100)).await;
    }
    let mut served = 0;
    for client in clients {
        served += client.await.unwrap().0;
    }

    let mean = limits.iter().map(|&l| f64::from(l)).sum::<f64>() / limits.len() as f64;
    assert!(
        (CAPACITY as f64 * 0.75..=CAPACITY as f64 * 2.0).contains(&mean),
        "mean limit {mean:.1} should settle near the capacity {CAPACITY}: {limits:?}"
    );
    // Throughput stays near what the service can do: 8 per 10 ms = 800/s.
    let rate = served as f64 / 20.0;
    assert!(rate > 600.0, "served {rate:.0}/s of a possible 800/s");
    let baseline = shedder.stats().baseline_latency.unwrap();
    assert_eq!(baseline, Duration::from_millis(10));
}

#[tokio::test]
async fn priorities_decide_who_is_refused_first() {
    let shedder = LoadShedder::fixed(10)
        .low_priority_share(0.5)
        .high_priority_reserve(2)
        .build()
        .unwrap();
    let normal: Vec<_> = (0..5)
        .map(|_| shedder.try_acquire(Priority::Normal).unwrap())
        .collect();
    // Half the limit is in flight: low priority is refused, normal is not.
    assert!(shedder.try_acquire(Priority::Low).is_none());
    let more: Vec<_> = (0..5)
        .map(|_| shedder.try_acquire(Priority::Normal).unwrap())
        .collect();
    assert!(shedder.try_acquire(Priority::Normal).is_none());
    let high: Vec<_> = (0..2)
        .map(|_| shedder.try_acquire(Priority::High).unwrap())
        .collect();
    assert!(shedder.try_acquire(Priority::High).is_none());
    // Exempt requests pass and are not counted.
    let exempt = shedder.try_acquire(Priority::Exempt).unwrap();
    assert_eq!(shedder.stats().in_flight, 12);
    assert_eq!(shedder.stats().shed, 3);
    drop((normal, more, high, exempt));
    assert_eq!(shedder.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn refusals_are_immediate_and_the_slot_returns_when_the_response_completes() {
    let shedder = LoadShedder::fixed(1).build().unwrap();
    let by_header = |head: &perf_middleware::rate_limit::RequestHead<'_>| {
        if head.headers.contains_key("x-priority-high") {
            Priority::High
        } else {
            Priority::Normal
        }
    };
    let mut service = LoadShedLayer::new(shedder.clone())
        .prioritize(by_header)
        .layer(saturating_service(4, Duration::from_secs(1)));

    let mut slow = service.clone();
    let first = tokio::spawn(async move { send(&mut slow, Request::new(())).await });
    tokio::task::yield_now().await;
    assert_eq!(shedder.stats().in_flight, 1);

    let started = Instant::now();
    let refused = send(&mut service, Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");

    let urgent = Request::get("/")
        .header("x-priority-high", "1")
        .body(())
        .unwrap();
    assert_eq!(
        send(&mut service, urgent).await.unwrap().status(),
        StatusCode::OK
    );

    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(shedder.stats().in_flight, 0);
    assert_eq!(
        send(&mut service, Request::new(())).await.unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn invalid_settings_are_build_errors() {
    assert_eq!(
        LoadShedder::fixed(0).build().unwrap_err().field(),
        "max_in_flight"
    );
    assert_eq!(
        LoadShedder::fixed(5)
            .low_priority_share(0.0)
            .build()
            .unwrap_err()
            .field(),
        "low_priority_share"
    );
    let inverted = AdaptiveConfig {
        min_limit: 10,
        max_limit: 5,
        ..AdaptiveConfig::default()
    };
    assert_eq!(
        LoadShedder::adaptive(inverted).build().unwrap_err().field(),
        "adaptive.min_limit"
    );
    let flat = AdaptiveConfig {
        tolerance: 1.0,
        ..AdaptiveConfig::default()
    };
    assert_eq!(
        LoadShedder::adaptive(flat).build().unwrap_err().field(),
        "adaptive.tolerance"
    );
}

/// Sends one request on its own task; returns its status and when it completed.
fn spawn_request<S>(mut service: S) -> tokio::task::JoinHandle<(StatusCode, Instant)>
where
    S: Service<Request<()>, Response = Response<String>> + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
{
    tokio::spawn(async move {
        let response = send(&mut service, Request::new(())).await.unwrap();
        (response.status(), Instant::now())
    })
}

/// A handler that counts how many requests it has started and then waits `work`.
fn counting_service(
    started: Arc<std::sync::atomic::AtomicUsize>,
    work: Duration,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |_: Request<()>| {
        let started = Arc::clone(&started);
        async move {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            sleep(work).await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_waits_unstarted_and_runs_when_a_slot_frees() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let shedder = LoadShedder::fixed(1)
        .queue(2, Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let service = LoadShedLayer::new(shedder.clone()).layer(counting_service(
        Arc::clone(&started),
        Duration::from_secs(1),
    ));

    let begin = Instant::now();
    let spawn = |service: &_| spawn_request(Clone::clone(service));
    let first = spawn(&service);
    tokio::task::yield_now().await;
    let second = spawn(&service);
    let third = spawn(&service);
    tokio::task::yield_now().await;
    assert_eq!(started.load(SeqCst), 1, "queued handlers have not started");
    assert_eq!(shedder.stats().queued, 2);

    // The queue is full: a fourth request is refused at once.
    let mut fourth = service.clone();
    let refused = send(&mut fourth, Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(Instant::now(), begin);

    let (status, done) = first.await.unwrap();
    assert_eq!(
        (status, done - begin),
        (StatusCode::OK, Duration::from_secs(1))
    );
    let (status, done) = second.await.unwrap();
    assert_eq!(
        (status, done - begin),
        (StatusCode::OK, Duration::from_secs(2))
    );
    let (status, done) = third.await.unwrap();
    assert_eq!(
        (status, done - begin),
        (StatusCode::OK, Duration::from_secs(3))
    );
    assert_eq!(started.load(SeqCst), 3);
    let stats = shedder.stats();
    assert_eq!((stats.in_flight, stats.queued, stats.shed), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_times_out_with_503_and_low_priority_is_never_queued() {
    let shedder = LoadShedder::fixed(1)
        .queue(4, Duration::from_millis(300))
        .build()
        .unwrap();
    let low_if_flagged = |head: &perf_middleware::rate_limit::RequestHead<'_>| {
        if head.headers.contains_key("x-low") {
            Priority::Low
        } else {
            Priority::Normal
        }
    };
    let service = LoadShedLayer::new(shedder.clone())
        .prioritize(low_if_flagged)
        .layer(saturating_service(4, Duration::from_secs(10)));
    let mut busy = service.clone();
    let long = tokio::spawn(async move { send(&mut busy, Request::new(())).await });
    tokio::task::yield_now().await;

    let begin = Instant::now();
    let mut waiting = service.clone();
    let timed_out = send(&mut waiting, Request::new(())).await.unwrap();
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(timed_out.headers()["retry-after"], "1");
    assert_eq!(begin.elapsed(), Duration::from_millis(300));

    let mut low = service.clone();
    let request = Request::get("/").header("x-low", "1").body(()).unwrap();
    let refused = send(&mut low, request).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        begin.elapsed(),
        Duration::from_millis(300),
        "refused without queueing"
    );

    // A waiter that gives up leaves the queue.
    let mut impatient = service.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        send(&mut impatient, Request::new(())),
    )
    .await;
    assert!(gave_up.is_err());
    assert_eq!(shedder.stats().queued, 0);
    long.abort();
}

#[test]
fn an_empty_queue_is_a_build_error() {
    assert_eq!(
        LoadShedder::fixed(1)
            .queue(0, Duration::from_secs(1))
            .build()
            .unwrap_err()
            .field(),
        "queue"
    );
    assert_eq!(
        LoadShedder::fixed(1)
            .queue(1, Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "queue"
    );
}
