//! Rate limiting through the layer, on tokio's paused clock.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use perf_middleware::clock::TokioClock;
use perf_middleware::rate_limit::{
    BearerToken, GlobalKey, PeerAddr, PeerIp, Quota, RateLimitLayer, RateLimiter, RequestHead,
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

fn ok_service(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    service_fn(move |_request: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<_, Infallible>(Response::new("ok".to_owned())))
    })
}

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

fn as_token(token: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn header(response: &Response<String>, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test(start_paused = true)]
async fn over_quota_gets_429_with_standard_headers_and_the_handler_is_not_called() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limiter = RateLimiter::builder(Quota::per_second(2).burst(2))
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let mut service = RateLimitLayer::new(limiter, BearerToken).layer(ok_service(calls.clone()));

    let first = send(&mut service, as_token("a")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "ratelimit-limit"), "2");
    assert_eq!(header(&first, "ratelimit-remaining"), "1");
    assert_eq!(header(&first, "x-ratelimit-remaining"), "1");
    assert_eq!(header(&first, "ratelimit-reset"), "1");

    send(&mut service, as_token("a")).await.unwrap();
    let limited = send(&mut service, as_token("a")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "1");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert_eq!(header(&limited, "x-ratelimit-limit"), "2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Another token has its own bucket.
    assert_eq!(
        send(&mut service, as_token("b")).await.unwrap().status(),
        StatusCode::OK
    );

    // Half a second refills one token for "a".
    advance(Duration::from_millis(500)).await;
    assert_eq!(
        send(&mut service, as_token("a")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut service, as_token("a")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn nested_limits_report_the_one_closest_to_running_out() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limiter = |quota: Quota| {
        RateLimiter::builder(quota)
            .clock(TokioClock::new())
            .build()
            .unwrap()
    };
    // A general limit outside a route's stricter one, as a server composes them.
    let route = RateLimitLayer::new(limiter(Quota::per_hour(3)), BearerToken);
    let general = RateLimitLayer::new(limiter(Quota::per_second(100).burst(200)), BearerToken);
    let mut service = general.layer(route.layer(ok_service(calls.clone())));

    let first = send(&mut service, as_token("a")).await.unwrap();
    assert_eq!(header(&first, "ratelimit-limit"), "3");
    assert_eq!(header(&first, "ratelimit-remaining"), "2");
    assert_eq!(header(&first, "x-ratelimit-remaining"), "2");
    send(&mut service, as_token("a")).await.unwrap();
    send(&mut service, as_token("a")).await.unwrap();
    let limited = send(&mut service, as_token("a")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "ratelimit-limit"), "3");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert_eq!(header(&limited, "retry-after"), "1200");

    // Where the general limit is the closer one, it is the one reported.
    let tight = RateLimitLayer::new(limiter(Quota::per_second(1).burst(1)), BearerToken);
    let loose = RateLimitLayer::new(limiter(Quota::per_hour(50)), BearerToken);
    let mut service = tight.layer(loose.layer(ok_service(calls.clone())));
    let response = send(&mut service, as_token("b")).await.unwrap();
    assert_eq!(header(&response, "ratelimit-limit"), "1");
    assert_eq!(header(&response, "ratelimit-remaining"), "0");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn the_limiter_is_shared_between_layers_and_clones() {
    let limiter = RateLimiter::global_with_clock(Quota::per_minute(3), TokioClock::new());
    let layer = RateLimitLayer::new(limiter.clone(), GlobalKey);
    let mut upload = layer.layer(ok_service(Arc::default()));
    let mut list = RateLimitLayer::new(limiter, GlobalKey).layer(ok_service(Arc::default()));
    let mut upload_clone = upload.clone();

    for service in [&mut upload, &mut upload_clone] {
        assert_eq!(
            send(service, Request::new(())).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        send(&mut list, Request::new(())).await.unwrap().status(),
        StatusCode::OK
    );
    let limited = send(&mut list, Request::new(())).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "20");
}

#[tokio::test(start_paused = true)]
async fn per_key_quotas_override_the_default() {
    let limiter = RateLimiter::builder(Quota::per_hour(1))
        .quota_for(
            BearerToken::key_of("partner"),
            Quota::per_hour(1000).burst(3),
        )
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let mut service = RateLimitLayer::new(limiter, BearerToken).layer(ok_service(Arc::default()));
    for _ in 0..3 {
        let response = send(&mut service, as_token("partner")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    send(&mut service, as_token("regular")).await.unwrap();
    let limited = send(&mut service, as_token("regular")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "3600");
}

#[tokio::test(start_paused = true)]
async fn idle_keys_leave_and_key_floods_stay_bounded() {
    let limiter = RateLimiter::builder(Quota::per_second(10).burst(5))
        .max_keys(1_000)
        .clock(TokioClock::new())
        .build()
        .unwrap();
    for key in 0..50_000u32 {
        assert!(limiter.check(&key).is_allowed());
    }
    assert!(limiter.len() <= 1_024, "held {} keys", limiter.len());

    // Throttled keys keep their state; once refilled (100 ms for one token), they go.
    let hot = 7_000_000u32;
    for _ in 0..5 {
        limiter.check(&hot);
    }
    assert!(!limiter.check(&hot).is_allowed());
    advance(Duration::from_millis(600)).await;
    limiter.sweep();
    assert_eq!(limiter.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn peer_ip_keys_by_client_behind_trusted_proxies() {
    let limiter = RateLimiter::builder(Quota::per_minute(1))
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let extractor = PeerIp::trusted_proxies(["127.0.0.1"]).unwrap();
    let mut service = RateLimitLayer::new(limiter, extractor).layer(ok_service(Arc::default()));
    let from = |client: &str| {
        let mut request = Request::get("/")
            .header("x-forwarded-for", client)
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("127.0.0.1:40000".parse().unwrap()));
        request
    };
    assert_eq!(
        send(&mut service, from("203.0.113.1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut service, from("203.0.113.2"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut service, from("203.0.113.1"))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn any_closure_is_a_key_extractor() {
    let limiter = RateLimiter::builder(Quota::per_minute(1))
        .clock(TokioClock::new())
        .build()
        .unwrap();
    let by_path = |head: &RequestHead<'_>| head.uri.path().to_owned();
    let mut service = RateLimitLayer::new(limiter, by_path).layer(ok_service(Arc::default()));
    let get = |path: &str| Request::get(path).body(()).unwrap();
    assert_eq!(
        send(&mut service, get("/a")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut service, get("/b")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut service, get("/a")).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn invalid_quotas_and_bounds_are_build_errors() {
    assert_eq!(
        Quota::new(0, Duration::from_secs(1)).unwrap_err().field(),
        "quota"
    );
    assert_eq!(Quota::new(10, Duration::ZERO).unwrap_err().field(), "quota");
    let error = RateLimiter::<u32>::builder(Quota::per_second(1))
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "max_keys");
}
