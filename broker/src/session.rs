//! One peer's WebSocket connection, from welcome to cleanup.
//!
//! Exactly one writer task owns the sending half, fed by a bounded queue.
//! The read loop answers recoverable errors (bad JSON, unknown peer, ...)
//! with an error message and keeps going; transport errors, a close frame,
//! a kill from the registry or broker shutdown end the loop. Cleanup always
//! runs: everything the peer registered goes at once.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use protocol::signaling::{decode_client, MAX_READY_OFFER_BYTES};
use protocol::{ClientMsg, ContentId, ErrorCode, PeerId, ServerMsg};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;
use uuid::Uuid;

use crate::admission::Admission;
use crate::rate::{RateLimit, Verdict};
use crate::registry::{encode, Mailbox, Outbound, Registry};
use crate::upgrade::Socket;
use crate::State;

/// Close code for "the broker is restarting, reconnect".
const CLOSE_RESTART: u16 = 1012;
/// Close code for "message too big".
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for "policy violation" (too slow to keep up, flooding).
const CLOSE_POLICY: u16 = 1008;
/// Close code for "going away" (dead connection).
const CLOSE_GOING_AWAY: u16 = 1001;

/// Drives one connection until it ends. `want` comes from the upgrade URL
/// (`/ws?want=<address>`) and saves a round trip when opening a link.
pub async fn serve<R: Registry>(
    ws: Socket,
    state: Arc<State<R>>,
    want: Option<Result<ContentId, String>>,
    admission: Admission,
) {
    let id = PeerId(Uuid::new_v4());
    let span = tracing::info_span!("peer", %id, client = %admission.client);
    serve_as(id, ws, state, want, admission)
        .instrument(span)
        .await
}

