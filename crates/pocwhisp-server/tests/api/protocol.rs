//! HTTP/1.1 and h2c on one port, and a corpus of malformed requests: each a 4xx, the server
//! healthy after.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ADMIN, spawn_app};

#[tokio::test]
async fn http1_and_h2c_share_the_port() {
    let app = spawn_app().await;
    let h1 = app.get("/api/v1/live").send().await.unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(format!("{}/api/v1/live", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(h2.status(), 200);
    assert!(h2.headers().contains_key("x-request-id"));
}

/// Writes `request` raw and reads until the server answers or closes; the status line.
async fn raw(address: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_server_stays_healthy() {
    let app = spawn_app().await;
    let huge_header = format!(
        "GET /api/v1/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("no version", b"GET /api/v1/live\r\n\r\n".to_vec()),
        ("bad method token", b"G(T /api/v1/live HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("space in path", b"GET /api/ v1/live HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("oversized header", huge_header.into_bytes()),
        (
            "lying content length",
            b"POST /api/v1/performance/optimize HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "bad percent encoding",
            b"GET /api/v1/performance/report?period=%G1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "absurd query value",
            format!(
                "GET /debug/pprof/profile?seconds=1e400 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        ),
    ];
    for (name, request) in corpus {
        let answer = raw(app.address, &request).await;
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no status line in {answer:?}"));
        assert!((400..500).contains(&status), "{name}: {status}");
        if answer.contains("\r\n\r\n{") {
            assert!(answer.contains("\"request_id\""), "{name}: {answer}");
        }
    }
    let health = app.get("/api/v1/health").send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_header_sent_too_slowly_times_out() {
    let app = crate::helpers::spawn_with(|config| {
        config.server.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(b"GET /api/v1/live HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection instead of waiting forever"
    );
}

#[tokio::test]
async fn a_refused_request_with_a_body_says_the_connection_closes() {
    let app = spawn_app().await;
    // Refused before its body is read: the client must not reuse the connection.
    let refused = app
        .request(reqwest::Method::POST, "/api/v1/transcribe")
        .header("content-type", "audio/wav")
        .body(vec![0u8; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["connection"], "close");
    // A refusal without a body keeps the connection.
    let missing = app.get("/api/v1/nothing-here").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().get("connection").is_none());
}
