//! Timeouts of one plain HTTP connection, enforced on its socket.
//!
//! - **Header timeout**: from a request's first byte to the end of its
//!   headers. A client that sends a request slowly (slowloris) is cut off
//!   after it, with a 408 that says so, however it trickles its bytes.
//! - **Idle timeout**: how long a connection may wait for its next request
//!   (a fresh one, or a kept-alive one), and how long a response may wait
//!   for the client to read any of it.
//!
//! hyper's own `header_read_timeout` starts when hyper begins to wait for
//! a request, so it cannot tell a kept-alive connection that waits from a
//! request that trickles in; the server tells [`TimedIo`] when a request
//! starts and its response ends ([`Activity`]), and [`TimedIo`] times what
//! lies between. Once upgraded to a WebSocket, the connection is the
//! session's, which has its own liveness checks: no timeout applies here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::metrics::Metrics;

/// The two timeouts and the 408 answer, shared by every connection.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// From a request's first byte to the end of its headers.
    pub header: Duration,
    /// Waiting for a request, or for the client to read a response.
    pub idle: Duration,
    too_slow: Arc<[u8]>,
    metrics: Option<Arc<Metrics>>,
}

impl Timeouts {
    /// Timeouts with the answer a too-slow request gets.
    pub fn new(header: Duration, idle: Duration) -> Timeouts {
        let body = format!(
            "request timeout: the request's headers took more than {} ms to arrive; \
             send the whole request at once\n",
            header.as_millis()
        );
        let too_slow = format!(
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n\
             x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Timeouts {
            header,
            idle,
            too_slow: too_slow.into_bytes().into(),
            metrics: None,
        }
    }

    /// The same, counting the connections it ends in `metrics`.
    pub fn counted_in(mut self, metrics: Arc<Metrics>) -> Timeouts {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, counter: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) {
        if let Some(m) = &self.metrics {
            counter(m).fetch_add(1, Ordering::Relaxed);
        }
    }
}

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const UPGRADED: u8 = 2;

/// Where a connection's requests stand, told by the server to its
/// [`TimedIo`]. Atomics: the socket and the request handler may run on
/// different threads.
#[derive(Debug, Default)]
pub struct Activity {
    state: AtomicU8,
    /// Requests started so far, so that a request that starts and ends
    /// between two reads is not missed.
    started: AtomicU32,
    /// The socket's reader, waiting without a deadline while a response
    /// is under way: woken when it ends so that it arms the idle timer.
    reader: AtomicWaker,
}

impl Activity {
    /// A request's headers are complete and it is being handled.
    pub fn request_started(&self) {
        self.started.fetch_add(1, Ordering::Release);
        let _ = self
            .state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The response has been sent (or dropped): wait for the next request.
    pub fn response_done(&self) {
        let done = self
            .state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
        if done.is_ok() {
            self.reader.wake();
        }
    }

    /// The connection is now a WebSocket: no more timeouts here.
    pub fn upgraded(&self) {
        self.state.store(UPGRADED, Ordering::Release);
    }
}

/// What the socket is waiting for, as [`TimedIo`] last saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Waiting {
    /// For a request to begin, until the deadline.
    Request(Instant),
    /// For the rest of a request's headers, until the deadline.
    Headers(Instant),
    /// For the handler and the response: no read deadline.
    Response,
    /// Nothing: the connection is a WebSocket now.
    Upgraded,
}

/// A socket that enforces [`Timeouts`] on the connection over it.
pub struct TimedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    waiting: Waiting,
    seen_started: u32,
    /// Gone once the connection is a WebSocket: every idle peer would
    /// keep it.
    read_timer: Option<Pin<Box<Sleep>>>,
    /// Since when writes have been refused (the client reads nothing).
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> TimedIo<T> {
    /// Wraps a freshly accepted socket: it waits for its first request.
    pub fn new(inner: T, activity: Arc<Activity>, timeouts: Timeouts) -> TimedIo<T> {
        let deadline = Instant::now() + timeouts.idle;
        TimedIo {
            inner,
            activity,
            timeouts,
            waiting: Waiting::Request(deadline),
            seen_started: 0,
            read_timer: Some(Box::pin(sleep_until(deadline))),
            write_stalled: None,
        }
    }

    /// Brings `waiting` up to date with what the server said.
    fn sync(&mut self) {
        if self.waiting == Waiting::Upgraded {
            return;
        }
        let state = self.activity.state.load(Ordering::Acquire);
        let started = self.activity.started.load(Ordering::Acquire);
        if state == UPGRADED {
            self.waiting = Waiting::Upgraded;
            self.write_stalled = None;
            self.read_timer = None;
            // The HTTP connection's task registered itself here while the
            // response was under way. A waker keeps its task's memory (the
            // whole connection future) allocated: kept for the WebSocket's
            // life, it cost every idle peer about 1 KiB.
            drop(self.activity.reader.take());
            return;
        }
        if started != self.seen_started {
            self.seen_started = started;
            self.waiting = Waiting::Response;
        }
        match (state, self.waiting) {
            (BUSY, _) => self.waiting = Waiting::Response,
            (IDLE, Waiting::Response) => {
                self.waiting = Waiting::Request(Instant::now() + self.timeouts.idle)
            }
            _ => {}
        }
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.sync();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    if let Waiting::Request(_) = this.waiting {
                        this.waiting = Waiting::Headers(Instant::now() + this.timeouts.header);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.waiting == Waiting::Response {
                    this.activity.reader.register(cx.waker());
                    // The response may have ended since `sync`.
                    this.sync();
                }
                let (deadline, headers) = match this.waiting {
                    Waiting::Request(at) => (at, false),
                    Waiting::Headers(at) => (at, true),
                    Waiting::Response | Waiting::Upgraded => return Poll::Pending,
                };
                let timer = this
                    .read_timer
                    .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                if headers {
                    // Best effort, never waiting: the client learns why.
                    let _ = Pin::new(&mut this.inner).poll_write(cx, &this.timeouts.too_slow);
                    this.timeouts.count(|m| &m.http_header_timeouts);
                    return Poll::Ready(Err(timed_out("request headers too slow")));
                }
                this.timeouts.count(|m| &m.http_idle_closes);
                Poll::Ready(Err(timed_out("connection idle")))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check_write(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check_write(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.check_write(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> TimedIo<T> {
    /// A write that makes no progress for the idle timeout fails: the
    /// client stopped reading (or reads too slowly to matter).
    fn check_write<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.write_stalled = None;
            return polled;
        }
        if self.waiting == Waiting::Upgraded
            || self.activity.state.load(Ordering::Acquire) == UPGRADED
        {
            return Poll::Pending;
        }
        let idle = self.timeouts.idle;
        let timer = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(sleep_until(Instant::now() + idle)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(timed_out("client reads nothing")))
    }
}
