//! Starting servers for tests, and talking to them.

use std::sync::LazyLock;
use std::time::Duration;

use pocwhisp_server::Application;
use pocwhisp_server::config::{Config, EngineKind, Secret};
use reqwest::{Client, Method, RequestBuilder, Response};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The server binary.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_pocwhisp-server");

/// Starts the binary on a free port with its data in `data_dir`, the test tokens, and
/// `env`; returns it once it says where it listens, with that address (`http://...`).
pub(crate) async fn start_binary(
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(BINARY);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("POCWHISP_ADMIN_TOKEN", ADMIN)
        .env("POCWHISP_API_TOKEN", USER)
        .env("POCWHISP_ENGINE", "sphinx")
        .env_remove("POCWHISP_ENV")
        .stdout(std::process::Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server starts")
            .unwrap()
            .expect("the server says where it listens");
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.to_owned();
        }
    };
    (child, address)
}

/// Logs go to stderr when `TEST_LOG` is set, and nowhere otherwise.
static LOGGING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        pocwhisp_server::telemetry::init_logging(&pocwhisp_server::config::LogConfig {
            level: "debug".into(),
            ..Default::default()
        });
    }
});

pub(crate) const ADMIN: &str = "test-admin-token";
pub(crate) const USER: &str = "test-user-token";
pub(crate) const OTHER_USER: &str = "test-other-user-token";

/// A running server with its own data directory; stops when dropped.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) address: std::net::SocketAddr,
    pub(crate) client: Client,
    /// Its data directory, removed when the test ends.
    pub(crate) data_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

/// The configuration every test starts from: port 0, its own data directory, an admin and
/// two users, quotas no test trips unless it means to, and PocketSphinx (its words are
/// checked against its own CLI; the Whisper tests choose `whisper`).
pub(crate) fn test_config(data_dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.engine.kind = EngineKind::Sphinx;
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = data_dir.path().to_path_buf();
    config.auth.admin_tokens = vec![Secret::new(ADMIN)];
    config.auth.api_tokens = vec![Secret::new(USER), Secret::new(OTHER_USER)];
    config.rate_limit.requests_per_second = 100_000;
    config.rate_limit.burst = 100_000;
    // A user's backlog is limited only where a test means it to be.
    config.jobs.max_unfinished_per_user = 0;
    config
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// A server whose configuration `adjust` changes first.
pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    LazyLock::force(&LOGGING);
    let data_dir = TempDir::new().unwrap();
    let mut config = test_config(&data_dir);
    adjust(&mut config);
    let application = Application::build(config).await.expect("the server builds");
    let address = application.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base: format!("http://{address}"),
        address,
        client: Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
        data_dir,
        stop: Some(stop),
    }
}

/// A request sent and its JSON body read, for the many checks that only want the body (a
/// failed send or a body that is not JSON fails the test).
pub(crate) trait JsonReply {
    async fn json_reply(self) -> serde_json::Value;
}

impl JsonReply for RequestBuilder {
    async fn json_reply(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

impl TestApp {
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub(crate) fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `GET path` as the admin.
    pub(crate) async fn admin_get(&self, path: &str) -> Response {
        self.get(path).bearer_auth(ADMIN).send().await.unwrap()
    }

    /// Uploads `audio` as a raw body with `content_type`, as `token`, with `query` (`?...`).
    pub(crate) async fn upload(
        &self,
        token: &str,
        audio: Vec<u8>,
        content_type: &str,
        query: &str,
    ) -> Response {
        self.request(Method::POST, &format!("/api/v1/transcribe{query}"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(audio)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `audio` and waits for its transcript (sync mode, then polling): the session.
    pub(crate) async fn transcribe(&self, token: &str, audio: Vec<u8>) -> serde_json::Value {
        let response = self.upload(token, audio, "audio/wav", "").await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(matches!(status, 200 | 202), "{status}: {body}");
        self.finished(token, body["session_id"].as_str().unwrap())
            .await
    }

    /// The session `id` once it is completed or failed (two minutes at most).
    pub(crate) async fn finished(&self, token: &str, id: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let response = self
                .get(&format!("/api/v1/transcribe/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let session: serde_json::Value = response.json().await.unwrap();
            if matches!(session["status"].as_str(), Some("completed" | "failed")) {
                return session;
            }
            assert!(std::time::Instant::now() < deadline, "still {session}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The words of a transcribed session, segments in order.
pub(crate) fn words_in(session: &serde_json::Value) -> Vec<String> {
    session["transcript"]["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("no transcript: {session}"))
        .iter()
        .flat_map(|segment| segment["text"].as_str().unwrap().split_whitespace())
        .map(str::to_owned)
        .collect()
}

/// The words of one speaker's segments.
pub(crate) fn words_of_speaker(session: &serde_json::Value, speaker: &str) -> Vec<String> {
    session["transcript"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|segment| segment["speaker"] == speaker)
        .flat_map(|segment| segment["text"].as_str().unwrap().split_whitespace())
        .map(str::to_owned)
        .collect()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The JSON error body of `response`, after checking its shape.
pub(crate) async fn error_of(response: Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "an error is JSON"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["request_id"].as_str(), request_id.as_deref(), "{body}");
    (status, body)
}
