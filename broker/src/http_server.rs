//! The HTTP server: accepts connections, refuses an address group over its
//! connection cap at once, and serves the rest over HTTP/1.1 (WebSocket
//! upgrades included) with [`Timeouts`] on every connection, until told to
//! shut down.
//!
//! Only HTTP/1.1: browsers speak HTTP/2 only over TLS, which a proxy in
//! front of the broker terminates, and proxies speak HTTP/1.1 to it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use warp::http::{Request, Response};

use crate::admission::{AddressGroup, Place};
use crate::http_service::{ConnService, HttpCap};
use crate::http_timeouts::{Activity, TimedIo, Timeouts};

/// How long connections still open at shutdown may take to finish their
/// responses (a kept-alive idle connection closes at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `service` on `listener` until `shutdown` resolves, then stops
/// accepting and lets the open connections finish (for at most
/// [`SHUTDOWN_GRACE`]). Upgraded connections are not waited for: they are
/// their sessions' now.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    timeouts: Timeouts,
    cap: HttpCap,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let cap = Arc::new(cap);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A trusted proxy's connections count against the clients it
        // forwards for, request by request (see `ConnService`).
        let place = if cap.is_trusted(&peer) {
            None
        } else {
            let group = AddressGroup::of(peer.ip());
            match cap.per_address.try_take(group, cap.max) {
                Some(place) => Some(place),
                None => {
                    refuse(stream, &cap, group);
                    continue;
                }
            }
        };
        let (service, timeouts, cap) = (service.clone(), timeouts.clone(), cap.clone());
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            // Everything a connection allocates is made here, on the worker
            // thread that runs it and frees it, and the HTTP connection is
            // boxed: the allocator then reuses its few KiB for the next
            // connection. Made in the accept loop, they were allocated on
            // one thread and freed on another, and every idle WebSocket
            // left its HTTP connection's memory behind (5 KiB, measured).
            let activity = Arc::new(Activity::default());
            let io = TokioIo::new(TimedIo::new(stream, activity.clone(), timeouts));
            let svc = ConnService::new(service, peer, activity, cap);
            let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
            Box::pin(serve_connection(watcher.watch(conn), peer, place)).await
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after the shutdown grace period");
    }
}

async fn serve_connection<E: std::fmt::Display>(
    conn: impl Future<Output = Result<(), E>>,
    peer: SocketAddr,
    place: Option<Place>,
) {
    if let Err(e) = conn.await {
        // Timeouts, resets, malformed requests: the client's problem.
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
    drop(place);
}

/// Answers a connection over its address group's cap and closes it, at
/// the cost of one non-blocking write.
fn refuse(stream: TcpStream, cap: &HttpCap, group: AddressGroup) {
    tracing::debug!(%group, "HTTP connection refused: per-address connection limit");
    cap.metrics
        .refused_http
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let text = cap.refusal_text(group);
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Waits a moment after an accept error that is not the client's: out of
/// file descriptors, the likeliest, clears up as connections close.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept connections; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
