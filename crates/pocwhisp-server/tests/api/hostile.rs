//! Hostile clients: requests shaped to exhaust the server or to reach what is not theirs.
//! Each test sends the attack to a real server and checks the bound or the refusal.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{USER, start_binary};

/// The peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Posts to `path` at `address` a multipart form with one text field of `size` bytes, a
/// MiB at a time; the status the server answered, if it could be read (the server may
/// answer before the body is sent and close the connection).
async fn post_huge_field(address: &str, path: &str, size: usize) -> Option<u16> {
    const BOUNDARY: &str = "hostile-boundary";
    let head = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n");
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {USER}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n{head}",
        head.len() + size + tail.len()
    );
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..size / chunk.len() {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(tail.as_bytes()).await;
    let mut answer = [0; 12];
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut answer)).await;
    match read {
        Ok(Ok(_)) => std::str::from_utf8(&answer[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// A text field of 300 MiB is refused with 413 while it streams in, on both doors: the
/// server's memory does not grow by the field (it grew by twice its size when fields were
/// read whole).
#[tokio::test]
async fn a_huge_form_field_is_refused_without_being_held() {
    let data_dir = tempfile::tempdir().unwrap();
    let (child, base) =
        start_binary(data_dir.path(), &[("POCWHISP_AUDIO__MAX_UPLOAD", "1GiB")]).await;
    let pid = child.id().unwrap();
    let address = base.trim_start_matches("http://");
    let health = reqwest::get(format!("{base}/api/v1/health")).await.unwrap();
    assert!(health.status().is_success());
    let before = peak_resident(pid);
    for path in ["/api/v1/transcribe", "/v1/audio/transcriptions"] {
        if let Some(status) = post_huge_field(address, path, 300 << 20).await {
            assert_eq!(status, 413, "{path}");
        }
    }
    let grown = peak_resident(pid).saturating_sub(before);
    assert!(grown < 32 << 20, "the peak grew by {} MiB", grown >> 20);
}

/// A connection that sends nothing is closed at the header read timeout, counted from the
/// accept: it used to be held for ever (the timeout began after the protocol was known), so
/// a few silent sockets could take every connection slot.
#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_read_timeout() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_child, base) = start_binary(
        data_dir.path(),
        &[("POCWHISP_SERVER__HEADER_READ_TIMEOUT", "1s")],
    )
    .await;
    let address = base.trim_start_matches("http://");
    for first_bytes in [&b""[..], b"PRI * HTTP/2"] {
        let mut silent = TcpStream::connect(address).await.unwrap();
        silent.write_all(first_bytes).await.unwrap();
        let mut byte = [0; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "after {first_bytes:?} the connection is closed, not held: {read:?}"
        );
    }
}
