//! The response-cache layer: what is stored, how variants are told apart, validators,
//! lifetimes (on tokio's paused clock), invalidation and stale answers.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use perf_cache::response::{ResponseCacheBuilder, ResponseCacheConfig, ResponseCacheLayer};
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
    builder().build().unwrap()
}

fn builder() -> ResponseCacheBuilder {
    ResponseCacheLayer::builder().tokio_clock()
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
async fn every_lookup_counts_as_a_hit_or_a_miss() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer();
    let mut service = cached(&layer, &calls, echo_user(None));
    // A path never seen: a miss, though nothing was there to look at.
    get(&mut service, "/page", &[]).await;
    assert_eq!((layer.stats().hits, layer.stats().misses), (0, 1));
    get(&mut service, "/page", &[]).await;
    assert_eq!((layer.stats().hits, layer.stats().misses), (1, 1));
    // A stored entry this request may not be served (it has credentials): a miss.
    get(&mut service, "/page", &[("authorization", "Bearer bob")]).await;
    let stats = layer.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
    assert!((stats.hit_rate - 1.0 / 3.0).abs() < 1e-9);
    // A request that asks not to be answered from the cache is no lookup at all.
    get(&mut service, "/page", &[("cache-control", "no-cache")]).await;
    assert_eq!(layer.stats().misses, 2);
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
    let layer = builder()
        .key_fn(|head| {
            head.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed)
        })
        .build()
        .unwrap();
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
    let layer = ResponseCacheBuilder::from_config(config)
        .tokio_clock()
        .build()
        .unwrap();
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
    let layer = builder()
        .bypass(|head| head.uri.path().starts_with("/live"))
        .build()
        .unwrap();
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

/// An origin that answers each caller with its own `Authorization`, so a leak shows.
fn echo_user(cache_control: Option<&'static str>) -> Origin {
    Arc::new(move |request, _| {
        let user = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut response = json(&format!("{{\"user\":\"{user}\"}}"));
        if let Some(value) = cache_control {
            response
                .headers_mut()
                .insert("cache-control", value.parse().unwrap());
        }
        response
    })
}

#[tokio::test(start_paused = true)]
async fn answers_to_credentials_stay_out_of_shared_entries() {
    for cookie_or_token in [("authorization", "Bearer alice"), ("cookie", "sid=alice")] {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = cached(&layer(), &calls, echo_user(None));
        let (_, first, _) = get(&mut service, "/me", &[cookie_or_token]).await;
        assert_eq!(first["x-cache"], "MISS");
        // Nobody, not even the same caller, is answered from a shared entry with it.
        let (_, anonymous, body) = get(&mut service, "/me", &[]).await;
        assert_eq!(anonymous["x-cache"], "MISS", "{cookie_or_token:?}");
        assert!(!String::from_utf8_lossy(&body).contains("alice"));
        let (_, again, _) = get(&mut service, "/me", &[cookie_or_token]).await;
        assert_eq!(again["x-cache"], "MISS", "{cookie_or_token:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_credentialed_request_is_not_answered_from_an_anonymous_entry_unless_public() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = cached(&layer(), &calls, echo_user(None));
    get(&mut service, "/page", &[]).await;
    assert_eq!(get(&mut service, "/page", &[]).await.1["x-cache"], "HIT");
    let (_, with_token, _) = get(&mut service, "/page", &[("authorization", "Bearer bob")]).await;
    assert_eq!(with_token["x-cache"], "MISS");

    let mut public = cached(&layer(), &calls, echo_user(Some("public, max-age=60")));
    get(&mut public, "/doc", &[("authorization", "Bearer bob")]).await;
    let (_, hit, _) = get(&mut public, "/doc", &[("authorization", "Bearer carol")]).await;
    assert_eq!(hit["x-cache"], "HIT", "the origin allowed it with public");
}

#[tokio::test(start_paused = true)]
async fn a_request_the_key_function_does_not_key_uses_shared_rules() {
    let calls = Arc::new(AtomicUsize::new(0));
    // Keys only requests with `x-user`; others fall back to the shared entries.
    let layer = builder()
        .key_fn(|head| {
            head.headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed)
        })
        .build()
        .unwrap();
    let mut service = cached(&layer, &calls, echo_user(Some("private, max-age=60")));
    get(&mut service, "/me", &[("authorization", "Bearer alice")]).await;
    let (_, headers, body) = get(&mut service, "/me", &[]).await;
    assert_eq!(headers["x-cache"], "MISS", "a private answer was shared");
    assert!(!String::from_utf8_lossy(&body).contains("alice"));
    get(&mut service, "/me", &[("x-user", "u1")]).await;
    assert_eq!(
        get(&mut service, "/me", &[("x-user", "u1")]).await.1["x-cache"],
        "HIT",
        "keyed requests keep their private entries"
    );
}

#[tokio::test(start_paused = true)]
async fn virtual_hosts_do_not_share_entries() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin: Origin = Arc::new(|request, _| {
        json(&format!(
            "{{\"host\":\"{}\"}}",
            request.headers()["host"].to_str().unwrap()
        ))
    });
    let mut service = cached(&layer(), &calls, origin);
    get(&mut service, "/", &[("host", "a.example")]).await;
    let (_, headers, body) = get(&mut service, "/", &[("host", "b.example")]).await;
    assert_eq!(headers["x-cache"], "MISS");
    assert_eq!(body, "{\"host\":\"b.example\"}");
    assert_eq!(
        get(&mut service, "/", &[("host", "a.example")]).await.1["x-cache"],
        "HIT"
    );
}

#[tokio::test(start_paused = true)]
async fn only_a_stored_success_becomes_not_modified() {
    let calls = Arc::new(AtomicUsize::new(0));
    let origin: Origin = Arc::new(|_, _| {
        let mut response = json("{\"error\":\"not_found\"}");
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
            .headers_mut()
            .insert("etag", "\"gone\"".parse().unwrap());
        response
    });
    let mut service = cached(&layer(), &calls, origin);
    for _ in 0..2 {
        let (status, _, _) = get(&mut service, "/missing", &[("if-none-match", "*")]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(&mut service, "/missing", &[("if-none-match", "\"gone\"")]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(calls.load(SeqCst), 1, "the 404 was stored and hit");
}
