//! Redis for tests: the shared one (`REDIS_URL`, else 127.0.0.1:6379, which `scripts/test`
//! starts) under a key prefix of the test's own, or a `redis-server` of the test's own for
//! tests that stop it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared Redis.
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test or run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("test:{test}:{}-{nanos}", std::process::id())
}

/// A `redis-server` of the test's own on a free port, stopped when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    port: u16,
    process: Option<Child>,
}

impl PrivateRedis {
    /// A server on a free port.
    pub fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        PrivateRedis::start_on(port)
    }

    /// A server on `port` (again, after [`stop`](Self::stop)), once it accepts connections.
    pub fn start_on(port: u16) -> PrivateRedis {
        let process = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis {
            port,
            process: Some(process),
        }
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
