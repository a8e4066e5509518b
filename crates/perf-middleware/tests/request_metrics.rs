//! Request metrics through a debugging recorder. The recorder is global to this test binary;
//! each test uses its own metric prefix so the tests stay independent.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use perf_middleware::clock::TokioClock;
use perf_middleware::metrics::{RequestMetricsLayer, RouteTemplate};
use perf_middleware::rate_limit::RequestHead;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("first recorder in this binary");
        snapshotter
    })
}

/// Everything recorded so far, keyed by `name{label=value,...}`. A debugging snapshot drains
/// counters and gauges for the whole binary, so every snapshot is folded in here: counters
/// and gauges summed (the layer only moves its gauge up and down), histogram samples
/// appended.
fn recorded() -> std::sync::MutexGuard<'static, BTreeMap<String, DebugValue>> {
    static RECORDED: OnceLock<Mutex<BTreeMap<String, DebugValue>>> = OnceLock::new();
    let mut recorded = RECORDED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
        let merged = match (recorded.remove(&name), value) {
            (Some(DebugValue::Counter(old)), DebugValue::Counter(new)) => {
                DebugValue::Counter(old + new)
            }
            (Some(DebugValue::Gauge(old)), DebugValue::Gauge(new)) => DebugValue::Gauge(old + new),
            (Some(DebugValue::Histogram(mut old)), DebugValue::Histogram(new)) => {
                old.extend(new);
                DebugValue::Histogram(old)
            }
            (_, value) => value,
        };
        recorded.insert(name, merged);
    }
    recorded
}

/// Every metric whose name starts with `prefix`, as `name{label=value,...} => value`.
fn metrics_of(prefix: &str) -> Vec<String> {
    recorded()
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, value)| {
            let value = match value {
                DebugValue::Counter(count) => count.to_string(),
                DebugValue::Gauge(gauge) => gauge.to_string(),
                DebugValue::Histogram(samples) => format!(
                    "{:?}",
                    samples.iter().map(|s| s.into_inner()).collect::<Vec<_>>()
                ),
            };
            format!("{name} => {value}")
        })
        .collect()
}

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

#[tokio::test(start_paused = true)]
async fn counts_times_and_measures_bytes_per_route_and_status() {
    snapshotter();
    let mut service = ServiceBuilder::new()
        .layer(
            RequestMetricsLayer::with_prefix("t1")
                .unwrap()
                .clock(TokioClock::new()),
        )
        .service(service_fn(|request: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let status = if request.uri().path().ends_with("/0") {
                404
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"hello")))
                    .unwrap(),
            )
        }));
    for id in [1, 2, 0] {
        let mut request = Request::post(format!("/users/{id}"))
            .header("content-length", "10")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(RouteTemplate(Cow::Borrowed("/users/{id}")));
        let response = send(&mut service, request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(
        metrics_of("t1_"),
        [
            "t1_request_body_bytes_total{method=POST,route=/users/{id}} => 30",
            "t1_request_duration_seconds{method=POST,route=/users/{id},status=200} => [0.25, 0.25]",
            "t1_request_duration_seconds{method=POST,route=/users/{id},status=404} => [0.25]",
            "t1_requests_in_flight{} => 0",
            "t1_requests_total{method=POST,route=/users/{id},status=200} => 2",
            "t1_requests_total{method=POST,route=/users/{id},status=404} => 1",
            "t1_response_body_bytes_total{method=POST,route=/users/{id},status=200} => 10",
            "t1_response_body_bytes_total{method=POST,route=/users/{id},status=404} => 5",
        ]
    );
}

#[tokio::test]
async fn routes_are_capped_and_unknown_ones_are_unmatched() {
    snapshotter();
    let by_path = |head: &RequestHead<'_>| {
        let path = head.uri.path();
        (path != "/raw").then(|| Cow::Owned(path.to_owned()))
    };
    let mut service = ServiceBuilder::new()
        .layer(
            RequestMetricsLayer::with_prefix("t2")
                .unwrap()
                .max_routes(2)
                .route_label(by_path),
        )
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }));
    for path in ["/a", "/b", "/c", "/d", "/a", "/raw"] {
        send(&mut service, Request::get(path).body(()).unwrap())
            .await
            .unwrap();
    }
    let totals: Vec<String> = metrics_of("t2_requests_total");
    assert_eq!(
        totals,
        [
            "t2_requests_total{method=GET,route=/a,status=200} => 2",
            "t2_requests_total{method=GET,route=/b,status=200} => 1",
            "t2_requests_total{method=GET,route=other,status=200} => 2",
            "t2_requests_total{method=GET,route=unmatched,status=200} => 1",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn errors_and_cancelled_requests_leave_no_one_in_flight() {
    snapshotter();
    let layer = RequestMetricsLayer::with_prefix("t3").unwrap();
    let mut failing = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: Request<()>| async {
            Err::<Response<Full<Bytes>>, _>("upstream reset")
        }));
    send(&mut failing, Request::new(())).await.unwrap_err();

    let mut hanging =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_: Request<()>| async {
                std::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }));
    let call = send(&mut hanging, Request::new(()));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), call)
            .await
            .is_err()
    );

    let lines = metrics_of("t3_");
    assert!(
        lines.contains(
            &"t3_requests_total{method=GET,route=unmatched,status=error} => 1".to_owned()
        ),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"t3_requests_in_flight{} => 0".to_owned()),
        "{lines:?}"
    );
}

#[test]
fn an_invalid_prefix_is_a_build_error() {
    assert_eq!(
        RequestMetricsLayer::with_prefix("9x").unwrap_err().field(),
        "prefix"
    );
    assert_eq!(
        RequestMetricsLayer::with_prefix("").unwrap_err().field(),
        "prefix"
    );
    assert!(StatusCode::OK.is_success());
}

#[tokio::test]
async fn a_router_inside_can_name_the_route_on_the_response() {
    snapshotter();
    let mut service = ServiceBuilder::new()
        .layer(RequestMetricsLayer::with_prefix("t4").unwrap())
        .service(service_fn(|request: Request<()>| async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            if request.uri().path().starts_with("/sessions/") {
                response
                    .extensions_mut()
                    .insert(RouteTemplate(Cow::Borrowed("/sessions/{id}")));
            }
            Ok::<_, Infallible>(response)
        }));
    for path in ["/sessions/1", "/sessions/2", "/nowhere"] {
        send(&mut service, Request::get(path).body(()).unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        metrics_of("t4_requests_total"),
        [
            "t4_requests_total{method=GET,route=/sessions/{id},status=200} => 2",
            "t4_requests_total{method=GET,route=unmatched,status=200} => 1",
        ]
    );
}
