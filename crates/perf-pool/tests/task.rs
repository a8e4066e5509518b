//! The priority task pool on tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_pool::task::{SubmitError, TaskError, TaskPool, TaskPoolConfig};
use tokio::time::{advance, sleep};

fn pool(max_concurrent: usize, queue_size: usize) -> TaskPool {
    TaskPool::new(TaskPoolConfig {
        max_concurrent,
        queue_size,
        queue_timeout: Duration::from_secs(60),
        ..TaskPoolConfig::default()
    })
    .unwrap()
}

/// Lets spawned tasks run until they wait on the clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn higher_priority_runs_first_and_fifo_within_a_priority() {
    let pool = pool(1, 100);
    let order = Arc::new(Mutex::new(Vec::new()));
    let blocker = pool
        .submit("job", 0, |_| sleep(Duration::from_secs(1)))
        .unwrap();
    let mut handles = Vec::new();
    for (name, priority) in [("low", 1), ("urgent-a", 5), ("mid", 3), ("urgent-b", 5)] {
        let order = Arc::clone(&order);
        handles.push(
            pool.submit("job", priority, move |_| async move {
                order.lock().unwrap().push(name);
            })
            .unwrap(),
        );
    }
    assert_eq!(pool.stats().queued, 4);
    blocker.await.unwrap();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["urgent-a", "urgent-b", "mid", "low"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_kind_at_its_limit_does_not_block_other_kinds() {
    let pool = TaskPool::new(TaskPoolConfig {
        max_concurrent: 4,
        kind_limits: HashMap::from([("transcription".to_owned(), 1)]),
        ..TaskPoolConfig::default()
    })
    .unwrap();
    let work = |_| sleep(Duration::from_secs(10));
    let first = pool.submit("transcription", 9, work).unwrap();
    let second = pool.submit("transcription", 9, work).unwrap();
    let summary = pool.submit("summary", 1, work).unwrap();
    settle().await;
    assert!(first.started() && summary.started());
    assert!(!second.started(), "transcription is at its limit of 1");
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued), (2, 1));
    first.await.unwrap();
    settle().await;
    assert!(second.started());
    drop((second, summary));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let pool = pool(1, 2);
    let work = |_| sleep(Duration::from_secs(10));
    let _running = pool.submit("job", 0, work).unwrap();
    let _a = pool.submit("job", 0, work).unwrap();
    let _b = pool.submit("job", 0, work).unwrap();
    assert_eq!(
        pool.submit("job", 0, work).unwrap_err(),
        SubmitError::QueueFull
    );
    assert_eq!(pool.stats().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_waits_too_long_fails_and_never_runs() {
    let pool = TaskPool::new(TaskPoolConfig {
        max_concurrent: 1,
        queue_timeout: Duration::from_secs(2),
        ..TaskPoolConfig::default()
    })
    .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let _blocker = pool
        .submit("job", 0, |_| sleep(Duration::from_secs(10)))
        .unwrap();
    let flag = Arc::clone(&ran);
    let late = pool
        .submit("job", 0, move |_| async move { flag.store(true, SeqCst) })
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(late.await.unwrap_err(), TaskError::QueueTimeout);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    advance(Duration::from_secs(20)).await;
    settle().await;
    assert!(!ran.load(SeqCst));
    assert_eq!(pool.stats().timed_out, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_handle_cancels_queued_and_running_work() {
    let pool = pool(1, 10);
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&finished);
    let running = pool
        .submit("job", 0, move |_| async move {
            sleep(Duration::from_secs(5)).await;
            flag.store(true, SeqCst);
        })
        .unwrap();
    let queued_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&queued_ran);
    let queued = pool
        .submit("job", 0, move |_| async move { flag.store(true, SeqCst) })
        .unwrap();
    settle().await;
    drop(queued);
    drop(running);
    advance(Duration::from_secs(10)).await;
    settle().await;
    assert!(
        !finished.load(SeqCst),
        "the running task was aborted at its await"
    );
    assert!(!queued_ran.load(SeqCst), "the queued task was removed");
    let stats = pool.stats();
    assert_eq!(
        (stats.cancelled, stats.running, stats.queued, stats.failed),
        (2, 0, 0, 0)
    );
    // The slot is free again.
    assert_eq!(pool.submit("job", 0, |_| async { 1 }).unwrap().await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_work_runs_off_the_runtime_and_sees_its_cancel_token() {
    let pool = pool(2, 10);
    let value = pool
        .submit_blocking("cpu", 0, |_| (1..=20u64).product::<u64>())
        .unwrap()
        .await
        .unwrap();
    assert_eq!(value, 2_432_902_008_176_640_000);

    let observed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&observed);
    let handle = pool
        .submit_blocking("cpu", 0, move |cancel| {
            while !cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            flag.store(true, SeqCst);
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(handle);
    for _ in 0..500 {
        if observed.load(SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        observed.load(SeqCst),
        "the blocking work saw the cancellation"
    );
}

#[tokio::test(start_paused = true)]
async fn panics_are_failures_and_waits_are_measured() {
    let pool = pool(1, 10);
    let blocker = pool
        .submit("job", 0, |_| sleep(Duration::from_millis(400)))
        .unwrap();
    let waited = pool.submit("job", 0, |_| async { "after 400 ms" }).unwrap();
    let panicking = pool
        .submit("job", 0, |_| async { panic!("bug in a job") })
        .unwrap();
    blocker.await.unwrap();
    waited.await.unwrap();
    assert_eq!(panicking.await.unwrap_err(), TaskError::Panicked);
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (2, 1));
    assert_eq!(stats.wait_p50, Duration::from_millis(400));
    assert_eq!(stats.wait_p99, Duration::from_millis(400));
}

#[test]
fn invalid_limits_are_build_errors() {
    let zero = TaskPoolConfig {
        max_concurrent: 0,
        ..TaskPoolConfig::default()
    };
    assert_eq!(TaskPool::new(zero).unwrap_err().field(), "max_concurrent");
    let zero_kind = TaskPoolConfig {
        kind_limits: HashMap::from([("x".to_owned(), 0)]),
        ..TaskPoolConfig::default()
    };
    assert_eq!(TaskPool::new(zero_kind).unwrap_err().field(), "kind_limits");
}

#[tokio::test(start_paused = true)]
async fn a_saturated_kind_with_a_long_queue_costs_other_kinds_nothing() {
    let pool = TaskPool::new(TaskPoolConfig {
        max_concurrent: 64,
        queue_size: 30_000,
        kind_limits: HashMap::from([("transcription".to_owned(), 1)]),
        ..TaskPoolConfig::default()
    })
    .unwrap();
    let mut waiting = Vec::new();
    for _ in 0..20_000 {
        waiting.push(
            pool.submit("transcription", 1, |_| sleep(Duration::from_secs(3600)))
                .unwrap(),
        );
    }
    // Each submit and each finish of another kind used to pop and push back every waiting
    // transcription: 5,000 quick tasks took minutes. Now they pass the saturated kind by.
    let started = std::time::Instant::now();
    let mut quick = Vec::new();
    for n in 0..5_000 {
        quick.push(pool.submit("lookup", 0, move |_| async move { n }).unwrap());
    }
    for (n, handle) in quick.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap(), n);
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued), (1, 19_999));
    drop(waiting);
    settle().await;
    assert_eq!(pool.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_queue_full_of_live_tasks_refuses_and_cancelled_places_are_reused() {
    let pool = pool(1, 3);
    let running = pool
        .submit("job", 0, |_| sleep(Duration::from_secs(60)))
        .unwrap();
    let mut queued: Vec<_> = (0..3)
        .map(|_| {
            pool.submit("job", 0, |_| sleep(Duration::from_secs(1)))
                .unwrap()
        })
        .collect();
    assert!(matches!(
        pool.submit("job", 0, |_| async {}),
        Err(SubmitError::QueueFull)
    ));
    queued.pop();
    assert_eq!(pool.stats().queued, 2);
    let again = pool.submit("job", 0, |_| async {}).unwrap();
    assert_eq!(pool.stats().queued, 3);
    drop((running, queued, again));
}
