//! Callbacks: when a job ends, its session (as `GET /api/v1/transcribe/{id}` shows it) is
//! POSTed to the `callback_url` the upload named, signed with the time it was sent in
//! `X-Pocwhisp-Signature: t=<unix seconds>,sha256=<hex>` (HMAC-SHA256 of `<t>.<body>`, so a
//! receiver that refuses old times refuses replays), retried with jittered exponential
//! backoff (5 tries, 1 s to 30 s: a receiver restarting is back within that) while the receiver is
//! unreachable or answers 429, 502, 503 or 504, and each attempt recorded on the session.
//!
//! Only the hosts and ports listed in `jobs.callback_hosts` are ever called, checked when
//! the upload names the URL and again at each delivery (the list may have changed since),
//! and only over plain HTTP: this build has no TLS client (put a proxy in front of an HTTPS
//! receiver). A host given by name is called only at the public addresses it resolves to
//! when the request is made, so a name that comes to resolve to this machine or its network
//! (DNS rebinding, cloud metadata at 169.254.169.254) reaches nothing; a receiver on a
//! private address is listed by that address.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use perf_breaker::retry::Retry;
use sha2::Sha256;

use crate::config::Secret;
use crate::http::ApiError;
use crate::session::SessionView;
use crate::store::{Delivery, Store};

/// Tries per delivery, and the waits between them (as for a remote engine; each
/// jittered ±25 %).
const TRIES: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LAST_WAIT: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header.
pub const SIGNATURE: &str = "x-pocwhisp-signature";

/// The port a `callback_url` or an entry of `jobs.callback_hosts` means when it names none.
const HTTP_PORT: u16 = 80;

/// Checks a `callback_url`: a plain-HTTP URL whose host and port are listed in `hosts` (an
/// entry without a port means port 80), with a secret to sign with. The refusal does not
/// repeat the list: it is the operator's to share.
///
/// # Errors
///
/// A 400 naming the parameter and what it must be.
pub fn validate_callback(
    url: &str,
    hosts: &[String],
    secret: Option<&Secret>,
) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::invalid_parameter("callback_url", why);
    if hosts.is_empty() || secret.is_none() {
        return Err(invalid(
            "nothing: this server has no jobs.callback_hosts and jobs.callback_secret configured",
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| invalid("an absolute http:// URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(
            "an http:// URL (put a proxy in front of an HTTPS receiver)",
        ));
    }
    let target = (
        uri.host().unwrap_or_default().to_ascii_lowercase(),
        uri.port_u16().unwrap_or(HTTP_PORT),
    );
    if !hosts.iter().any(|allowed| host_and_port(allowed) == target) {
        return Err(invalid(
            "a URL on a host and port this server is configured to call back (ask its operator)",
        ));
    }
    Ok(())
}

/// An entry of `jobs.callback_hosts` (`host`, `host:port`, `[v6]:port`) as host and port.
fn host_and_port(entry: &str) -> (String, u16) {
    let entry = entry.trim().to_ascii_lowercase();
    match entry.parse::<http::uri::Authority>() {
        Ok(authority) => (
            authority.host().to_owned(),
            authority.port_u16().unwrap_or(HTTP_PORT),
        ),
        Err(_) => (entry, HTTP_PORT),
    }
}

/// Whether a receiver at `ip` may be called through a name: not this machine, its private
/// networks, link-local addresses (cloud metadata), or addresses that are no one's.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_multicast()
                || ip.is_documentation()
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                || a == 0)
        }
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(mapped) => is_public(IpAddr::V4(mapped)),
            None => {
                let first = ip.segments()[0];
                !(ip.is_loopback()
                    || ip.is_unspecified()
                    || ip.is_multicast()
                    // Unique local fc00::/7 and link-local fe80::/10.
                    || first & 0xfe00 == 0xfc00
                    || first & 0xffc0 == 0xfe80)
            }
        },
    }
}

/// The resolver of the callback client: a name's public addresses only, looked up when each
/// connection is made (an address in the URL is connected to without it).
#[derive(Debug, Clone, Copy, Default)]
struct PublicAddresses;

impl tower::Service<Name> for PublicAddresses {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        Box::pin(async move {
            let public: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(std::io::Error::other(format!(
                    "{name} resolves to no public address (list a private receiver by its address)"
                )));
            }
            Ok(public.into_iter())
        })
    }
}

/// Records `delivery` on the session, then tells `recorded`.
async fn record(
    store: &dyn Store,
    session_id: &str,
    delivery: &Delivery,
    recorded: &(dyn Fn() + Send + Sync),
) {
    match store.record_delivery(session_id, delivery).await {
        Ok(()) => recorded(),
        Err(error) => {
            tracing::warn!(session = session_id, %error, "recording a callback delivery failed");
        }
    }
}

/// Delivers callbacks; `Clone` shares the HTTP client.
#[derive(Clone)]
pub struct Callbacks {
    client: Client<HttpConnector<PublicAddresses>, Full<Bytes>>,
    secret: Option<Secret>,
    hosts: Vec<String>,
}

