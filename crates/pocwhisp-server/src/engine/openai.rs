//! The remote engine: OpenAI-compatible servers (whisper.cpp's server, faster-whisper
//! servers, vLLM, another PocWhisp) called over HTTP through tower and perf-breaker.
//!
//! The client stack, per request: a retry (perf-breaker's [`Retry`] waits, under tower's
//! retry budget, only for errors worth another try) around a buffered p2c balancer (tower's
//! `Balance`, each server's load its peak-EWMA latency); each server is its own stack of a
//! concurrency limit, its circuit breaker and a timeout. A server whose breaker is open says
//! "not ready", so the balancer sends work to the others, and probes it again when the open
//! period ends: traffic returns to a server that came back by itself.
//!
//! Each channel is sent as its own 16 kHz mono WAV with `response_format=verbose_json` and
//! word timestamps; the answer's words (or, from a server that gives none, its segments'
//! words spread over the segment) become the engine's utterances, one per segment.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use perf_breaker::retry::Retry;
use perf_breaker::{CircuitBreaker, OwnedPermit, State};
use perf_pool::task::CancelToken;
use serde::Deserialize;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::limit::ConcurrencyLimit;
use tower::load::{CompleteOnResponse, PeakEwmaDiscover};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{BoxError, Service, ServiceExt};

use super::{EngineError, EngineStatus, Transcriber, Utterance, Word};
use crate::config::{OpenAiEngineConfig, Secret, redacted_url};

/// What one request asks: a channel as WAV.
#[derive(Debug, Clone)]
pub struct RemoteRequest {
    /// 16 kHz mono 16-bit WAV.
    pub wav: Bytes,
}

/// Why a remote call failed.
#[derive(Debug)]
pub enum RemoteError {
    /// Worth another try, on this server or another: no connection, a timeout, 429, 5xx,
    /// an open breaker.
    Transient(String),
    /// Not worth another try: the server refused the request (4xx) or answered nonsense.
    Refused(String),
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Transient(reason) | RemoteError::Refused(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for RemoteError {}

/// Answers larger than this are refused (a transcript is kilobytes).
const MAX_ANSWER: usize = 16 << 20;

/// After a failure worth a retry, a server sits out this long: a dead server fails fast, and
/// the balancer, which prefers the fastest, would otherwise send the retry straight back.
const COOL_DOWN: Duration = Duration::from_secs(2);

/// One server: its URL, key, breaker and a shared HTTP client. Ready only while its breaker
/// admits a call (the permit taken in `poll_ready` is the one `call` uses) and it is not
/// cooling down from a failure.
struct Endpoint {
    url: Arc<str>,
    /// The URL as messages, health and metric labels show it (no password or secret
    /// parameter).
    shown: Arc<str>,
    api_key: Option<Secret>,
    model: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
    breaker: CircuitBreaker,
    timeout: Duration,
    permit: Option<OwnedPermit>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// What its last call found, shared with the client for health.
    last: Arc<std::sync::Mutex<LastCall>>,
}

/// A server's last call: if it failed, why, and until when the server sits out.
#[derive(Debug, Default)]
struct LastCall {
    failure: Option<String>,
    cool_until: Option<tokio::time::Instant>,
}

impl Service<RemoteRequest> for Endpoint {
    type Response = Vec<Utterance>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Vec<Utterance>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            if self.permit.is_some() {
                return Poll::Ready(Ok(()));
            }
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
            }
            let cooling = perf_core::sync::lock(&self.last).cool_until.take();
            if let Some(until) = cooling
                && until > tokio::time::Instant::now()
            {
                self.wait = Some(Box::pin(tokio::time::sleep_until(until)));
                continue;
            }
            match self.breaker.try_acquire_owned() {
                Ok(permit) => self.permit = Some(permit),
                // Not ready until the open period ends; then a probe.
                Err(open) => {
                    let until = open.retry_after().max(Duration::from_millis(10));
                    self.wait = Some(Box::pin(tokio::time::sleep(until)));
                }
            }
        }
    }

    fn call(&mut self, request: RemoteRequest) -> Self::Future {
        let permit = self.permit.take().expect("poll_ready admitted the call");
        let call = post(
            self.client.clone(),
            Arc::clone(&self.url),
            Arc::clone(&self.shown),
            self.api_key.clone(),
            Arc::clone(&self.model),
            request.wav,
        );
        let timeout = self.timeout;
        let url = Arc::clone(&self.shown);
        let last = Arc::clone(&self.last);
        Box::pin(async move {
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(RemoteError::Transient(format!(
                    "{url} did not answer within {timeout:?}"
                ))),
            };
            let failed = matches!(result, Err(RemoteError::Transient(_)));
            {
                let mut last = perf_core::sync::lock(&last);
                match &result {
                    Err(RemoteError::Transient(reason)) => {
                        last.failure = Some(reason.clone());
                        last.cool_until = Some(tokio::time::Instant::now() + COOL_DOWN);
                    }
                    _ => *last = LastCall::default(),
                }
            }
            permit.record(failed);
            result.map_err(BoxError::from)
        })
    }
}

