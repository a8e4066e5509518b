//! The response-cache layer: what is stored, how variants are told apart, validators,
//! lifetimes (on tokio's paused clock), invalidation and stale answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use perf_cache::response::{ResponseCacheConfig, ResponseCacheLayer};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

type Origin = Arc<dyn Fn(&Request<()>, usize) -> Response<Full<Bytes>> + Send + Sync>;

/// A cache in front of an origin that counts its calls; `answer` gets the request and the
/// call number.
fn cached(
    layer: &ResponseCacheLayer,
    calls: &Arc<AtomicUsize>,
    answer: Origin,
) -> impl Service<
    Request<()>,
    Response = Response<perf_cache::response::CacheBody<Full<Bytes>>>,
    Error = Infallible,
> + use<> {
    let calls = Arc::clone(calls);
    layer.layer(service_fn(move |request: Request<()>| {
        let n = calls.fetch_add(1, SeqCst) + 1;
        std::future::ready(Ok::<_, Infallible>(answer(&request, n)))
    }))
}

fn json(body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn layer() -> ResponseCacheLayer {
    ResponseCacheLayer::with_tokio_clock(ResponseCacheConfig::default()).unwrap()
}

async fn get<S>(
    service: &mut S,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<
            Request<()>,
            Response = Response<perf_cache::response::CacheBody<Full<Bytes>>>,
            Error = Infallible,
        >,
{
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request.body(()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test(start_paused = true)]
async fn a_second_get_is_a_hit_with_age() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = cached(
        &layer(),
        &calls,
        Arc::new(|_, n| json(&format!("{{\"n\":{n}}}"))),
    );
    let (_, first, body) = get(&mut service, "/s/1?b=2&a=1", &[]).await;
    assert_eq!(first["x-cache"], "MISS");
    advance(Duration::from_secs(7)).await;
    let (_, second, again) = get(&mut service, "/s/1?a=1&b=2", &[]).await;
    assert_eq!(second["x-cache"], "HIT");
    assert_eq!(second["age"], "7");
    assert_eq!(
        (body, again.clone()),
        (again, Bytes::from_static(b"{\"n\":1}"))
    );
    assert_eq!(calls.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn vary_is_enforced_one_variant_per_encoding() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin: Origin = Arc::new(|request, _| {
        let encoding = request
            .headers()
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut response = json(&format!("{{\"for\":\"{encoding}\"}}"));
        response
            .headers_mut()
            .insert("vary", "accept-encoding".parse().unwrap());
        response
    });
    let mut service = cached(&layer(), &calls, origin);
    let (_, _, gzip) = get(&mut service, "/s/1", &[("accept-encoding", "gzip, br")]).await;
    let (_, _, identity) = get(&mut service, "/s/1", &[]).await;
    assert_ne!(
        gzip, identity,
        "a variant is never served to another Accept-Encoding"
    );
    let (_, hit, same) = get(&mut service, "/s/1", &[("accept-encoding", "br,GZIP")]).await;
    assert_eq!(hit["x-cache"], "HIT");
    assert_eq!(same, gzip);
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn etags_answer_304_on_misses_and_on_hits() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer();
    let mut service = cached(
        &layer,
        &calls,
        Arc::new(|_, _| json("{\"segments\":[1,2,3]}")),
    );
    let (_, headers, _) = get(&mut service, "/s/1", &[]).await;
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "a strong ETag: {etag}");

    let (status, headers, body) = get(&mut service, "/s/1", &[("if-none-match", &etag)]).await;
    assert_eq!(
        (status, headers["x-cache"].to_str().unwrap()),
        (StatusCode::NOT_MODIFIED, "HIT")
    );
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());

    layer.purge();
    let (status, headers, _) = get(
        &mut service,
        "/s/1",
        &[("if-none-match", &format!("W/{etag}"))],
    )
    .await;
    assert_eq!(
        (status, headers["x-cache"].to_str().unwrap()),
        (StatusCode::NOT_MODIFIED, "MISS")
    );
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn private_set_cookie_and_no_store_responses_are_never_stored() {
    for (name, value) in [
        ("cache-control", "private, max-age=60"),
        ("set-cookie", "session=abc"),
        ("cache-control", "no-store"),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let origin: Origin = Arc::new(move |_, _| {
            let mut response = json("{}");
            response.headers_mut().insert(name, value.parse().unwrap());
            response
        });
        let mut service = cached(&layer(), &calls, origin);
        for _ in 0..3 {
            let (_, headers, _) = get(&mut service, "/me", &[]).await;
            assert_eq!(headers["x-cache"], "MISS", "{name}: {value}");
        }
        assert_eq!(calls.load(SeqCst), 3, "{name}: {value}");
    }
}

#[tokio::test(start_paused = true)]
async fn keyed_per_user_private_responses_are_cached_per_user() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer().key_fn(|head| {
        head.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let origin: Origin = Arc::new(|request, _| {
        let user = request.headers()["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut response = json(&format!("{{\"user\":\"{user}\"}}"));
        response
            .headers_mut()
            .insert("cache-control", "private, max-age=60".parse().unwrap());
        response
    });
    let mut service = cached(&layer, &calls, origin);
    let (_, _, alice) = get(&mut service, "/me", &[("authorization", "Bearer alice")]).await;
    let (_, _, bob) = get(&mut service, "/me", &[("authorization", "Bearer bob")]).await;
    let (_, hit, alice_again) =
        get(&mut service, "/me", &[("authorization", "Bearer alice")]).await;
    assert_ne!(alice, bob);
    assert_eq!(
        (hit["x-cache"].to_str().unwrap(), alice_again),
        ("HIT", alice)
    );
    assert_eq!(calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn max_age_sets_the_lifetime_and_no_cache_requests_go_to_the_origin() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin: Origin = Arc::new(|_, n| {
        let mut response = json(&format!("{{\"n\":{n}}}"));
        response
            .headers_mut()
            .insert("cache-control", "max-age=30".parse().unwrap());
        response
    });
    let mut service = cached(&layer(), &calls, origin);
    get(&mut service, "/s", &[]).await;
    advance(Duration::from_secs(29)).await;
    assert_eq!(get(&mut service, "/s", &[]).await.1["x-cache"], "HIT");
    advance(Duration::from_secs(2)).await;
    let (_, headers, body) = get(&mut service, "/s", &[]).await;
    assert_eq!(
        (headers["x-cache"].to_str().unwrap(), body),
        ("MISS", Bytes::from_static(b"{\"n\":2}"))
    );
    let (_, headers, _) = get(&mut service, "/s", &[("cache-control", "no-cache")]).await;
    assert_eq!(headers["x-cache"], "MISS");
    assert_eq!(calls.load(SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_successful_write_invalidates_the_path() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer();
    let mut service = cached(
        &layer,
        &calls,
        Arc::new(|_, n| json(&format!("{{\"n\":{n}}}"))),
    );
    get(&mut service, "/sessions/1", &[]).await;
    get(&mut service, "/sessions/2", &[]).await;
    let delete = Request::delete("/sessions/1").body(()).unwrap();
    service.ready().await.unwrap().call(delete).await.unwrap();
    assert_eq!(
        get(&mut service, "/sessions/1", &[]).await.1["x-cache"],
        "MISS"
    );
    assert_eq!(
        get(&mut service, "/sessions/2", &[]).await.1["x-cache"],
        "HIT"
    );
    assert!(layer.stats().hits >= 1);
}

#[tokio::test(start_paused = true)]
async fn an_origin_5xx_is_answered_from_a_recently_expired_copy() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin: Origin = Arc::new(|_, n| {
        if n == 1 {
            let mut response = json("{\"good\":true}");
            response
                .headers_mut()
                .insert("cache-control", "max-age=10".parse().unwrap());
            response
        } else {
            Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    });
    let mut service = cached(&layer(), &calls, origin);
    get(&mut service, "/s", &[]).await;
    advance(Duration::from_secs(30)).await;
    let (status, headers, body) = get(&mut service, "/s", &[]).await;
    assert_eq!(
        (status, headers["x-cache"].to_str().unwrap()),
        (StatusCode::OK, "STALE")
    );
    assert_eq!(body, Bytes::from_static(b"{\"good\":true}"));
    // Past the stale-if-error window (60 s after expiry), the 503 comes through.
    advance(Duration::from_secs(60)).await;
    let (status, _, _) = get(&mut service, "/s", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(start_paused = true)]
async fn large_unknown_and_head_responses_are_handled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let config = ResponseCacheConfig {
        max_body_bytes: 16,
        capacity_bytes: 4096,
        ..ResponseCacheConfig::default()
    };
    let layer = ResponseCacheLayer::with_tokio_clock(config).unwrap();
    let origin: Origin = Arc::new(|request, _| {
        json(if request.uri().path() == "/big" {
            "{\"a\":\"0123456789abcdef\"}"
        } else {
            "{}"
        })
    });
    let mut service = cached(&layer, &calls, origin);
    get(&mut service, "/big", &[]).await;
    let (_, headers, _) = get(&mut service, "/big", &[]).await;
    assert_eq!(headers["x-cache"], "MISS", "over the size cap");
    assert!(headers.get("etag").is_none());

    get(&mut service, "/small", &[]).await;
    let head = Request::head("/small").body(()).unwrap();
    let response = service.ready().await.unwrap().call(head).await.unwrap();
    assert_eq!(response.headers()["x-cache"], "HIT");
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[test]
fn invalid_configuration_is_a_build_error() {
    let config = ResponseCacheConfig {
        capacity_bytes: 10,
        max_body_bytes: 100,
        ..ResponseCacheConfig::default()
    };
    assert_eq!(
        ResponseCacheLayer::new(config).unwrap_err().field(),
        "capacity_bytes"
    );
}

#[tokio::test(start_paused = true)]
async fn bypassed_requests_never_touch_the_cache() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer().bypass(|head| head.uri.path().starts_with("/live"));
    let mut service = cached(
        &layer,
        &calls,
        Arc::new(|_, n| json(&format!("{{\"n\":{n}}}"))),
    );
    for _ in 0..3 {
        let (_, headers, _) = get(&mut service, "/live/progress", &[]).await;
        assert!(
            headers.get("x-cache").is_none(),
            "not even a MISS: the cache was not consulted"
        );
    }
    get(&mut service, "/stored", &[]).await;
    assert_eq!(get(&mut service, "/stored", &[]).await.1["x-cache"], "HIT");
    assert_eq!(calls.load(SeqCst), 4);
    assert_eq!(layer.stats().entries, 1);
}
