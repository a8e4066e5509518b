//! Callbacks: when a job ends, its session (as `GET /api/v1/transcribe/{id}` shows it) is
//! POSTed to the `callback_url` the upload named, signed with HMAC-SHA256 of the body in
//! `X-Pocwhisp-Signature: sha256=<hex>`, retried with jittered exponential backoff
//! (REFERENCE.md's engine preset: 5 tries, 1 s to 30 s) while the receiver is unreachable or
//! answers 429, 502, 503 or 504, and each attempt recorded on the session. Only hosts listed
//! in `jobs.callback_hosts` are ever called, and only over plain HTTP: this build has no TLS
//! client (put a proxy in front of an HTTPS receiver).

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use perf_breaker::retry::Retry;
use sha2::Sha256;

use crate::config::Secret;
use crate::http::ApiError;
use crate::session::SessionView;
use crate::store::{Delivery, Store};

/// Tries per delivery, and the waits between them (REFERENCE.md's engine preset; each
/// jittered ±25 %).
const TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LAST_WAIT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header.
pub const SIGNATURE: &str = "x-pocwhisp-signature";

/// Checks an upload's `callback_url`: a plain-HTTP URL on one of `hosts`, with a secret to
/// sign with.
///
/// # Errors
///
/// A 400 naming the parameter and what it must be.
pub fn validate_callback(
    url: &str,
    hosts: &[String],
    secret: Option<&Secret>,
) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::invalid_parameter("callback_url", why);
    if hosts.is_empty() || secret.is_none() {
        return Err(invalid(
            "nothing: this server has no jobs.callback_hosts and jobs.callback_secret configured"
                .to_owned(),
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid("an absolute http:// URL".to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(
            "an http:// URL (put a proxy in front of an HTTPS receiver)".to_owned(),
        ));
    }
    let authority = uri
        .authority()
        .map(|authority| authority.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let allowed = hosts.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        allowed == host || allowed == authority
    });
    if !allowed {
        return Err(invalid(format!(
            "a URL on one of the allowed hosts: {}",
            hosts.join(", ")
        )));
    }
    Ok(())
}

/// Delivers callbacks; `Clone` shares the HTTP client.
#[derive(Clone)]
pub struct Callbacks {
    client: Client<HttpConnector, Full<Bytes>>,
    secret: Option<Secret>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("signing", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Signs with `secret`; without one, no upload may ask for a callback.
    pub fn new(secret: Option<Secret>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(TIMEOUT));
        Callbacks {
            client: Client::builder(TokioExecutor::new()).build(connector),
            secret,
        }
    }

    /// The signature of `body`: HMAC-SHA256 with the secret, hex.
    pub fn sign(secret: &Secret, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256={hex}")
    }

    /// Delivers the session `session_id` to `url`, recording every attempt.
    pub async fn deliver(&self, store: &dyn Store, session_id: &str, url: &str) {
        let Some(secret) = &self.secret else {
            return;
        };
        let Ok(Some(detail)) = store.session(session_id, None).await else {
            return;
        };
        let body = match serde_json::to_vec(&SessionView::new(detail, Vec::new())) {
            Ok(body) => Bytes::from(body),
            Err(_) => return,
        };
        let signature = Self::sign(secret, &body);
        let retry = Retry::new(TRIES, FIRST_WAIT, LAST_WAIT);
        let _ = retry
            .run(
                |attempt| {
                    let (body, signature) = (&body, &signature);
                    async move {
                        let (status_code, error, retryable) =
                            self.post(url, body, signature).await;
                        let outcome = match (&error, retryable && attempt < TRIES) {
                            (None, _) => "delivered",
                            (Some(_), true) => "retried",
                            (Some(_), false) => "failed",
                        };
                        metrics::counter!("pocwhisp_callbacks_total", "outcome" => outcome)
                            .increment(1);
                        let delivery = Delivery {
                            url: url.to_owned(),
                            attempt,
                            status_code,
                            error,
                            delivered_at: std::time::SystemTime::now(),
                        };
                        if let Err(error) = store.record_delivery(session_id, &delivery).await {
                            tracing::warn!(session = session_id, %error, "recording a callback delivery failed");
                        }
                        if delivery.error.is_none() { Ok(()) } else { Err(retryable) }
                    }
                },
                |retryable| *retryable,
            )
            .await;
    }

    /// One attempt: the receiver's status, the error if none, and whether to retry.
    async fn post(
        &self,
        url: &str,
        body: &Bytes,
        signature: &str,
    ) -> (Option<u16>, Option<String>, bool) {
        let request = match Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE, signature)
            .body(Full::new(body.clone()))
        {
            Ok(request) => request,
            Err(error) => return (None, Some(error.to_string()), false),
        };
        match tokio::time::timeout(TIMEOUT, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                let retry = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                let error =
                    (!status.is_success()).then(|| format!("the receiver answered {status}"));
                (Some(status.as_u16()), error, retry)
            }
            Ok(Err(error)) => (
                None,
                Some(format!("cannot reach the receiver: {error}")),
                true,
            ),
            Err(_) => (None, Some(format!("no answer within {TIMEOUT:?}")), true),
        }
    }
}
