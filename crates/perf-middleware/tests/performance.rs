//! The whole stack from configuration.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use perf_middleware::performance::{PerformanceConfig, PerformanceLayer};
use perf_middleware::rate_limit::RateLimitConfig;
use perf_middleware::rate_limit::RateLimitKey;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

fn transcript() -> String {
    format!(
        "[{}]",
        vec![r#"{"speaker":"right","text":"thanks for calling"}"#; 100].join(",")
    )
}

/// The application: reads the (limited) body, answers JSON.
fn app()
-> impl Service<Request<Limited<Full<Bytes>>>, Response = Response<Full<Bytes>>, Error = Infallible>
+ Clone {
    service_fn(|request: Request<Limited<Full<Bytes>>>| async move {
        let status = match request.into_body().collect().await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        Ok::<_, Infallible>(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("server", "app/1.0")
                .body(Full::new(Bytes::from(transcript())))
                .unwrap(),
        )
    })
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::get("/api/v1/transcribe")
        .header("authorization", format!("Bearer {token}"))
        .header("accept-encoding", "gzip")
        .header("x-trace", "true")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn config(per_second: u32, burst: u32) -> PerformanceConfig {
    PerformanceConfig {
        rate_limit: Some(RateLimitConfig {
            requests_per_second: per_second,
            burst,
            ..RateLimitConfig::default()
        }),
        max_body_bytes: 1024,
        server_timing_for_all: true,
        ..PerformanceConfig::default()
    }
}

#[tokio::test]
async fn a_served_request_gets_every_layer() {
    let mut service = PerformanceLayer::new(&config(100, 200))
        .unwrap()
        .layer(app());
    let response = send(&mut service, request("a")).await.unwrap();
    let headers = response.headers();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(headers["x-request-id"].len(), 32);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.get("server").is_none());
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["ratelimit-limit"], "200");
    assert_eq!(headers["ratelimit-remaining"], "199");
    assert!(
        headers["server-timing"]
            .to_str()
            .unwrap()
            .starts_with("total;dur=")
    );
}

#[tokio::test]
async fn refusals_still_carry_the_outer_layers() {
    let mut service = PerformanceLayer::new(&config(1, 1)).unwrap().layer(app());
    send(&mut service, request("a")).await.unwrap();
    let limited = send(&mut service, request("a")).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["x-request-id"].len(), 32);
    assert_eq!(limited.headers()["x-frame-options"], "DENY");
    assert_eq!(limited.headers()["retry-after"], "1");

    let mut big = Request::post("/api/v1/transcribe")
        .header("content-length", "4096")
        .body(Full::new(Bytes::from(vec![0; 4096])))
        .unwrap();
    // Another client, with a bucket of its own.
    big.extensions_mut()
        .insert(perf_middleware::rate_limit::PeerAddr(
            "198.51.100.2:1".parse().unwrap(),
        ));
    let too_large = send(&mut service, big).await.unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.headers()["x-request-id"].len(), 32);
}

#[tokio::test]
async fn layers_can_be_turned_off_and_health_is_never_shed() {
    let config = PerformanceConfig {
        rate_limit: None,
        security_headers: false,
        timeout: None,
        load_shed: Some(perf_middleware::load_shed::LoadShedConfig {
            max_in_flight: 1,
            ..Default::default()
        }),
        ..PerformanceConfig::default()
    };
    let layer = PerformanceLayer::new(&config).unwrap();
    let shedder = layer.load_shedder().unwrap().clone();
    let mut service = layer.layer(app());
    let _busy = shedder.try_acquire(Default::default()).unwrap();
    let shed = send(&mut service, request("a")).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(shed.headers().get("ratelimit-limit").is_none());
    assert!(shed.headers().get("x-content-type-options").is_none());
    let health = Request::get("/api/v1/health")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send(&mut service, health).await.unwrap().status(),
        StatusCode::OK
    );
}

