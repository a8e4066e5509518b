//! The real binary: configuration errors, `check-config`, `--version`, and a graceful
//! shutdown on SIGTERM with a slow request in flight.

use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::helpers::{ADMIN, BINARY, start_binary};

/// Runs the binary with `args` and `yaml` as its configuration file; exit code and stderr.
fn run_with_config(
    yaml: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("pocwhisp.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut command = Command::new(BINARY);
    command
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("POCWHISP_ENV")
        .env("POCWHISP_DATA_DIR", dir.path().join("data"));
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_name_the_key_and_exit_non_zero() {
    for (yaml, env, expected) in [
        ("server:\n  listne: 127.0.0.1:1\n", vec![], "listne"),
        (
            "server:\n  request_timeout: soon\n",
            vec![],
            "request_timeout",
        ),
        ("server:\n  listen: 127.0.0.1:99999\n", vec![], "listen"),
        ("cache:\n  capacity: 12 parsecs\n", vec![], "parsecs"),
        (
            "environments:\n  production:\n    server:\n      bogus: 1\n",
            vec![("POCWHISP_ENV", "production")],
            "bogus",
        ),
        ("", vec![("POCWHISP_FROBNICATE", "1")], "frobnicate"),
        (
            "",
            vec![("POCWHISP_ENGINE", "whisper-9000")],
            "whisper-9000",
        ),
        ("jobs:\n  max_attempts: 0\n", vec![], "jobs.max_attempts"),
        (
            "",
            vec![("POCWHISP_REDIS_URL", "https://cache:6379")],
            "redis.url",
        ),
        ("redis:\n  instances: 0\n", vec![], "redis.instances"),
        ("redis:\n  timeout: 0s\n", vec![], "redis.timeout"),
    ] {
        let (code, _, stderr) = run_with_config(yaml, &["check-config"], &env);
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(expected),
            "{yaml} {env:?}: `{expected}` not in: {stderr}"
        );
    }
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let yaml = "database:\n  url: postgres://app:hunter2@db.internal/pocwhisp\nenvironments:\n  production:\n    cache:\n      ttl: 10m\n";
    let (code, stdout, stderr) = run_with_config(
        yaml,
        &[
            "check-config",
            "--env",
            "production",
            "--listen",
            "0.0.0.0:9000",
        ],
        &[
            ("POCWHISP_ADMIN_TOKEN", "very-secret-admin"),
            ("POCWHISP_CACHE__CAPACITY", "128MiB"),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("very-secret-admin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://app:****@db.internal/pocwhisp"),
        "{stdout}"
    );
    assert!(stdout.contains("environment: production"));
    assert!(stdout.contains("listen: 0.0.0.0:9000"), "flags win");
    assert!(
        stdout.contains("ttl: 10m"),
        "the environment's overrides apply: {stdout}"
    );
    assert!(
        stdout.contains("capacity: 128MiB"),
        "variables with __ nest"
    );
    assert!(
        stdout.contains("max_open_conns: 100"),
        "production defaults"
    );
}

#[test]
fn version_is_printed() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_then_exits_zero() {
    let dir = TempDir::new().unwrap();
    let (mut child, address) = start_binary(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    // A slow request: a two-second CPU profile.
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{address}/debug/pprof/profile?seconds=2");
        async move { client.get(url).bearer_auth(ADMIN).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let response = slow
        .await
        .unwrap()
        .expect("the request in flight was answered");
    assert_eq!(response.status(), 200);
    assert!(!response.bytes().await.unwrap().is_empty());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits after draining")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // No new connections once it stopped.
    assert!(
        client
            .get(format!("{address}/api/v1/live"))
            .send()
            .await
            .is_err()
    );
}
