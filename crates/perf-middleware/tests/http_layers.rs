//! The small HTTP layers: body limit, timeout, security headers, request id, Server-Timing.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use perf_middleware::body_limit::BodyLimitLayer;
use perf_middleware::request_id::{RequestId, RequestIdLayer};
use perf_middleware::security_headers::SecurityHeadersLayer;
use perf_middleware::server_timing::{ServerTimingLayer, Timings};
use perf_middleware::timeout::TimeoutLayer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

/// A chunked body without `Content-Length`: `chunks` frames of `size` bytes.
struct Chunks {
    chunks: usize,
    size: usize,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.chunks == 0 {
            return Poll::Ready(None);
        }
        self.chunks -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
    }
}

fn chunked(chunks: usize, size: usize) -> Chunks {
    Chunks { chunks, size }
}

/// Reads the whole (limited) body; answers 413 when the limit trips, as a handler would.
async fn read_all(request: Request<Limited<Chunks>>) -> Result<Response<String>, Infallible> {
    match request.into_body().collect().await {
        Ok(body) => Ok(Response::new(format!("{} bytes", body.to_bytes().len()))),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Ok(Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .body(String::new())
            .unwrap()),
        Err(error) => panic!("unexpected body error: {error}"),
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_fails_while_streaming() {
    let mut service = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(1000))
        .service(service_fn(read_all));
    let within = send(
        &mut service,
        Request::post("/").body(chunked(3, 300)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(within.body(), "900 bytes");
    let over = send(
        &mut service,
        Request::post("/").body(chunked(5, 300)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn bad_content_lengths_are_400_and_never_reach_the_service() {
    let mut service = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(1000))
        .service(service_fn(|_: Request<Limited<Chunks>>| async {
            panic!("a refused request must not reach the service");
            #[allow(unreachable_code)]
            Ok::<Response<String>, Infallible>(Response::new(String::new()))
        }));
    for length in ["-1", "abc", "18446744073709551616"] {
        let request = Request::post("/")
            .header("content-length", length)
            .body(chunked(0, 0))
            .unwrap();
        let response = send(&mut service, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{length}");
    }
    let huge = Request::post("/")
        .header("content-length", "1099511627776")
        .body(chunked(0, 0))
        .unwrap();
    assert_eq!(
        send(&mut service, huge).await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_answers_its_status_and_lets_fast_responses_through() {
    let slow_or_fast = service_fn(|request: Request<()>| async move {
        if request.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok::<_, Infallible>(Response::new(String::from("done")))
    });
    let mut service = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)).status(StatusCode::REQUEST_TIMEOUT))
        .service(slow_or_fast);
    let fast = send(&mut service, Request::get("/fast").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(fast.body(), "done");
    let started = tokio::time::Instant::now();
    let slow = send(&mut service, Request::get("/slow").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn security_headers_are_added_kept_and_server_is_removed() {
    let mut service = ServiceBuilder::new()
        .layer(SecurityHeadersLayer::new())
        .service(service_fn(|request: Request<()>| async move {
            let mut response = Response::builder().header("server", "hyper/1.0");
            if request.uri().path() == "/embeddable" {
                response = response.header("x-frame-options", "SAMEORIGIN");
            }
            Ok::<_, Infallible>(response.body(String::new()).unwrap())
        }));
    let plain = send(&mut service, Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(plain.headers()["x-content-type-options"], "nosniff");
    assert_eq!(plain.headers()["x-frame-options"], "DENY");
    assert!(plain.headers().get("server").is_none());
    let own = send(&mut service, Request::get("/embeddable").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(own.headers()["x-frame-options"], "SAMEORIGIN");
}

#[tokio::test]
async fn a_bad_client_request_id_is_replaced_and_the_inner_sees_the_same_id() {
    let mut service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .service(service_fn(|request: Request<()>| async move {
            let header = request.headers()["x-request-id"].clone();
            let extension = request.extensions().get::<RequestId>().unwrap().clone();
            assert_eq!(&header, extension.header_value());
            Ok::<_, Infallible>(Response::new(extension.as_str().to_owned()))
        }));
    let request = Request::get("/")
        .header("x-request-id", "has spaces in it")
        .body(())
        .unwrap();
    let response = send(&mut service, request).await.unwrap();
    let echoed = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(echoed, "has spaces in it");
    assert_eq!(echoed, response.body());
}

#[tokio::test(start_paused = true)]
async fn server_timing_lists_every_recorded_stage_in_order() {
    let mut service = ServiceBuilder::new()
        .layer(ServerTimingLayer::new().expose_to_all())
        .service(service_fn(|request: Request<()>| async move {
            let timings = Timings::of(&request).expect("traced");
            timings.record("queue", Duration::from_millis(3));
            let engine = timings.start("engine");
            tokio::time::sleep(Duration::from_millis(40)).await;
            engine.finish();
            timings.record("db", Duration::from_micros(2500));
            Ok::<_, Infallible>(Response::new(()))
        }));
    let request = Request::get("/")
        .header("x-trace", "TRUE")
        .body(())
        .unwrap();
    let response = send(&mut service, request).await.unwrap();
    assert_eq!(
        response.headers()["server-timing"],
        "queue;dur=3.000, engine;dur=40.000, db;dur=2.500, total;dur=40.000"
    );
}

#[tokio::test]
async fn server_timing_is_off_until_a_policy_exposes_it() {
    let mut service = ServiceBuilder::new()
        .layer(ServerTimingLayer::new())
        .service(service_fn(|request: Request<()>| async move {
            assert!(
                Timings::of(&request).is_none(),
                "no work for unexposed requests"
            );
            Ok::<_, Infallible>(Response::new(()))
        }));
    let request = Request::get("/")
        .header("x-trace", "true")
        .body(())
        .unwrap();
    let response = send(&mut service, request).await.unwrap();
    assert!(response.headers().get("server-timing").is_none());
}
