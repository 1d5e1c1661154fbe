//! The peer's side of the broker: the socket and its reconnects, what we
//! announce (holds, wants, the ready offer) and what the broker tells us
//! (welcome, introductions, counts, signals from other peers).

use gloo_timers::callback::Timeout;
use protocol::download::{HolderId, Input};
use protocol::links::{LinkKey, Side};
use protocol::signaling::PeerSignal;
use protocol::{ClientMsg, ContentId, IceServer, PeerId, ServerMsg};

use crate::broker::{BrokerEvent, BrokerSocket};
use crate::error::{log_error, PeerError};
use crate::events::Event;

use super::{with_inner, Inner};

/// The connection to the broker and who we are on it.
pub struct Signaling {
    /// The broker's WebSocket endpoint, without a query.
    pub url: String,
    pub socket: BrokerSocket,
    /// Our id, while connected (from the welcome).
    pub id: Option<PeerId>,
    /// ICE servers from the welcome, for every new connection.
    pub ice_servers: Vec<IceServer>,
    /// The want that rides on the socket's upgrade request (`?want=`),
    /// which is not sent again as a message.
    pub want_in_url: Option<ContentId>,
    reconnect: Option<Timeout>,
}

impl Signaling {
    /// Not connected yet to the broker at `url`.
    pub fn new(url: String) -> Self {
        Signaling {
            url,
            socket: BrokerSocket::default(),
            id: None,
            ice_servers: Vec::new(),
            want_in_url: None,
            reconnect: None,
        }
    }

    /// Sends `msg` if connected (see [`BrokerSocket::send`]).
    pub fn send(&self, msg: &ClientMsg) {
        self.socket.send(msg);
    }

    /// Asks for one holder of `content`, unless the upgrade request did.
    pub fn want(&self, content: ContentId) {
        if self.want_in_url != Some(content) {
            self.send(&ClientMsg::Want {
                content,
                holders: None,
            });
        }
    }

    /// We want `content` no more.
    pub fn unwant(&mut self, content: ContentId) {
        if self.want_in_url == Some(content) {
            self.want_in_url = None;
        }
        self.send(&ClientMsg::Unwant { content });
    }

    /// Sends a signal to another peer, through the broker.
    pub fn signal(&self, to: PeerId, signal: &PeerSignal) {
        let data = serde_json::value::to_raw_value(signal).expect("signals serialize");
        self.send(&ClientMsg::Signal { to, data });
    }

    /// Closes the socket and stops reconnecting.
    pub fn close(&mut self) {
        self.socket.close();
        self.reconnect = None;
    }
}

impl Inner {
    /// Opens the broker socket, riding the first want on the upgrade
    /// request: that saves a round trip when a share link is opened.
    pub(super) fn connect(&mut self) {
        if self.closed {
            return;
        }
        let s = &mut self.signaling;
        s.want_in_url = self.fetches.keys().next().copied();
        let url = match s.want_in_url {
            Some(c) => format!("{}?want={c}", s.url),
            None => s.url.clone(),
        };
        let on = self.broker_callback();
        if let Err(e) = self.signaling.socket.open(&url, on) {
            log_error("cannot open the broker socket", &e);
            self.schedule_reconnect();
        }
    }

    pub(super) fn broker_callback(&self) -> crate::broker::OnEvent {
        let weak = self.me.clone();
        std::rc::Rc::new(move |ev: BrokerEvent| with_inner(&weak, move |i| i.on_broker_event(ev)))
    }

    fn schedule_reconnect(&mut self) {
        if self.closed {
            return;
        }
        let delay = self.signaling.socket.next_delay();
        let weak = self.me.clone();
        self.signaling.reconnect = Some(Timeout::new(delay, move || {
            with_inner(&weak, Inner::connect)
        }));
    }

    pub(super) fn on_broker_event(&mut self, ev: BrokerEvent) {
        match ev {
            BrokerEvent::Text(text) => match serde_json::from_str::<ServerMsg>(&text) {
                Ok(msg) => self.on_server_msg(msg),
                Err(e) => log_error(
                    "unreadable message from the broker",
                    &PeerError::Refused(e.to_string()),
                ),
            },
            BrokerEvent::Closed(reason) => {
                if self.signaling.id.take().is_some() {
                    web_sys::console::info_1(
                        &format!("broker connection closed ({reason}); reconnecting").into(),
                    );
                }
                self.emit(Event::Disconnected);
                self.schedule_reconnect();
            }
        }
    }

