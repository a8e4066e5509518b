//! A deadline on the first bytes of a connection.
//!
//! hyper-util's server reads a new connection's first bytes to tell HTTP/2's preface from an
//! HTTP/1 request before either protocol (and HTTP/1's header-read timeout) takes over, and
//! that read has no deadline: a client that connects and sends nothing, or a few bytes of the
//! preface, holds its connection (and one of `server.max_connections`) for ever. Wrapped in a
//! [`SniffDeadline`], the connection's reads fail once the deadline passes before the bytes
//! that decide the protocol have come: the first byte that is not the preface's, or the whole
//! preface. From then on the protocol's own timeouts apply.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What an HTTP/2 client sends first (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project! {
    /// `inner`, whose reads fail with [`io::ErrorKind::TimedOut`] if its protocol is not
    /// known by the deadline; see the [module docs](self).
    #[derive(Debug)]
    pub(crate) struct SniffDeadline<S> {
        #[pin]
        inner: S,
        // `None` once the protocol is known (its timer then dropped, so it wakes no one).
        sniffing: Option<Sniffing>,
    }
}

/// A connection whose protocol is not known yet.
#[derive(Debug)]
struct Sniffing {
    /// Bytes of the preface read so far.
    matched: usize,
    deadline: Pin<Box<Sleep>>,
}

impl<S> SniffDeadline<S> {
    /// `inner`, whose protocol must be known within `timeout` from now.
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        SniffDeadline {
            inner,
            sniffing: Some(Sniffing {
                matched: 0,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            }),
        }
    }
}

impl<S: AsyncRead> AsyncRead for SniffDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(sniffing) = this.sniffing else {
            return this.inner.poll_read(cx, buf);
        };
        let before = buf.filled().len();
        if this.inner.poll_read(cx, buf)?.is_pending() {
            // Nothing yet: woken by the data or by the deadline, whichever comes first.
            ready!(sniffing.deadline.as_mut().poll(cx));
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within the header read timeout",
            )));
        }
        let read = &buf.filled()[before..];
        let agreeing = read
            .iter()
            .zip(&PREFACE[sniffing.matched..])
            .take_while(|(byte, expected)| byte == expected)
            .count();
        sniffing.matched += agreeing;
        // Either protocol is known: a byte off the preface (or the end of the stream), or
        // the whole preface.
        if agreeing < read.len() || read.is_empty() || sniffing.matched == PREFACE.len() {
            *this.sniffing = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for SniffDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// The outcome of a read on the server's side after `sent` and `waited`.
    async fn read_after(sent: &[u8], waited: Duration) -> Option<io::Result<usize>> {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = Box::pin(SniffDeadline::new(server, TIMEOUT));
        client.write_all(sent).await.unwrap();
        let mut buf = [0; 64];
        if !sent.is_empty() {
            assert_eq!(server.read(&mut buf).await.unwrap(), sent.len());
        }
        tokio::time::advance(waited).await;
        let read = tokio::time::timeout(Duration::ZERO, server.read(&mut buf)).await;
        drop(client);
        read.ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_cut_off_at_the_deadline() {
        let early = read_after(b"", TIMEOUT - Duration::from_millis(1)).await;
        assert!(early.is_none(), "still waiting before the deadline");
        let late = read_after(b"", TIMEOUT).await.unwrap();
        assert_eq!(late.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_preface_is_cut_off_too() {
        let read = read_after(b"PRI * HT", TIMEOUT).await.unwrap();
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_protocol_is_known_the_deadline_is_the_protocols() {
        // HTTP/1 from its first byte, HTTP/2 after the whole preface: no deadline here.
        assert!(read_after(b"G", TIMEOUT * 2).await.is_none());
        assert!(read_after(PREFACE, TIMEOUT * 2).await.is_none());
    }
}
