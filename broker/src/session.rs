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

use futures_util::{FutureExt, SinkExt, StreamExt};
use protocol::signaling::{
    decode_client, signal_kind, SignalKind, MAX_READY_OFFER_BYTES, MAX_SIGNAL_BYTES,
};
use protocol::{ClientMsg, ContentId, ErrorCode, PeerId, ServerMsg};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument;
use uuid::Uuid;

use crate::admission::Admission;
use crate::metrics::Metrics;
use crate::rate::{RateLimit, Verdict};
use crate::registry::{encode, encode_signal, Inbox, Mailbox, Next, Outbound, Registry};
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
///
/// Every idle connection is one task waiting in this future, so its size
/// is most of what an idle peer costs: the socket comes boxed (an async
/// fn keeps its arguments twice), and anything needed only while a
/// message is handled or written is boxed at that await.
pub fn serve<R: Registry>(
    ws: Box<Socket>,
    state: Arc<State<R>>,
    want: Option<Result<ContentId, String>>,
    admission: Admission,
) -> impl std::future::Future<Output = ()> {
    let id = PeerId(Uuid::new_v4());
    let span = tracing::info_span!("peer", %id, client = %admission.client);
    serve_as(id, ws, state, want, admission).instrument(span)
}

async fn serve_as<R: Registry>(
    id: PeerId,
    mut ws: Box<Socket>,
    state: Arc<State<R>>,
    want: Option<Result<ContentId, String>>,
    admission: Admission,
) {
    state.metrics.peers.fetch_add(1, Relaxed);
    tracing::debug!("connected");

    let (mailbox, queue) = Mailbox::with_limits(state.config.outbox_limits());
    let session = Session {
        id,
        state: state.clone(),
        outbox: mailbox.clone(),
    };
    state.registry.connect(id, mailbox, admission.group()).await;
    session.send(&ServerMsg::Welcome {
        id,
        ice_servers: state.config.ice_servers_for(id),
    });
    match want {
        Some(Ok(content)) => {
            Box::pin(session.handle(ClientMsg::Want {
                content,
                holders: None,
            }))
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
    // Fresh TURN credentials before the welcome's expire, checked at each
    // ping: a timer of its own would cost every idle peer memory.
    let renew_every = config.turn.as_ref().map(|turn| turn.renew_every());
    let mut renew_at = renew_every.map(|every| Instant::now() + every);
    // One task reads and writes: a second task per connection, and the lock
    // that splitting the socket needs, would cost every idle peer memory.
    let close = loop {
        tokio::select! {
            next = queue.recv() => {
                let Next::Frame(out) = next else {
                    break Some((CLOSE_POLICY, "too slow: outbound queue full; reconnect".to_owned()));
                };
                // Let the other ready tasks run first: under load they queue
                // more for this peer, and one write carries it all. Each
                // write on loopback also runs the receiver's side of TCP.
                tokio::task::yield_now().await;
                // Boxed like message handling below: writing needs state
                // only while it runs.
                match Box::pin(write_batch(&mut ws, out, &queue, &state.metrics)).await {
                    Ok(()) => {}
                    Err(WriteFailed::Socket) => break None,
                    Err(WriteFailed::Stuck) => {
                        tracing::debug!("writes stalled; dropping");
                        break Some((CLOSE_POLICY, "too slow: writes stalled; reconnect".to_owned()));
                    }
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(msg)) => {
                    last_seen = Instant::now();
                    let control = match msg {
                        Message::Close(_) => break None,
                        // Pongs only prove liveness; pings are answered below
                        // us. Both count against the rate limit, silently:
                        // a ping flood costs the broker a pong each.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => true,
                        Message::Text(_) | Message::Binary(_) => false,
                    };
                    match rate.check(last_seen) {
                        Verdict::Accept | Verdict::Refuse if control => continue,
                        // Boxed: handling needs far more state than waiting,
                        // and only while it runs; inline, every idle
                        // connection's task would be sized for it.
                        Verdict::Accept => Box::pin(session.frame(msg)).await,
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
                                "message flood (pings count too): far over the rate limit; reconnect later".to_owned(),
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
                queue.compact();
                // A full queue means a slow peer, which the registry kills.
                let _ = session.outbox.try_send(Outbound::Ping);
                if let (Some(at), Some(every)) = (renew_at, renew_every) {
                    if Instant::now() >= at {
                        session.send(&ServerMsg::IceServers {
                            ice_servers: config.ice_servers_for(id),
                        });
                        renew_at = Some(Instant::now() + every);
                    }
                }
            }
            _ = &mut stopping => {
                break Some((CLOSE_RESTART, "broker restarting; reconnect".to_owned()));
            }
        }
    };

    state.registry.disconnect(id).await;
    state.sites.forget(id);
    state.metrics.peers.fetch_sub(1, Relaxed);
    drop(session);
    Box::pin(say_goodbye(ws, close)).await;
    drop(admission);
    tracing::debug!("disconnected");
}

/// Why a write ended the connection.
enum WriteFailed {
    /// The socket failed.
    Socket,
    /// Writes were blocked for [`WRITE_TIMEOUT`]: the peer stopped reading.
    Stuck,
}

/// How long a write may wait for the peer to take our bytes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `first` and everything else already queued, then flushes once:
/// messages decided together (a holder count and an introduction) leave
/// in one TCP segment. Flushed one by one, the second would wait for the
/// peer's delayed ACK of the first (Nagle), about 40 ms.
async fn write_batch(
    ws: &mut Socket,
    first: Outbound,
    queue: &Inbox,
    metrics: &Metrics,
) -> Result<(), WriteFailed> {
    let write = async {
        let mut out = first;
        loop {
            let msg = match out {
                Outbound::Text(text) => {
                    metrics.ws_bytes_out.fetch_add(text.len() as u64, Relaxed);
                    Message::Text(text)
                }
                Outbound::Ping => Message::Ping(Default::default()),
            };
            ws.feed(msg).await.map_err(|_| WriteFailed::Socket)?;
            match queue.try_recv() {
                Some(next) => out = next,
                None => break,
            }
        }
        ws.flush().await.map_err(|_| WriteFailed::Socket)
    };
    let mut write = std::pin::pin!(write);
    // Nearly every write completes at once; only one that must wait for
    // the peer needs a timer.
    if let Some(done) = (&mut write).now_or_never() {
        return done;
    }
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| WriteFailed::Stuck)?
}

/// Sends the close frame and waits for the peer's (best effort: it may be
/// gone or not reading). Reading on until then matters: closing a socket
/// with unread input makes the kernel reset the connection, and the peer
/// may lose our close frame and its reason with it.
async fn say_goodbye(mut ws: Box<Socket>, close: Option<(u16, String)>) {
    let goodbye = async {
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code: code.into(),
                reason: reason.into(),
            };
            let _ = ws.send(Message::Close(Some(frame))).await;
        }
        let _ = SinkExt::close(&mut ws).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
}

/// The per-connection request handler.
struct Session<R> {
    id: PeerId,
    state: Arc<State<R>>,
    outbox: Mailbox,
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
        // The peer an error is about: a signal's recipient.
        let msg_peer = match &msg {
            ClientMsg::Signal { to, .. } => Some(*to),
            _ => None,
        };
        let result = match msg {
            ClientMsg::Signal { to, data } => {
                if to == self.id {
                    return self.error(
                        ErrorCode::BadMessage,
                        "a signal must go to another peer, not to yourself".into(),
                        Some(to),
                    );
                }
                let len = data.get().len();
                if len > MAX_SIGNAL_BYTES {
                    return self.error(
                        ErrorCode::TooLarge,
                        format!(
                            "signal data is {len} bytes, over the {MAX_SIGNAL_BYTES}-byte limit; \
                             a handshake message is smaller: send candidates one by one"
                        ),
                        Some(to),
                    );
                }
                let kind = match signal_kind(data.get()) {
                    Ok(kind) => kind,
                    Err(message) => return self.error(ErrorCode::BadMessage, message, Some(to)),
                };
                match kind {
                    // Recorded before relaying: the answer may come back
                    // before this returns.
                    SignalKind::Offer => {
                        if let Err(e) = registry.offered(self.id, to).await {
                            return self.error(e.code(), e.to_string(), Some(to));
                        }
                    }
                    SignalKind::Answer => match registry.answering(self.id, to).await {
                        Ok(true) => {}
                        Ok(false) => {
                            return self.error(
                                ErrorCode::UnexpectedAnswer,
                                format!(
                                    "peer {to} made you no offer (or it was answered already); \
                                     an answer goes only to the peer whose offer it answers"
                                ),
                                Some(to),
                            )
                        }
                        Err(e) => return self.error(e.code(), e.to_string(), Some(to)),
                    },
                    SignalKind::Other => {}
                }
                let text = encode_signal(self.id, &data);
                let result = registry.publish(self.id, to, text).await;
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
            ClientMsg::Follow { site } => {
                match self.state.sites.follow(self.id, site) {
                    Ok(Some(record)) => self.send(&ServerMsg::SiteRelease { record }),
                    Ok(None) => {}
                    Err(e) => return self.error(ErrorCode::Limit, e.to_string(), None),
                }
                Ok(())
            }
            ClientMsg::Announce { record } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                match self.state.sites.announce(&record, now) {
                    Ok(followers) => {
                        let text = encode(&ServerMsg::SiteRelease { record });
                        for follower in followers {
                            // A follower that is gone or busy misses it;
                            // it gets the kept one when it follows again.
                            let _ = registry.publish(self.id, follower, text.clone()).await;
                        }
                    }
                    Err(e) => return self.error(ErrorCode::BadRelease, e.to_string(), None),
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            let peer = match (&e, msg_peer) {
                (crate::registry::RegistryError::UnknownPeer(p), _) => Some(*p),
                (_, to) => to,
            };
            self.error(e.code(), e.to_string(), peer);
        }
    }
}