async fn serve_as<R: Registry>(
    id: PeerId,
    ws: Socket,
    state: Arc<State<R>>,
    want: Option<Result<ContentId, String>>,
    admission: Admission,
) {
    state.metrics.peers.fetch_add(1, Relaxed);
    tracing::debug!("connected");

    let (mut sink, mut stream) = ws.split();
    let (outbox, mut queue) = mpsc::channel::<Outbound>(state.config.outbox_capacity);
    let kill = Arc::new(Notify::new());
    let metrics = state.metrics.clone();
    let writer = tokio::spawn(async move {
        'write: while let Some(mut out) = queue.recv().await {
            // Write everything already queued, then flush once: messages
            // decided together (a holder count and an introduction) leave in
            // one TCP segment. Flushed one by one, the second would wait for
            // the peer's delayed ACK of the first (Nagle), about 40 ms.
            loop {
                match out {
                    Outbound::Text(text) => {
                        metrics.ws_bytes_out.fetch_add(text.len() as u64, Relaxed);
                        if sink.feed(Message::text(text.as_ref())).await.is_err() {
                            break 'write;
                        }
                    }
                    Outbound::Ping => {
                        if sink.feed(Message::Ping(Default::default())).await.is_err() {
                            break 'write;
                        }
                    }
                    Outbound::Close(code, reason) => {
                        let frame = CloseFrame {
                            code: code.into(),
                            reason: reason.into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break 'write;
                    }
                }
                match queue.try_recv() {
                    Ok(next) => out = next,
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let session = Session {
        id,
        state: state.clone(),
        outbox: outbox.clone(),
    };
    state
        .registry
        .connect(
            id,
            Mailbox {
                outbox: outbox.clone(),
                kill: kill.clone(),
            },
        )
        .await;
    session.send(&ServerMsg::Welcome {
        id,
        ice_servers: state.config.ice_servers_for(id),
    });
    match want {
        Some(Ok(content)) => {
            session
                .handle(ClientMsg::Want {
                    content,
                    holders: None,
                })
                .await
        }
        Some(Err(message)) => session.error(ErrorCode::BadAddress, message, None),
        None => {}
    }

    let mut shutdown = state.shutdown.clone();
    let stopping = async move {
        // Drop the watch guard at once: it must not live across an await.
        let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
    };
    tokio::pin!(stopping);
    let config = &state.config;
    let mut rate = RateLimit::new(config.message_rate, config.message_burst, Instant::now());
    let mut last_seen = Instant::now();
    let mut pings = tokio::time::interval_at(
        tokio::time::Instant::now() + config.ping_interval,
        config.ping_interval,
    );
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(msg)) => {
                    last_seen = Instant::now();
                    match msg {
                        Message::Close(_) => break None,
                        // Pongs only prove liveness; pings are answered below us.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                        Message::Text(_) | Message::Binary(_) => {}
                    }
                    match rate.check(last_seen) {
                        Verdict::Accept => session.frame(msg).await,
                        Verdict::Refuse => session.error(
                            ErrorCode::RateLimited,
                            format!(
                                "too many messages: at most {} per second ({} at once); \
                                 this one was dropped, slow down",
                                config.message_rate, config.message_burst
                            ),
                            None,
                        ),
                        Verdict::Disconnect => {
                            state.metrics.flood_drops.fetch_add(1, Relaxed);
                            break Some((
                                CLOSE_POLICY,
                                "message flood: far over the rate limit; reconnect later".to_owned(),
                            ));
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "transport error");
                    break matches!(e, WsError::Capacity(CapacityError::MessageTooLong { .. })).then(|| (
                        CLOSE_TOO_BIG,
                        "frame too large: messages are at most 64 KiB".to_owned(),
                    ));
                }
                None => break None,
            },
            _ = pings.tick() => {
                let silent = last_seen.elapsed();
                if silent >= config.idle_timeout {
                    tracing::debug!(?silent, "no answer to pings; dropping");
                    state.metrics.idle_drops.fetch_add(1, Relaxed);
                    break Some((
                        CLOSE_GOING_AWAY,
                        format!("no answer to pings for {} s; reconnect", silent.as_secs()),
                    ));
                }
                // A full queue means a slow peer, which the registry kills.
                let _ = outbox.try_send(Outbound::Ping);
            }
            _ = kill.notified() => {
                break Some((CLOSE_POLICY, "too slow: outbound queue full; reconnect".to_owned()));
            }
            _ = &mut stopping => {
                break Some((CLOSE_RESTART, "broker restarting; reconnect".to_owned()));
            }
        }
    };

    state.registry.disconnect(id).await;
    state.metrics.peers.fetch_sub(1, Relaxed);
    // The queue may be full (slow peer); the close frame is best effort.
    if let Some((code, reason)) = close {
        let _ = outbox.try_send(Outbound::Close(code, reason));
    }
    drop(session);
    drop(outbox);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    drop(admission);
    tracing::debug!("disconnected");
}

/// The per-connection request handler.
struct Session<R> {
    id: PeerId,
    state: Arc<State<R>>,
    outbox: mpsc::Sender<Outbound>,
}

impl<R: Registry> Session<R> {
    fn send(&self, msg: &ServerMsg) {
        let text = encode(msg);
        // Replies to this peer go through the same bounded queue; if it is
        // full the registry's kill ends the session anyway.
        let _ = self.outbox.try_send(Outbound::Text(text));
    }

    fn error(&self, code: ErrorCode, message: String, peer: Option<PeerId>) {
        tracing::debug!(?code, %message, "error reply");
        self.state.metrics.error(code);
        self.send(&ServerMsg::Error {
            code,
            message,
            peer,
        });
    }

    async fn frame(&self, msg: Message) {
        if let Message::Text(text) = msg {
            let text = text.as_str();
            self.state
                .metrics
                .ws_bytes_in
                .fetch_add(text.len() as u64, Relaxed);
            match decode_client(text) {
                Ok(msg) => self.handle(msg).await,
                Err(e) => self.error(e.code, e.message, None),
            }
        } else if let Message::Binary(_) = msg {
            self.error(
                ErrorCode::Binary,
                "binary frames are not part of the protocol; send JSON text frames".into(),
                None,
            );
        }
    }

    async fn handle(&self, msg: ClientMsg) {
        self.state.metrics.message(&msg);
        let registry = &self.state.registry;
        let result = match msg {
            ClientMsg::Signal { to, data } => {
                if to == self.id {
                    return self.error(
                        ErrorCode::BadMessage,
                        "a signal must go to another peer, not to yourself".into(),
                        Some(to),
                    );
                }
                let text = encode(&ServerMsg::Signal {
                    from: self.id,
                    data,
                });
                let result = registry.publish(to, text).await;
                if result.is_ok() {
                    self.state.metrics.relayed.fetch_add(1, Relaxed);
                }
                result
            }
            ClientMsg::Hold { content } => registry.hold(self.id, content).await,
            ClientMsg::Release { content } => {
                registry.release(self.id, content).await;
                Ok(())
            }
            ClientMsg::Want { content, holders } => {
                registry.want(self.id, content, holders.unwrap_or(1)).await
            }
            ClientMsg::Unwant { content } => {
                registry.unwant(self.id, content).await;
                Ok(())
            }
            ClientMsg::Ready { data } => {
                let len = data.get().len();
                if len > MAX_READY_OFFER_BYTES {
                    return self.error(
                        ErrorCode::TooLarge,
                        format!(
                            "ready offer is {len} bytes, over the {MAX_READY_OFFER_BYTES}-byte limit; \
                             leave it out and let wanters make their own offers"
                        ),
                        None,
                    );
                }
                registry.ready(self.id, data).await;
                Ok(())
            }
        };
        if let Err(e) = result {
            let peer = match &e {
                crate::registry::RegistryError::UnknownPeer(p) => Some(*p),
                _ => None,
            };
            self.error(e.code(), e.to_string(), peer);
        }
    }
}
