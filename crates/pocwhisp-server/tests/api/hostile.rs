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

const BOUNDARY: &str = "hostile-boundary";

/// Posts to `path` at `address` a multipart form that begins with `head`, goes on with
/// `size` bytes of `a` sent a MiB at a time, and ends with `tail`; the status the server
/// answered, if it could be read (the server may answer before the body is sent and close
/// the connection).
async fn post_huge_form(
    address: &str,
    path: &str,
    head: &str,
    size: usize,
    tail: &str,
) -> Option<u16> {
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
    read_status(&mut stream, Duration::from_secs(30)).await
}

/// The status of the answer on `stream`, if one comes within `wait`.
async fn read_status(stream: &mut TcpStream, wait: Duration) -> Option<u16> {
    let mut answer = [0; 12];
    let read = tokio::time::timeout(wait, stream.read_exact(&mut answer)).await;
    match read {
        Ok(Ok(_)) => std::str::from_utf8(&answer[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// Sends each form of `forms` (a head, the size of what follows, a tail) to both doors of a
/// server and checks it is refused with 413 while the server's peak memory grows by less
/// than 32 MiB.
async fn refused_without_being_held(forms: &[(String, usize, String)]) {
    let data_dir = tempfile::tempdir().unwrap();
    let (child, base) =
        start_binary(data_dir.path(), &[("POCWHISP_AUDIO__MAX_UPLOAD", "1GiB")]).await;
    let pid = child.id().unwrap();
    let address = base.trim_start_matches("http://");
    let health = reqwest::get(format!("{base}/api/v1/health")).await.unwrap();
    assert!(health.status().is_success());
    let before = peak_resident(pid);
    for (head, size, tail) in forms {
        for path in ["/api/v1/transcribe", "/v1/audio/transcriptions"] {
            if let Some(status) = post_huge_form(address, path, head, *size, tail).await {
                assert_eq!(status, 413, "{path} {head:?}");
            }
        }
    }
    let grown = peak_resident(pid).saturating_sub(before);
    assert!(grown < 32 << 20, "the peak grew by {} MiB", grown >> 20);
}

/// A text field of 300 MiB is refused with 413 while it streams in, on both doors: the
/// server's memory does not grow by the field (it grew by twice its size when fields were
/// read whole).
#[tokio::test]
async fn a_huge_form_field_is_refused_without_being_held() {
    refused_without_being_held(&[(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n"),
        300 << 20,
        format!("\r\n--{BOUNDARY}--\r\n"),
    )])
    .await;
}

/// A part whose headers never end (a field name of 100 MiB; a header line as long) is
/// refused with 413 while it streams in: the multipart parser holds a part's headers until
/// their blank line, so they are measured on their way to it.
#[tokio::test]
async fn a_form_part_with_endless_headers_is_refused_without_being_held() {
    let tail = format!("\"\r\n\r\nvalue\r\n--{BOUNDARY}--\r\n");
    refused_without_being_held(&[
        (
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\""),
            100 << 20,
            tail.clone(),
        ),
        (
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"prompt\"\r\nX-Padding: \""
            ),
            100 << 20,
            tail,
        ),
    ])
    .await;
}

/// A client dripping its upload a byte at a time is answered 408 once it falls behind the
/// minimum rate, instead of holding its handler (and a load-shedding slot) for as long as
/// it likes.
#[tokio::test]
async fn an_upload_dripped_a_byte_at_a_time_is_cut_with_408() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_child, base) = start_binary(
        data_dir.path(),
        &[
            ("POCWHISP_SERVER__BODY_READ_TIMEOUT", "1s"),
            ("POCWHISP_SERVER__MIN_BODY_RATE", "1KiB"),
        ],
    )
    .await;
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/v1/transcribe HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {USER}\r\n\
         Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\nRIFF"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let mut answer = [0; 12];
    let read = tokio::time::timeout(Duration::from_secs(15), reader.read_exact(&mut answer)).await;
    drip.abort();
    assert!(read.is_ok(), "no answer while the body dripped");
    assert_eq!(
        &answer[9..12],
        b"408",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// One client address holds at most `server.max_connections_per_client`: more are closed as
/// they are accepted, other clients' connections are not counted against it, and a closed
/// connection gives its place back.
#[tokio::test]
async fn a_client_cannot_hold_more_than_its_share_of_connections() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_child, base) = start_binary(
        data_dir.path(),
        &[("POCWHISP_SERVER__MAX_CONNECTIONS_PER_CLIENT", "2")],
    )
    .await;
    let address = base.trim_start_matches("http://");
    let health = format!("GET /api/v1/health HTTP/1.1\r\nHost: {address}\r\n\r\n");
    async fn answered(stream: &mut TcpStream, request: &str) -> Option<u16> {
        stream.write_all(request.as_bytes()).await.ok()?;
        read_status(stream, Duration::from_secs(10)).await
    }
    // A connection answered once the server has seen earlier ones close (the start-up
    // check's, then the test's own).
    let open_answered = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut stream = TcpStream::connect(address).await.unwrap();
            if answered(&mut stream, &health).await == Some(200) {
                return stream;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no connection was answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let first = open_answered().await;
    let _second = open_answered().await;
    let mut third = TcpStream::connect(address).await.unwrap();
    assert_eq!(
        answered(&mut third, &health).await,
        None,
        "a third connection is closed"
    );
    // Another address (all of 127/8 is this machine) is another client.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut elsewhere = socket.connect(address.parse().unwrap()).await.unwrap();
    assert_eq!(answered(&mut elsewhere, &health).await, Some(200));
    drop(first);
    let _again = open_answered().await;
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
