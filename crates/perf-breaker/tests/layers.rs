//! The tower layers: generic and HTTP, single and keyed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use perf_breaker::{
    Answer, BoxError, BreakerLayer, CircuitBreaker, CircuitOpen, HttpBreakerLayer, HttpClassifier,
    KeyedCircuitBreaker, State,
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn breaker(failures: u32) -> CircuitBreaker {
    CircuitBreaker::builder()
        .tokio_clock()
        .failure_threshold(failures)
        .open_duration(Duration::from_millis(2500))
        .jitter(0.0)
        .build()
        .unwrap()
}

/// An HTTP service answering the status in the request's path ("/503") and counting calls.
fn status_echo(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |request: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let status: u16 = request.uri().path()[1..].parse().unwrap();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(format!("answered {status}"))
                    .unwrap(),
            )
        }
    })
}

/// Waits for readiness, then calls.
async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn generic_layer_rejects_with_a_downcastable_error_and_skips_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker(2)))
        .service(service_fn(move |fail: bool| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { if fail { Err("down") } else { Ok("up") } }
        }));

    for _ in 0..2 {
        let error = send(&mut service, true).await.unwrap_err();
        assert_eq!(error.to_string(), "down");
    }
    let error: BoxError = send(&mut service, false).await.unwrap_err();
    let open = error.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
    assert_eq!(open.retry_after(), Duration::from_millis(2500));
    assert_eq!(error.to_string(), "circuit breaker is open");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the open circuit must not call through"
    );

    tokio::time::advance(Duration::from_millis(2500)).await;
    assert_eq!(send(&mut service, false).await.unwrap(), "up");
}

#[tokio::test(start_paused = true)]
async fn generic_layer_takes_a_classifier() {
    let breaker = breaker(1);
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()).classifier(
            |result: &Result<u32, Infallible>| matches!(result, Ok(code) if *code >= 500),
        ))
        .service(service_fn(
            |code: u32| async move { Ok::<_, Infallible>(code) },
        ));
    send(&mut service, 404).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    send(&mut service, 500).await.unwrap();
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_cancels_the_probe() {
    let breaker = breaker(1);
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::new(breaker.clone()))
        .service(service_fn(|hang: bool| async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Err::<(), _>("down")
        }));
    send(&mut service, false).await.unwrap_err();
    tokio::time::advance(Duration::from_millis(2500)).await;

    let hanging = service.ready().await.unwrap().call(true);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), hanging)
            .await
            .is_err()
    );
    assert_eq!(breaker.stats().cancelled, 1);
    // The slot is free again: the next probe runs (and fails, reopening the circuit).
    let error = send(&mut service, false).await.unwrap_err();
    assert_eq!(error.to_string(), "down");
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn http_layer_answers_503_with_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let breaker = breaker(2);
    let mut service = ServiceBuilder::new()
        .layer(HttpBreakerLayer::new(breaker.clone()))
        .service(status_echo(Arc::clone(&calls)));

    for _ in 0..2 {
        let response = send(&mut service, get("/500")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let response = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // 2.5 s left, rounded up to whole seconds.
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.body(), "");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn http_layer_does_not_count_client_errors() {
    let breaker = breaker(2);
    let mut service = ServiceBuilder::new()
        .layer(HttpBreakerLayer::new(breaker.clone()))
        .service(status_echo(Arc::default()));
    for path in ["/404", "/400", "/429", "/401", "/404"] {
        send(&mut service, get(path)).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.stats().failures, 0);
    for path in ["/408", "/504"] {
        send(&mut service, get(path)).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Open, "timeouts and 5xx count");
}

#[tokio::test(start_paused = true)]
async fn http_layer_counts_inner_errors_and_inner_timeouts() {
    let breaker = breaker(2);
    let mut service = ServiceBuilder::new()
        .layer(HttpBreakerLayer::new(breaker.clone()))
        .timeout(Duration::from_secs(1))
        .service(service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, BoxError>(Response::new(String::new()))
        }));
    for _ in 0..2 {
        let error = send(&mut service, get("/")).await.unwrap_err();
        assert!(error.is::<tower::timeout::error::Elapsed>());
    }
    assert_eq!(breaker.state(), State::Open);
    let response = send(&mut service, get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn keyed_http_layer_isolates_hosts() {
    let breakers = KeyedCircuitBreaker::builder()
        .template(CircuitBreaker::builder().tokio_clock().failure_threshold(1))
        .build()
        .unwrap();
    let host = |request: &Request<()>| {
        request
            .headers()
            .get("host")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut service = ServiceBuilder::new()
        .layer(HttpBreakerLayer::keyed(breakers.clone(), host))
        .service(status_echo(Arc::default()));
    let to = |host: &str, path: &str| Request::get(path).header("host", host).body(()).unwrap();

    let response = send(&mut service, to("a", "/502")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let response = send(&mut service, to("a", "/200")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = send(&mut service, to("b", "/200")).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "host b has its own closed breaker"
    );
    assert_eq!(breakers.open_keys(), ["a".to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn generic_keyed_layer_isolates_keys() {
    let breakers = KeyedCircuitBreaker::builder()
        .template(CircuitBreaker::builder().tokio_clock().failure_threshold(1))
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(BreakerLayer::keyed(
            breakers.clone(),
            |(tenant, _): &(u32, bool)| *tenant,
        ))
        .service(service_fn(|(_, fail): (u32, bool)| async move {
            if fail { Err("down") } else { Ok(()) }
        }));
    send(&mut service, (1, true)).await.unwrap_err();
    let error = send(&mut service, (1, false)).await.unwrap_err();
    assert!(error.is::<CircuitOpen>());
    send(&mut service, (2, false)).await.unwrap();
    assert_eq!(breakers.len(), 2);
}

/// An API's own rejection format, through the `Answer` extension point.
#[derive(Clone)]
struct JsonUnavailable;

impl<E> Answer<Response<String>, E> for JsonUnavailable {
    type Response = Response<String>;
    type Error = E;

    fn admitted(result: Result<Response<String>, E>) -> Result<Response<String>, E> {
        result
    }

    fn rejected(&self, open: CircuitOpen) -> Result<Response<String>, E> {
        Ok(Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"error":"circuit_open","retry_after_ms":{}}}"#,
                open.retry_after().as_millis()
            ))
            .unwrap())
    }

    fn not_ready(error: E) -> E {
        error
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_answer_shapes_the_rejection() {
    let mut service = ServiceBuilder::new()
        .layer(
            BreakerLayer::new(breaker(1))
                .classifier(HttpClassifier)
                .answer(JsonUnavailable),
        )
        .service(status_echo(Arc::default()));
    let failed = send(&mut service, get("/500")).await.unwrap();
    assert_eq!(failed.body(), "answered 500");
    let rejected = send(&mut service, get("/200")).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        rejected.body(),
        r#"{"error":"circuit_open","retry_after_ms":2500}"#
    );
}
