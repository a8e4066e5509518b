//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through
//! `chromedriver` (both installed by scripts/test): a session, navigation, elements, script,
//! dialogs, screenshots and the browser's console log.

#![allow(dead_code)] // each test binary uses part of it

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// A chromedriver process and one browser session in it; both end when dropped.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
}

/// The key W3C WebDriver gives element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with its console
    /// logged.
    pub(crate) async fn start() -> Browser {
        Browser::start_with(&[], None).await
    }

    /// As [`Browser::start`], with more command-line `arguments` for Chromium (a fake
    /// microphone), and downloads saved to `downloads` without asking.
    pub(crate) async fn start_with(
        arguments: &[String],
        downloads: Option<&std::path::Path>,
    ) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver, from Debian's chromium-driver (scripts/test installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1100".to_owned(),
        ];
        args.extend_from_slice(arguments);
        let prefs = downloads.map_or(
            json!({}),
            |dir| json!({"download.default_directory": dir, "download.prompt_for_download": false}),
        );
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args, "prefs": prefs},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let created: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            client,
        }
    }

    /// Sends a command; its value, or the driver's error (`{"error", "message"}`).
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        let value = response["value"].clone();
        if value.get("error").is_some() {
            Err(value)
        } else {
            Ok(value)
        }
    }

    /// Sends a command that must succeed.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.send(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// Opens `url` and waits for it to load.
    pub(crate) async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The reference of the element `selector` finds, if any.
    pub(crate) async fn find(&self, selector: &str) -> Option<String> {
        let found = self
            .send(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": selector}),
            )
            .await
            .ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// Types `text` into the element `selector` finds.
    pub(crate) async fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector).await.expect(selector);
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks the element `selector` finds.
    pub(crate) async fn click(&self, selector: &str) {
        let element = self.find(selector).await.expect(selector);
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub(crate) async fn script(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits (20 s at most) for `script` to return something truthy; that value.
    pub(crate) async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.script(script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                Value::Number(number) => number.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (20 s at most) for a dialog (`confirm`, `alert`) and accepts it; its text.
    pub(crate) async fn accept_dialog(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = self
                .send(reqwest::Method::GET, "/alert/text", Value::Null)
                .await
            {
                self.command(reqwest::Method::POST, "/alert/accept", json!({}))
                    .await;
                return text.as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "timed out waiting for a dialog");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }

    /// The console messages logged at SEVERE (errors, failed loads, CSP refusals) since the
    /// last call.
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .command(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Browser {
    /// Ends the session (closing the browser).
    pub(crate) async fn quit(&self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.client.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