/// The multipart body of a transcription request.
fn multipart(boundary: &str, model: &str, wav: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(wav.len() + 1024);
    for (name, value) in [
        ("model", model),
        ("response_format", "verbose_json"),
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
    ] {
        body.put_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.put_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"channel.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.put_slice(wav);
    body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body.freeze()
}

/// OpenAI's `verbose_json`, the parts used.
#[derive(Debug, Deserialize)]
struct Verbose {
    #[serde(default)]
    segments: Vec<VerboseSegment>,
    #[serde(default)]
    words: Vec<VerboseWord>,
}

#[derive(Debug, Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    avg_logprob: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct VerboseWord {
    word: String,
    start: f64,
    end: f64,
}

/// Posts `wav` to the server at `url` (named `shown` in errors).
async fn post(
    client: Client<HttpConnector, Full<Bytes>>,
    url: Arc<str>,
    shown: Arc<str>,
    api_key: Option<Secret>,
    model: Arc<str>,
    wav: Bytes,
) -> Result<Vec<Utterance>, RemoteError> {
    let boundary = format!("pocwhisp-{:016x}", fastrand_boundary());
    let mut request = Request::post(format!(
        "{}/v1/audio/transcriptions",
        url.trim_end_matches('/')
    ))
    .header(
        CONTENT_TYPE,
        format!("multipart/form-data; boundary={boundary}"),
    );
    if let Some(key) = &api_key {
        request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose()));
    }
    let request = request
        .body(Full::new(multipart(&boundary, &model, &wav)))
        .map_err(|error| RemoteError::Refused(error.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|error| RemoteError::Transient(format!("cannot reach {shown}: {error}")))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|error| RemoteError::Transient(format!("{shown} broke off its answer: {error}")))?
        .to_bytes();
    if !status.is_success() {
        let excerpt = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let reason = format!("{shown} answered {status}: {excerpt}");
        return Err(
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                RemoteError::Transient(reason)
            } else {
                RemoteError::Refused(reason)
            },
        );
    }
    let verbose: Verbose = serde_json::from_slice(&body).map_err(|error| {
        RemoteError::Refused(format!("{shown} answered no verbose_json: {error}"))
    })?;
    Ok(utterances_of(verbose))
}

/// A boundary no WAV is likely to contain.
fn fastrand_boundary() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    nanos.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
}