    fn on_server_msg(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { id, ice_servers } => {
                let s = &mut self.signaling;
                s.id = Some(id);
                s.ice_servers = ice_servers;
                s.socket.reset_backoff();
                self.emit(Event::Connected(id.to_string()));
                // After a reconnect the broker knows nothing of us: announce
                // again what we hold and want (the ready offer first, so the
                // first wanter gets it).
                self.publish_ready_offer();
                for content in self.held.keys() {
                    self.signaling.send(&ClientMsg::Hold { content: *content });
                }
                for content in self.fetches.keys() {
                    self.signaling.want(*content);
                }
                for site in self.follows.keys() {
                    self.signaling.send(&ClientMsg::Follow { site: *site });
                }
                self.schedule_ready_offer();
            }
            // Short-lived TURN credentials, renewed: for links made from now
            // on (a TURN server checks them only when a link is set up).
            ServerMsg::IceServers { ice_servers } => self.signaling.ice_servers = ice_servers,
            ServerMsg::Signal { from, data } => {
                match serde_json::from_str::<PeerSignal>(data.get()) {
                    Ok(signal) => self.on_signal(from, signal),
                    Err(e) => log_error(
                        "unreadable signal from a peer",
                        &PeerError::Refused(e.to_string()),
                    ),
                }
            }
            ServerMsg::Introduce {
                content,
                holder,
                offer,
            } => {
                if let Some(offer) = offer {
                    match serde_json::from_str::<PeerSignal>(offer.get()) {
                        Ok(PeerSignal::Ready { sdp }) => {
                            self.offers_in_hand.insert(holder, sdp);
                        }
                        _ => log_error(
                            "unreadable ready offer; making our own",
                            &PeerError::Refused(offer.get().chars().take(80).collect()),
                        ),
                    }
                }
                // A holder whose fetch link another download has is
                // introduced again later (the download asks the broker
                // while more holders could help), once that link is free.
                let first = LinkKey {
                    peer: holder,
                    side: Side::Fetch,
                    lane: 0,
                };
                if !self.fetch_link_busy(first, content) {
                    self.drive(content, Input::Introduced(HolderId::Peer(holder)));
                }
                // Not needed (e.g. already connected to that holder); the
                // holder drops its side when it never opens.
                self.offers_in_hand.remove(&holder);
            }
            // A followed site's release, pushed by the broker: checked
            // like one read from the origin before anything of it is used.
            ServerMsg::SiteRelease { record } => {
                if let Some(url) = self.follows.get(&record.release.site).cloned() {
                    let indexes = self.site_indexes.clone();
                    let weak = self.weak();
                    wasm_bindgen_futures::spawn_local(async move {
                        let _ = crate::follow::apply(&weak, &indexes, &url, record).await;
                    });
                }
            }
            ServerMsg::OfferTaken { by } => self.on_offer_taken(by),
            ServerMsg::Holders { content, count } => {
                self.counts.insert(content, count);
                self.emit(Event::Holders(content, count));
                self.drive(content, Input::Holders(count));
            }
            ServerMsg::Error {
                code,
                message,
                peer,
            } => {
                web_sys::console::warn_1(&format!("broker: {code:?}: {message}").into());
                if let Some(peer) = peer {
                    // The holder we were handshaking with left.
                    for lane in [0, 1] {
                        let key = LinkKey {
                            peer,
                            side: Side::Fetch,
                            lane,
                        };
                        if let Some(link) = self.links.current_ref(&key) {
                            self.on_link_lost(link);
                        }
                    }
                }
            }
        }
    }

    fn on_signal(&mut self, from: PeerId, signal: PeerSignal) {
        match signal {
            PeerSignal::Offer { sdp, content, lane } => self.accept_offer(from, sdp, content, lane),
            PeerSignal::Answer { sdp, lane } => {
                self.apply_answer(LinkKey::of_signal(from, Side::Serve, lane), sdp, None)
            }
            PeerSignal::ReadyAnswer { sdp, request } => {
                // Ready offers are for first connections.
                let key = LinkKey::of_signal(from, Side::Fetch, 0);
                if self.links.contains(&key) {
                    self.apply_answer(key, sdp, request);
                } else {
                    self.signaling.signal(
                        from,
                        &PeerSignal::Bye {
                            side: Side::Serve,
                            reason: "no ready offer of this peer waits for your answer; make an offer instead".into(),
                            lane: 0,
                        },
                    );
                }
            }
            PeerSignal::Ready { .. } => log_error(
                "a peer sent a ready offer directly; only the broker hands those out",
                &PeerError::Refused(format!("from {from}")),
            ),
            PeerSignal::Candidate {
                side,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                lane,
            } => {
                let key = LinkKey::of_signal(from, side, lane);
                if let Some(p) = self.links.get_mut(&key) {
                    p.link
                        .add_candidate(&candidate, sdp_mid.as_deref(), sdp_m_line_index);
                }
            }
            PeerSignal::Bye { side, lane, .. } => {
                let key = LinkKey::of_signal(from, side, lane);
                if let Some(link) = self.links.current_ref(&key) {
                    self.on_link_lost(link);
                }
            }
        }
    }
}
