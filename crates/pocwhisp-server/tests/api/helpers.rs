//! Starting servers for tests, and talking to them.

use std::sync::LazyLock;
use std::time::Duration;

use pocwhisp_server::Application;
use pocwhisp_server::config::{Config, Secret};
use reqwest::{Client, Method, RequestBuilder, Response};
use tempfile::TempDir;
use tokio::sync::oneshot;

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

/// A running server with its own data directory; stops when dropped.
pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) address: std::net::SocketAddr,
    pub(crate) client: Client,
    /// Removed when the test ends.
    _data_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

/// The configuration every test starts from: port 0, its own data directory, an admin and
/// two users, quotas no test trips unless it means to.
pub(crate) fn test_config(data_dir: &TempDir) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = data_dir.path().to_path_buf();
    config.auth.admin_tokens = vec![Secret::new(ADMIN)];
    config.auth.api_tokens = vec![Secret::new(USER)];
    config.rate_limit.requests_per_second = 100_000;
    config.rate_limit.burst = 100_000;
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
        _data_dir: data_dir,
        stop: Some(stop),
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