impl std::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("signing", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Callbacks {
    /// Calls back `hosts` (`jobs.callback_hosts`), signing with `secret`; without one, no
    /// upload may ask for a callback.
    pub fn new(hosts: Vec<String>, secret: Option<Secret>) -> Self {
        let mut connector = HttpConnector::new_with_resolver(PublicAddresses);
        connector.set_connect_timeout(Some(TIMEOUT));
        Callbacks {
            client: Client::builder(TokioExecutor::new()).build(connector),
            secret,
            hosts,
        }
    }

    /// The signature of `body` sent at `sent` (Unix seconds): `t=<sent>,sha256=<hex>`, the
    /// HMAC-SHA256 with the secret of `<sent>.<body>`.
    pub fn sign(secret: &Secret, sent: u64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(sent.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("t={sent},sha256={hex}")
    }

    /// Delivers the session `session_id` to `url`, recording every attempt on the session
    /// and calling `recorded` after each.
    pub async fn deliver(
        &self,
        store: &dyn Store,
        session_id: &str,
        url: &str,
        recorded: &(dyn Fn() + Send + Sync),
    ) {
        let Some(secret) = &self.secret else {
            return;
        };
        if let Err(refused) = validate_callback(url, &self.hosts, Some(secret)) {
            // Allowed when the upload named it, not any more (jobs outlive restarts).
            let delivery = Delivery {
                url: url.to_owned(),
                attempt: 1,
                status_code: None,
                error: Some(format!("not delivered: {}", refused.message())),
                delivered_at: SystemTime::now(),
            };
            metrics::counter!("pocwhisp_callbacks_total", "outcome" => "failed").increment(1);
            record(store, session_id, &delivery, recorded).await;
            return;
        }
        let Ok(Some(detail)) = store.session(session_id, None).await else {
            return;
        };
        let body = match serde_json::to_vec(&SessionView::new(detail, Vec::new())) {
            Ok(body) => Bytes::from(body),
            Err(_) => return,
        };
        let retry = Retry::new(TRIES, FIRST_WAIT, LAST_WAIT);
        let _ = retry
            .run(
                |attempt| {
                    let body = &body;
                    async move {
                        // Each attempt is signed when it is sent.
                        let sent = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |since| since.as_secs());
                        let signature = Self::sign(secret, sent, body);
                        let (status_code, error, retryable) =
                            self.post(url, body, &signature).await;
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
                            delivered_at: SystemTime::now(),
                        };
                        record(store, session_id, &delivery, recorded).await;
                        if delivery.error.is_none() {
                            Ok(())
                        } else {
                            Err(retryable)
                        }
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
            Ok(Err(error)) => {
                // hyper says "client error (Connect)"; why is at the end of its chain.
                let cause = std::iter::successors(
                    Some(&error as &(dyn std::error::Error + 'static)),
                    |error| error.source(),
                )
                .last()
                .map_or_else(String::new, |cause| format!(": {cause}"));
                (
                    None,
                    Some(format!("cannot reach the receiver ({error}){cause}")),
                    true,
                )
            }
            Err(_) => (None, Some(format!("no answer within {TIMEOUT:?}")), true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, hosts: &[&str]) -> Result<(), String> {
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        validate_callback(url, &hosts, Some(&Secret::new("key"))).map_err(|error| error.message())
    }

    #[test]
    fn host_and_port_must_both_be_listed_and_a_bare_host_means_port_80() {
        assert!(check("http://hooks.example/done", &["hooks.example"]).is_ok());
        assert!(check("http://hooks.example:80/done", &["hooks.example"]).is_ok());
        assert!(check("http://HOOKS.example:8080/x", &["hooks.example:8080"]).is_ok());
        assert!(check("http://[::1]:9000/x", &["[::1]:9000"]).is_ok());
        for (url, hosts) in [
            ("http://hooks.example:22/", &["hooks.example"][..]),
            ("http://hooks.example/", &["hooks.example:8080"][..]),
            ("http://hooks.example:8081/", &["hooks.example:8080"][..]),
            ("http://hooks.example.evil/", &["hooks.example"][..]),
        ] {
            let refused = check(url, hosts).unwrap_err();
            assert!(refused.contains("callback_url"), "{url}: {refused}");
            assert!(
                !refused.contains("hooks.example"),
                "the list is not shown: {refused}"
            );
        }
    }

    #[test]
    fn only_public_addresses_are_reached_through_a_name() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_signature_covers_the_time_it_was_sent() {
        let secret = Secret::new("key");
        let signed = Callbacks::sign(&secret, 1_700_000_000, b"{}");
        assert!(signed.starts_with("t=1700000000,sha256="), "{signed}");
        assert_ne!(
            signed,
            Callbacks::sign(&secret, 1_700_000_001, b"{}"),
            "a replay at another time does not match"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1700000000.{}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(signed, format!("t=1700000000,sha256={hex}"));
    }
}
