//! Compression: round trips through real decoders, what is left alone, and streaming.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::codecs::{BrotliDecoder, Decode, DeflateDecoder, GzipDecoder, ZstdDecoder};
use async_compression::core::util::PartialBuffer;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use perf_middleware::compression::{CompressionConfig, CompressionLayer};
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn transcript_json() -> String {
    let segment = r#"{"speaker":"left","start_time":1.25,"end_time":3.5,"text":"the quick brown fox","confidence":0.93}"#;
    format!(r#"{{"segments":[{}]}}"#, vec![segment; 200].join(","))
}

/// Decodes a whole stream with one of async-compression's decoders.
fn decode(mut decoder: impl Decode, input: &[u8]) -> Vec<u8> {
    let mut input = PartialBuffer::new(input);
    let mut output = vec![0; 1 << 20];
    let mut out = PartialBuffer::new(&mut output[..]);
    while !input.unwritten().is_empty() {
        if decoder.decode(&mut input, &mut out).unwrap() {
            break;
        }
    }
    while !decoder.finish(&mut out).unwrap() {}
    let written = out.written_len();
    output.truncate(written);
    output
}

fn decoded(encoding: &str, input: &[u8]) -> Vec<u8> {
    match encoding {
        "gzip" => decode(GzipDecoder::new(), input),
        "deflate" => decode(DeflateDecoder::new(), input),
        "br" => decode(BrotliDecoder::new(), input),
        "zstd" => decode(ZstdDecoder::new(), input),
        other => panic!("unexpected coding {other}"),
    }
}

async fn send<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

fn responder(
    content_type: &'static str,
    body: String,
    extra: &'static [(&'static str, &'static str)],
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    service_fn(move |_: Request<()>| {
        let mut response = Response::builder()
            .header("content-type", content_type)
            .header("content-length", body.len());
        for (name, value) in extra {
            response = response.header(*name, *value);
        }
        std::future::ready(Ok(response
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap()))
    })
}

fn accepting(codings: &str) -> Request<()> {
    Request::get("/")
        .header("accept-encoding", codings)
        .body(())
        .unwrap()
}

#[tokio::test]
async fn every_coding_round_trips_and_shrinks_json() {
    let json = transcript_json();
    let mut service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(responder("application/json", json.clone(), &[]));
    for coding in ["gzip", "deflate", "br", "zstd"] {
        let response = send(&mut service, accepting(coding)).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], coding);
        assert!(response.headers().get("content-length").is_none());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            body.len() * 10 < json.len(),
            "{coding}: {} of {}",
            body.len(),
            json.len()
        );
        assert_eq!(decoded(coding, &body), json.as_bytes(), "{coding}");
    }
}

/// A response the layer must leave as it is.
struct PassThrough {
    content_type: &'static str,
    body: String,
    extra: &'static [(&'static str, &'static str)],
}

#[tokio::test]
async fn small_binary_encoded_and_no_transform_responses_are_left_alone() {
    let json = transcript_json();
    let cases = [
        // Too small to compress: the same bytes whatever the client accepts, so no Vary.
        PassThrough {
            content_type: "application/json",
            body: "{}".to_owned(),
            extra: &[],
        },
        PassThrough {
            content_type: "audio/wav",
            body: json.clone(),
            extra: &[],
        },
        PassThrough {
            content_type: "application/json",
            body: json.clone(),
            extra: &[("content-encoding", "gzip")],
        },
        PassThrough {
            content_type: "application/json",
            body: json.clone(),
            extra: &[("cache-control", "public, no-transform")],
        },
    ];
    for case in cases {
        let mut service = ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .service(responder(case.content_type, case.body.clone(), case.extra));
        let response = send(&mut service, accepting("gzip, br")).await.unwrap();
        let label = format!("{} {:?}", case.content_type, case.extra);
        assert!(response.headers().get("vary").is_none(), "{label}");
        let encoding = response.headers().get("content-encoding").cloned();
        let upstream_encoding = case
            .extra
            .iter()
            .find(|(name, _)| *name == "content-encoding");
        assert_eq!(encoding.is_some(), upstream_encoding.is_some(), "{label}");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, case.body.as_bytes(), "{label} must pass through");
    }
}