/// One utterance per remote segment, with the answer's words that fall in it, or the
/// segment's own words spread evenly over it when the server gave no word times.
fn utterances_of(verbose: Verbose) -> Vec<Utterance> {
    verbose
        .segments
        .iter()
        .map(|segment| {
            let confidence = segment.avg_logprob.map_or(1.0, f64::exp).clamp(0.0, 1.0);
            let timed: Vec<Word> = verbose
                .words
                .iter()
                .filter(|word| word.start >= segment.start - 0.01 && word.end <= segment.end + 0.01)
                .map(|word| Word {
                    text: word.word.trim().to_owned(),
                    start: word.start,
                    end: word.end,
                    confidence,
                })
                .collect();
            let words = if timed.is_empty() {
                let spoken: Vec<&str> = segment.text.split_whitespace().collect();
                let step = (segment.end - segment.start) / spoken.len().max(1) as f64;
                spoken
                    .iter()
                    .enumerate()
                    .map(|(index, text)| Word {
                        text: (*text).to_owned(),
                        start: segment.start + step * index as f64,
                        end: segment.start + step * (index + 1) as f64,
                        confidence,
                    })
                    .collect()
            } else {
                timed
            };
            Utterance {
                words,
                scores: None,
            }
        })
        .collect()
}

/// 16 kHz mono 16-bit PCM as a WAV file.
pub fn wav_of(samples: &[i16]) -> Bytes {
    let data = samples.len() * 2;
    let mut wav = BytesMut::with_capacity(44 + data);
    wav.put_slice(b"RIFF");
    wav.put_u32_le((36 + data) as u32);
    wav.put_slice(b"WAVEfmt ");
    wav.put_u32_le(16);
    wav.put_u16_le(1);
    wav.put_u16_le(1);
    wav.put_u32_le(16_000);
    wav.put_u32_le(32_000);
    wav.put_u16_le(2);
    wav.put_u16_le(16);
    wav.put_slice(b"data");
    wav.put_u32_le(data as u32);
    for sample in samples {
        wav.put_i16_le(*sample);
    }
    wav.freeze()
}

type Balanced =
    Buffer<RemoteRequest, <Balance<Discovered, RemoteRequest> as Service<RemoteRequest>>::Future>;
type Discovered = PeakEwmaDiscover<ServiceList<Vec<ConcurrencyLimit<Endpoint>>>>;

/// What the client knows of one server.
struct Server {
    /// Its URL as it may be shown.
    shown: Arc<str>,
    breaker: CircuitBreaker,
    last: Arc<std::sync::Mutex<LastCall>>,
}

/// The client stack of the remote engine, usable on its own (the bench drives it).
#[derive(Clone)]
pub struct RemoteClient {
    balanced: Balanced,
    breakers: Arc<[Server]>,
    retry: Retry,
    budget: Arc<TpsBudget>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("servers", &self.breakers.len())
            .finish_non_exhaustive()
    }
}

