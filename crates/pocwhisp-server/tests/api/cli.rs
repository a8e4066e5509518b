//! `pocwhisp-server perf ...` against a real server process: each mode's output and exit
//! code, and the codes scripts rely on (critical health, no server, a refused token).

use std::process::Command;

use tempfile::TempDir;

use crate::helpers::{ADMIN, BINARY, start_binary};

/// Runs `perf args...` against `url` with the admin token: exit code and standard output.
fn perf(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(BINARY)
        .arg("perf")
        .args(args)
        .args(["--url", url, "--token", ADMIN])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn each_mode_works_against_a_running_server() {
    let data = TempDir::new().unwrap();
    let (_server, url) = start_binary(data.path(), &[]).await;
    let url = url.clone();
    tokio::task::spawn_blocking(move || {
        // A server that has just started is busy loading its models, which its CPU figure
        // rightly calls critical (exit 2): wait for it to settle, within a bound.
        let settle = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let (code, out, err) = loop {
            let (code, out, err) = perf(&url, &["analyze"]);
            if code != Some(2) || std::time::Instant::now() > settle {
                break (code, out, err);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        };
        assert!(matches!(code, Some(0 | 1)), "{code:?} {out} {err}");
        // Resident memory is in every snapshot; CPU use only once the server has sampled
        // twice, which a freshly started server may not have done yet.
        assert!(
            out.contains("server health:") && out.contains("resident_bytes"),
            "{out}"
        );
        assert!(out.contains("host load per core"), "{out}");
        assert!(!out.contains('\u{1b}'), "no colour when not a terminal");

        let (code, out, _) = perf(&url, &["optimize", "--type", "cache", "--auto-apply"]);
        assert_eq!(code, Some(0));
        assert!(out.contains("drop expired responses"), "{out}");
        // Not a terminal and no --auto-apply: it will not ask, and says so.
        let (code, _, err) = perf(&url, &["optimize"]);
        assert_eq!(code, Some(4), "{err}");
        assert!(err.contains("--auto-apply"), "{err}");
        let (code, _, err) = perf(&url, &["optimize", "--type", "everything", "--auto-apply"]);
        assert_eq!(code, Some(4), "{err}");

        let dir = TempDir::new().unwrap();
        let csv = dir.path().join("samples.csv");
        let (code, out, err) = perf(
            &url,
            &[
                "monitor",
                "--duration",
                "1s",
                "--interval",
                "250ms",
                "--output",
                csv.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("throughput_rps"), "{out}");
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("taken_at,") && rows[0].contains("cpu_usage_percent"));
        assert_eq!(rows.len(), 1 + 5, "a header and five samples: {text}");
        let json = dir.path().join("samples.json");
        perf(
            &url,
            &[
                "monitor",
                "--duration",
                "500ms",
                "--interval",
                "250ms",
                "--output",
                json.to_str().unwrap(),
            ],
        );
        let samples: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(samples.as_array().unwrap().len(), 3);

        let report = dir.path().join("report.md");
        let (code, _, _) = perf(
            &url,
            &[
                "report",
                "--format",
                "markdown",
                "--output",
                report.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0));
        assert!(
            std::fs::read_to_string(&report)
                .unwrap()
                .starts_with("# Performance report")
        );
        let (code, out, _) = perf(&url, &["report", "--period", "24h", "--format", "csv"]);
        assert_eq!(code, Some(0));
        assert!(out.lines().count() > 1, "{out}");
        let (code, _, err) = perf(&url, &["report", "--period", "fortnight"]);
        assert_eq!(code, Some(4), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn exit_codes_say_critical_unreachable_and_refused() {
    let data = TempDir::new().unwrap();
    // CPU at or above 0 % is "critical": every analysis finds an issue.
    let (_server, url) = start_binary(
        data.path(),
        &[
            ("POCWHISP_THRESHOLDS__CPU_PERCENT__WARNING", "0"),
            ("POCWHISP_THRESHOLDS__CPU_PERCENT__CRITICAL", "0"),
            ("POCWHISP_MONITORING__METRICS_UPDATE_INTERVAL", "200ms"),
        ],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || {
        let (code, out, _) = perf(&url, &["analyze"]);
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.contains("issue") && out.contains("cpu_usage_percent"),
            "{out}"
        );

        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (code, _, err) = perf(&format!("http://{free}"), &["analyze"]);
        assert_eq!(code, Some(3), "{err}");
        assert!(err.contains("cannot reach"), "{err}");

        let refused = Command::new(BINARY)
            .args(["perf", "analyze", "--url", &url, "--token", "made-up"])
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(3));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the token"));

        let no_token = Command::new(BINARY)
            .args(["perf", "analyze", "--url", &url])
            .env_remove("POCWHISP_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert_eq!(no_token.status.code(), Some(4));
    })
    .await
    .unwrap();
}