#[tokio::test]
async fn an_identity_answer_to_a_compressible_response_still_varies() {
    let mut service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(responder(
            "application/json",
            transcript_json(),
            &[("vary", "Origin")],
        ));
    let response = send(&mut service, accepting("identity")).await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["Origin", "accept-encoding"]);
}

#[tokio::test]
async fn head_requests_and_absurd_accept_encoding_get_identity() {
    let json = transcript_json();
    let mut service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(responder("application/json", json.clone(), &[]));
    let head = Request::builder()
        .method(Method::HEAD)
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    let response = send(&mut service, head).await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    for absurd in [
        "gzip;q=7",
        "br;q=-1",
        &"x;q=0.5, ".repeat(5_000),
        "\u{7f}gzip",
    ] {
        let Ok(value) = http::HeaderValue::from_str(absurd) else {
            continue;
        };
        let request = Request::get("/")
            .header("accept-encoding", value)
            .body(())
            .unwrap();
        let response = send(&mut service, request).await.unwrap();
        assert!(
            response.headers().get("content-encoding").is_none(),
            "{absurd:.40}"
        );
        assert_eq!(
            response.headers()["content-length"],
            json.len().to_string().as_str()
        );
    }
}

#[tokio::test]
async fn only_enabled_codings_are_offered() {
    let config = CompressionConfig {
        br: false,
        zstd: false,
        ..CompressionConfig::default()
    };
    let mut service = ServiceBuilder::new()
        .layer(CompressionLayer::from_config(config).unwrap())
        .service(responder("text/html", transcript_json(), &[]));
    let response = send(&mut service, accepting("br, zstd, gzip;q=0.1"))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
}

/// A body fed from a channel: data frames as they are sent, then trailers if any.
struct Channel {
    data: mpsc::Receiver<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.data.poll_recv(cx) {
            Poll::Ready(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(None) => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[tokio::test]
async fn an_event_stream_is_sent_event_by_event_and_trailers_survive() {
    let (events, receiver) = mpsc::channel::<Bytes>(4);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let body = std::sync::Mutex::new(Some(Channel {
        data: receiver,
        trailers: Some(trailers),
    }));
    let mut service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service(service_fn(move |_: Request<()>| {
            let body = body.lock().unwrap().take().expect("one request");
            std::future::ready(Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(body)
                    .unwrap(),
            ))
        }));
    let response = send(&mut service, accepting("gzip")).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();

    // The first event comes out compressed before the second one exists.
    events
        .send(Bytes::from_static(b"data: segment 1\n\n"))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let mut stream = first.to_vec();
    assert!(String::from_utf8_lossy(&partial_gunzip(&stream)).contains("segment 1"));

    events
        .send(Bytes::from_static(b"data: segment 2\n\n"))
        .await
        .unwrap();
    drop(events);
    let mut received_trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        match frame.into_data() {
            Ok(data) => stream.extend_from_slice(&data),
            Err(frame) => received_trailers = frame.into_trailers().ok(),
        }
    }
    assert_eq!(
        decoded("gzip", &stream),
        b"data: segment 1\n\ndata: segment 2\n\n"
    );
    assert_eq!(received_trailers.unwrap()["x-checksum"], "abc");
}

/// Decodes as much of an unfinished gzip stream as has been flushed.
fn partial_gunzip(input: &[u8]) -> Vec<u8> {
    let mut decoder = GzipDecoder::new();
    let mut input = PartialBuffer::new(input);
    let mut output = vec![0; 4096];
    let mut out = PartialBuffer::new(&mut output[..]);
    let result: io::Result<bool> = decoder.decode(&mut input, &mut out);
    result.unwrap();
    let written = out.written_len();
    output.truncate(written);
    output
}