impl RemoteClient {
    /// The stack for `config`'s servers, on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] for a breaker setting that is invalid.
    pub fn new(config: &OpenAiEngineConfig) -> Result<Self, EngineError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let model: Arc<str> = Arc::from(config.model.as_str());
        let mut breakers = Vec::new();
        let mut endpoints = Vec::new();
        for endpoint in &config.endpoints {
            let url: Arc<str> = Arc::from(endpoint.url.trim_end_matches('/'));
            let shown: Arc<str> = Arc::from(redacted_url(&url));
            let mut breaker_config = config.breaker.clone();
            breaker_config.name = format!("{}:{shown}", config.breaker.name);
            let breaker = CircuitBreaker::new(breaker_config).map_err(|error| {
                EngineError::Unavailable(format!("engine.openai.breaker: {error}"))
            })?;
            let last: Arc<std::sync::Mutex<LastCall>> = Arc::default();
            breakers.push(Server {
                shown: Arc::clone(&shown),
                breaker: breaker.clone(),
                last: Arc::clone(&last),
            });
            endpoints.push(ConcurrencyLimit::new(
                Endpoint {
                    url,
                    shown,
                    api_key: endpoint.api_key.clone(),
                    model: Arc::clone(&model),
                    client: client.clone(),
                    breaker,
                    timeout: config.timeout,
                    permit: None,
                    wait: None,
                    last: Arc::clone(&last),
                },
                config.max_concurrent,
            ));
        }
        let discover = PeakEwmaDiscover::new(
            ServiceList::new(endpoints),
            Duration::from_millis(500),
            Duration::from_secs(10),
            CompleteOnResponse::default(),
        );
        let balanced = Buffer::new(Balance::new(discover), 1024);
        Ok(RemoteClient {
            balanced,
            breakers: breakers.into(),
            retry: config.retry,
            budget: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                1,
                config.retry_budget,
            )),
        })
    }

    /// How long until a server may be tried again, when every breaker is open.
    pub fn unavailable_for(&self) -> Option<Duration> {
        let mut soonest: Option<Duration> = None;
        for Server { breaker, .. } in self.breakers.iter() {
            if !matches!(breaker.state(), State::Open | State::ForcedOpen) {
                return None;
            }
            // Open: its open period may have ended (then it admits a probe; the permit,
            // dropped unrecorded, counts as cancelled and gives the slot back).
            match breaker.try_acquire() {
                Ok(_) => return None,
                Err(open) => {
                    let wait = open.retry_after();
                    soonest = Some(soonest.map_or(wait, |soonest| soonest.min(wait)));
                }
            }
        }
        soonest
    }

    /// Each server (its URL as it may be shown), its breaker's state, and why its last call
    /// failed if it did.
    pub fn servers(&self) -> Vec<(String, State, Option<String>)> {
        self.breakers
            .iter()
            .map(|server| {
                (
                    server.shown.to_string(),
                    server.breaker.state(),
                    perf_core::sync::lock(&server.last).failure.clone(),
                )
            })
            .collect()
    }

    /// Transcribes one channel (16 kHz mono WAV) on whichever server the balancer picks,
    /// retrying what is worth it while the budget allows.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    pub async fn transcribe(&self, wav: Bytes) -> Result<Vec<Utterance>, RemoteError> {
        self.budget.deposit();
        let request = RemoteRequest { wav };
        self.retry
            .run(
                |attempt| {
                    let request = request.clone();
                    let balanced = self.balanced.clone();
                    async move {
                        if attempt > 1 && !self.budget.withdraw() {
                            return Err(RemoteError::Refused(
                                "the retry budget is spent: the servers are failing".to_owned(),
                            ));
                        }
                        if let Some(wait) = self.unavailable_for() {
                            return Err(RemoteError::Transient(format!(
                                "every server is failing; the first is tried again in {} s",
                                wait.as_secs().max(1)
                            )));
                        }
                        balanced.oneshot(request).await.map_err(|error| {
                            match error.downcast::<RemoteError>() {
                                Ok(error) => *error,
                                Err(other) => RemoteError::Transient(other.to_string()),
                            }
                        })
                    }
                },
                |error| matches!(error, RemoteError::Transient(_)),
            )
            .await
    }
}

/// The remote engine.
pub struct OpenAiEngine {
    client: RemoteClient,
    model: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for OpenAiEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEngine")
            .field("model", &self.model)
            .field("client", &self.client)
            .finish()
    }
}

