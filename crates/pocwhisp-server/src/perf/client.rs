//! The server's admin API over HTTP (hyper-util's client: the same one the server's
//! callbacks and remote engine use).

use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a call to the server failed.
#[derive(Debug)]
pub enum ClientError {
    /// No answer: not running, wrong address, or too slow.
    Unreachable(String),
    /// The token was refused (401 or 403).
    Refused(String),
    /// The server refused the request (a bad argument, say).
    Rejected {
        /// The status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer or the output could not be handled.
    Output(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(reason) => write!(f, "cannot reach the server: {reason}"),
            ClientError::Refused(reason) => write!(f, "the server refused the token: {reason}"),
            ClientError::Rejected { status, message } => {
                write!(f, "the server answered {status}: {message}")
            }
            ClientError::Output(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ClientError {}

/// A server's admin API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Output`] for a URL that is not `http://host[:port]`.
    pub fn new(base: &str, token: String) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let valid = base.starts_with("http://") && base.parse::<Uri>().is_ok();
        if !valid {
            return Err(ClientError::Output(format!(
                "--url `{base}`: expected http://host:port"
            )));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Client {
            base,
            token,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn call(&self, method: Method, path: &str) -> Result<Bytes, ClientError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::new()))
            .map_err(|error| ClientError::Output(error.to_string()))?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.http.request(request))
            .await
            .map_err(|_| ClientError::Unreachable("no answer within 60 s".to_owned()))?
            .map_err(|error| ClientError::Unreachable(format!("{}: {error}", self.base)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| ClientError::Unreachable(error.to_string()))?
            .to_bytes();
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|error| error["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
        };
        match status.as_u16() {
            200..=299 => Ok(body),
            401 | 403 => Err(ClientError::Refused(message())),
            status => Err(ClientError::Rejected {
                status,
                message: message(),
            }),
        }
    }

    /// `GET path` as JSON.
    ///
    /// # Errors
    ///
    /// A [`ClientError`].
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        json(self.call(Method::GET, path).await?)
    }

    /// `GET path` as JSON, whatever the status (the health route answers 503 with its
    /// body when a dependency is down).
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when there is no JSON answer.
    pub async fn get_json_any_status(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        match self.call(Method::GET, path).await {
            Ok(body) => json(body),
            Err(ClientError::Rejected {
                status: 503,
                message,
            }) => serde_json::from_str(&message).or(Err(ClientError::Rejected {
                status: 503,
                message,
            })),
            Err(error) => Err(error),
        }
    }

    /// `GET path` as text.
    ///
    /// # Errors
    ///
    /// A [`ClientError`].
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let body = self.call(Method::GET, path).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST path`, answered with JSON.
    ///
    /// # Errors
    ///
    /// A [`ClientError`].
    pub async fn post_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        json(self.call(Method::POST, path).await?)
    }
}

fn json(body: Bytes) -> Result<serde_json::Value, ClientError> {
    serde_json::from_slice(&body)
        .map_err(|error| ClientError::Output(format!("the server's answer is not JSON: {error}")))
}
