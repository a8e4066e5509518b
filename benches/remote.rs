//! What the remote engine's client stack costs per request: `RemoteClient` (retry under a
//! budget, buffered p2c balancer on peak-EWMA load, concurrency limit, perf-breaker breaker,
//! timeout, over hyper-util's pooled client) against the same request made with a bare
//! hyper-util client, both to one loopback server that answers a fixed `verbose_json`.
//! Both build the multipart body of a one-second WAV, send it, read and parse the answer.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench remote`

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pocwhisp_server::config::{OpenAiEngineConfig, RemoteEndpoint};
use pocwhisp_server::engine::openai::{RemoteClient, wav_of};
use tokio::runtime::Runtime;

const ANSWER: &str = r#"{"task":"transcribe","language":"english","duration":1.0,"text":"hello there","segments":[{"id":0,"seek":0,"start":0.1,"end":0.9,"text":"hello there","tokens":[],"temperature":0.0,"avg_logprob":-0.3,"compression_ratio":1.1,"no_speech_prob":0.0}],"words":[{"word":"hello","start":0.1,"end":0.5},{"word":"there","start":0.5,"end":0.9}]}"#;

/// A loopback server answering every transcription with [`ANSWER`].
async fn server() -> String {
    let app = axum::Router::new().route(
        "/v1/audio/transcriptions",
        axum::routing::post(|body: Bytes| async move {
            black_box(body.len());
            ([("content-type", "application/json")], ANSWER)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// The multipart body the bare client sends: the same fields as the engine's.
fn multipart(wav: &[u8]) -> Bytes {
    let boundary = "bench-boundary";
    let mut body = Vec::with_capacity(wav.len() + 1024);
    for (name, value) in [
        ("model", "sphinx"),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(wav);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Bytes::from(body)
}

fn client_stack(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let url = runtime.block_on(server());
    let wav = wav_of(&vec![0i16; 16_000]);

    let config = OpenAiEngineConfig {
        endpoints: vec![RemoteEndpoint {
            url: url.clone(),
            api_key: None,
        }],
        model: "sphinx".to_owned(),
        ..OpenAiEngineConfig::default()
    };
    let ours = {
        let _guard = runtime.enter();
        RemoteClient::new(&config).unwrap()
    };
    let bare: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let endpoint = format!("{url}/v1/audio/transcriptions");

    let mut group = c.benchmark_group("remote/transcribe_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pocwhisp RemoteClient", |b| {
        b.iter(|| {
            let utterances = runtime.block_on(ours.transcribe(wav.clone())).unwrap();
            black_box(utterances.len())
        })
    });
    group.bench_function("bare hyper-util client", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = http::Request::post(&endpoint)
                    .header(
                        "content-type",
                        "multipart/form-data; boundary=bench-boundary",
                    )
                    .body(Full::new(multipart(&wav)))
                    .unwrap();
                let response = bare.request(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
                black_box(answer["segments"].as_array().map(Vec::len))
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(std::time::Duration::from_secs(3));
    targets = client_stack
}
criterion_main!(benches);