impl OpenAiEngine {
    /// The engine for `config`, calling from the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`EngineError::Unavailable`] without servers or outside a runtime.
    pub fn new(config: &OpenAiEngineConfig) -> Result<Self, EngineError> {
        if config.endpoints.is_empty() {
            return Err(EngineError::Unavailable(
                "engine.openai.endpoints lists no server".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|error| EngineError::Unavailable(error.to_string()))?;
        let _guard = runtime.enter();
        Ok(OpenAiEngine {
            client: RemoteClient::new(config)?,
            model: config.model.clone(),
            runtime,
        })
    }
}

impl Transcriber for OpenAiEngine {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn models(&self) -> Vec<String> {
        vec![self.model.clone()]
    }

    fn understands(&self, _language: &str) -> bool {
        true
    }

    fn unavailable_for(&self) -> Option<Duration> {
        self.client.unavailable_for()
    }

    fn status(&self) -> EngineStatus {
        let servers = self.client.servers();
        // Failing: its breaker is open, or its last call failed.
        let failing: Vec<String> = servers
            .iter()
            .filter_map(|(url, state, failure)| {
                if matches!(state, State::Open | State::ForcedOpen) {
                    Some(format!("{url} (circuit open)"))
                } else {
                    failure.as_ref().map(|reason| format!("{url} ({reason})"))
                }
            })
            .collect();
        let status = if failing.is_empty() {
            "ok"
        } else if failing.len() == servers.len() {
            "down"
        } else {
            "degraded"
        };
        let detail = if failing.is_empty() {
            format!("{} servers answering", servers.len())
        } else {
            format!("failing: {}", failing.join("; "))
        };
        EngineStatus { status, detail }
    }

    fn transcribe(
        &self,
        samples: &[i16],
        options: &super::DecodeOptions,
        cancel: &CancelToken,
        on_utterance: &mut dyn FnMut(&Utterance),
    ) -> Result<super::Decoded, EngineError> {
        let wav = wav_of(samples);
        // On the task pool's blocking thread: wait for the async call here, checking for a
        // cancelled job while it runs.
        let result = self.runtime.block_on(async {
            let call = self.client.transcribe(wav);
            tokio::pin!(call);
            let mut check = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    result = &mut call => return Some(result),
                    _ = check.tick() => if cancel.is_cancelled() { return None },
                }
            }
        });
        match result {
            None => Err(EngineError::Cancelled),
            Some(Ok(utterances)) => {
                for utterance in &utterances {
                    on_utterance(utterance);
                }
                Ok(super::Decoded {
                    utterances,
                    language: options.language.clone(),
                })
            }
            Some(Err(RemoteError::Transient(reason))) => Err(EngineError::Unreachable(reason)),
            Some(Err(RemoteError::Refused(reason))) => Err(EngineError::Failed(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_without_word_times_spread_their_words() {
        let verbose = Verbose {
            segments: vec![VerboseSegment {
                start: 1.0,
                end: 2.0,
                text: " hello there ".to_owned(),
                avg_logprob: Some(-0.5),
            }],
            words: Vec::new(),
        };
        let utterances = utterances_of(verbose);
        let words: Vec<(&str, f64, f64)> = utterances[0]
            .words
            .iter()
            .map(|word| (word.text.as_str(), word.start, word.end))
            .collect();
        assert_eq!(words, [("hello", 1.0, 1.5), ("there", 1.5, 2.0)]);
        assert!((utterances[0].words[0].confidence - (-0.5f64).exp()).abs() < 1e-9);
    }

    #[test]
    fn words_go_to_the_segment_they_fall_in() {
        let verbose = Verbose {
            segments: vec![
                VerboseSegment {
                    start: 0.0,
                    end: 1.0,
                    text: "a b".to_owned(),
                    avg_logprob: None,
                },
                VerboseSegment {
                    start: 2.0,
                    end: 3.0,
                    text: "c".to_owned(),
                    avg_logprob: None,
                },
            ],
            words: vec![
                VerboseWord {
                    word: "a".to_owned(),
                    start: 0.0,
                    end: 0.4,
                },
                VerboseWord {
                    word: "b".to_owned(),
                    start: 0.5,
                    end: 1.0,
                },
                VerboseWord {
                    word: "c".to_owned(),
                    start: 2.1,
                    end: 2.9,
                },
            ],
        };
        let counts: Vec<usize> = utterances_of(verbose)
            .iter()
            .map(|u| u.words.len())
            .collect();
        assert_eq!(counts, [2, 1]);
    }

    #[tokio::test]
    async fn a_server_is_shown_without_its_password_or_secret_parameters() {
        let config = OpenAiEngineConfig {
            endpoints: vec![crate::config::RemoteEndpoint {
                url: "http://user:url-secret@127.0.0.1:9/?api_key=key-secret".to_owned(),
                api_key: None,
            }],
            ..OpenAiEngineConfig::default()
        };
        let client = RemoteClient::new(&config).unwrap();
        let (shown, ..) = &client.servers()[0];
        assert_eq!(shown, "http://user:****@127.0.0.1:9/?api_key=****");
    }

    #[test]
    fn a_wav_header_says_what_follows() {
        let wav = wav_of(&[1, -1, 300]);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 6);
        assert_eq!(wav.len(), 50);
    }
}