#[test]
fn invalid_configuration_is_a_build_error() {
    let mut zero_rate = config(1, 1);
    zero_rate.rate_limit.as_mut().unwrap().requests_per_second = 0;
    assert_eq!(
        PerformanceLayer::new(&zero_rate).unwrap_err().field(),
        "rate_limit.requests_per_second"
    );
    let mut bad_header = config(1, 1);
    bad_header.rate_limit.as_mut().unwrap().key = RateLimitKey::Header("bad header".into());
    assert_eq!(
        PerformanceLayer::new(&bad_header).unwrap_err().field(),
        "rate_limit.key.header"
    );
    let zero_timeout = PerformanceConfig {
        timeout: Some(Duration::ZERO),
        ..PerformanceConfig::default()
    };
    assert_eq!(
        PerformanceLayer::new(&zero_timeout).unwrap_err().field(),
        "timeout"
    );
    let bad_prefix = PerformanceConfig {
        metrics_prefix: "has space".into(),
        ..PerformanceConfig::default()
    };
    assert_eq!(
        PerformanceLayer::new(&bad_prefix).unwrap_err().field(),
        "prefix"
    );
}

#[cfg(feature = "serde")]
#[test]
fn configuration_reads_from_a_file_format() {
    let config: PerformanceConfig = serde_json::from_str(
        r#"{
            "timeout": "5s",
            "rate_limit": {"requests_per_second": 50, "key": {"peer_ip": {"trusted_proxies": ["10.0.0.0/8"]}}},
            "load_shed": {
                "max_in_flight": 64,
                "adaptive": {"initial_limit": 32, "decrease_interval": "100ms"},
                "queue": {"size": 8, "timeout": "250ms"}
            },
            "compression": {"br": false, "min_size": 2048}
        }"#,
    )
    .unwrap();
    assert_eq!(config.timeout, Some(Duration::from_secs(5)));
    let limit = config.rate_limit.as_ref().unwrap();
    assert_eq!((limit.requests_per_second, limit.burst), (50, 200));
    assert_eq!(
        limit.key,
        RateLimitKey::PeerIp {
            trusted_proxies: vec!["10.0.0.0/8".into()]
        }
    );
    let shed = config.load_shed.as_ref().unwrap();
    assert_eq!(shed.queue.unwrap().timeout, Duration::from_millis(250));
    let adaptive = shed.adaptive.unwrap();
    assert_eq!(adaptive.decrease_interval, Duration::from_millis(100));
    assert_eq!(adaptive.max_limit, 1000);
    assert!(!config.compression.br);
    PerformanceLayer::new(&config).unwrap();

    let typo = serde_json::from_str::<PerformanceConfig>(r#"{"time_out": "5s"}"#).unwrap_err();
    assert!(typo.to_string().contains("time_out"), "{typo}");
}

#[tokio::test]
async fn timings_go_only_where_the_policy_allows() {
    let config = PerformanceConfig {
        rate_limit: None,
        ..PerformanceConfig::default()
    };
    let mut closed = PerformanceLayer::new(&config).unwrap().layer(app());
    let response = send(&mut closed, request("a")).await.unwrap();
    assert!(response.headers().get("server-timing").is_none());

    let mut admins_only = PerformanceLayer::new(&config)
        .unwrap()
        .expose_timings_when(|head| {
            head.headers
                .get("authorization")
                .is_some_and(|value| value == "Bearer admin")
        })
        .layer(app());
    let stranger = send(&mut admins_only, request("a")).await.unwrap();
    assert!(stranger.headers().get("server-timing").is_none());
    let admin = send(&mut admins_only, request("admin")).await.unwrap();
    assert!(admin.headers().contains_key("server-timing"));
}

#[tokio::test]
async fn made_up_tokens_share_their_address_bucket_and_identities_get_their_own() {
    use perf_middleware::rate_limit::{Identity, PeerAddr};
    let mut service = PerformanceLayer::new(&config(1, 2)).unwrap().layer(app());
    let from = |token: &str, identity: Option<&str>| {
        let mut request = request(token);
        request
            .extensions_mut()
            .insert(PeerAddr("198.51.100.7:4000".parse().unwrap()));
        if let Some(identity) = identity {
            request
                .extensions_mut()
                .insert(Identity(std::sync::Arc::from(identity)));
        }
        request
    };
    // Three made-up tokens from one address: one bucket of two.
    let mut statuses = Vec::new();
    for token in ["x1", "x2", "x3"] {
        statuses.push(
            send(&mut service, from(token, None))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A verified identity from the same address has a bucket of its own.
    let alice = send(&mut service, from("real", Some("user:alice")))
        .await
        .unwrap();
    assert_eq!(alice.status(), StatusCode::OK);
}
