//! The WebSocket upgrade, done here rather than by `warp::ws`.
//!
//! warp's `Ws` cannot set tokio-tungstenite's read buffer, which defaults
//! to 128 KiB per connection and is zero-filled on the first read: 1.3 GB
//! of resident memory for 10,000 idle browsers. Signaling messages are a
//! few hundred bytes to a few KiB; a small buffer that grows only for the
//! frame being read keeps an idle peer to a few KiB.

use std::future::Future;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Reply;
use warp::{Filter, Rejection};

use crate::read_ahead::ReadAhead;

/// A peer's WebSocket once upgraded.
pub type Socket = WebSocketStream<ReadAhead<TokioIo<Upgraded>>>;

/// The WebSocket's own read buffer. Frames larger than this grow it for as
/// long as they are being read; [`ReadAhead`] keeps reads few under load.
const READ_BUFFER: usize = 256;

/// A request that asked for a WebSocket, ready to be accepted.
pub struct WsUpgrade {
    accept: String,
    on_upgrade: OnUpgrade,
}

/// Why a request to `/ws` is not a usable WebSocket upgrade.
#[derive(Debug)]
pub struct NotUpgrade(pub &'static str);

impl warp::reject::Reject for NotUpgrade {}

/// Matches a WebSocket upgrade request (RFC 6455, version 13).
pub fn ws_upgrade() -> impl Filter<Extract = (WsUpgrade,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<OnUpgrade>())
        .and_then(
            |headers: HeaderMap, on_upgrade: Option<OnUpgrade>| async move {
                check(&headers, on_upgrade).map_err(warp::reject::custom)
            },
        )
}

fn check(headers: &HeaderMap, on_upgrade: Option<OnUpgrade>) -> Result<WsUpgrade, NotUpgrade> {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(NotUpgrade(
            "not a WebSocket upgrade: send `Connection: Upgrade` and `Upgrade: websocket`",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(NotUpgrade(
            "unsupported WebSocket version: send `Sec-WebSocket-Version: 13`",
        ));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(NotUpgrade("missing `Sec-WebSocket-Key` header"));
    };
    let on_upgrade = on_upgrade.ok_or(NotUpgrade(
        "this connection cannot be upgraded (HTTP/2?); use HTTP/1.1",
    ))?;
    Ok(WsUpgrade {
        accept: derive_accept_key(key.as_bytes()),
        on_upgrade,
    })
}

impl WsUpgrade {
    /// Answers 101 and runs `session` on the socket once the upgrade
    /// completes. `max_message` bounds frames and messages alike.
    pub fn accept<F, Fut>(self, max_message: usize, session: F) -> warp::reply::Response
    where
        F: FnOnce(Box<Socket>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        ReadAhead::new(TokioIo::new(upgraded)),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    session(Box::new(socket)).await
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut response = warp::reply().into_response();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = HeaderValue::from_str(&self.accept).expect("base64 is a valid header value");
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}
