//! Our WebRTC connections to other peers: making them (offer, answer,
//! ready offers answered), their events, and losing them. Each lives in a
//! [`LinkTable`] under its (peer, side, lane); every continuation holds a
//! [`LinkRef`] and reaches its connection only if it is still the one
//! under that key, so late work never touches a connection made since.

use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use protocol::download::{Conn, HolderId, Input};
use protocol::links::{
    idle_deadline, idle_expired, LinkKey, LinkRef, LinkTable, Refusal, ServingLink, Side,
};
use protocol::signaling::PeerSignal;
use protocol::transfer::{FrameKind, Read, Reader, Reply, Request, HEADER};
use protocol::{ContentId, PeerId};
use wasm_bindgen::JsCast;

use crate::error::{log_error, PeerError};
use crate::rtc::{Link, LinkEvent};

use super::clock::now;
use super::serve::Serving;
use super::{with_inner, Inner};

/// A serving connection whose channel never opened is dropped after this.
pub const SERVE_OPEN_TIMEOUT_MS: f64 = 30_000.0;

/// Every connection of this peer.
pub type Links = LinkTable<Peering>;

/// What a connection is for.
pub enum Role {
    /// We fetch this content over it.
    Fetch(ContentId),
    /// We serve whatever the other side asks for that we hold.
    Serve(Serving),
}

/// One connection and what it is for.
pub struct Peering {
    pub link: Link,
    pub role: Role,
    /// Reads what a holder sends us (frames and chunk streams).
    pub reader: Reader,
    pub created: f64,
    /// A request that came with a ready answer: served once the channel
    /// opens, without waiting for it to cross the channel.
    pub ahead: Option<Request>,
    /// Whether its channel opened (a received channel can report it twice).
    pub opened: bool,
    /// When the other side last asked for something or was sent something
    /// (serving links close when idle, see `protocol::links::SERVE_IDLE_MS`).
    pub last_active: f64,
}

impl Peering {
    pub fn new(link: Link, role: Role) -> Self {
        Peering {
            link,
            role,
            reader: Reader::default(),
            created: now(),
            ahead: None,
            opened: false,
            last_active: now(),
        }
    }
}

impl Peering {
    /// When this connection is dropped if its channel has not opened: only
    /// a serving one is (a fetching one times out in its download).
    fn open_deadline(&self, key: &LinkKey) -> Option<f64> {
        (key.side == Side::Serve && !self.link.is_open())
            .then_some(self.created + SERVE_OPEN_TIMEOUT_MS)
    }

    /// As `protocol::links::ServeGate` sees it, if it is a serving link.
    fn serving(&self, key: &LinkKey) -> Option<ServingLink> {
        let Role::Serve(serving) = &self.role else {
            return None;
        };
        let idle_since = (!serving.busy()).then_some(self.last_active as u64);
        Some(ServingLink {
            key: *key,
            idle_since,
        })
    }
}

/// The connection we fetch over from this holder, if it is a peer.
pub fn fetch_key(conn: Conn) -> Option<LinkKey> {
    Some(LinkKey {
        peer: conn.holder.peer()?,
        side: Side::Fetch,
        lane: conn.lane,
    })
}

/// The download's name for the holder at the other end of a fetch link.
pub fn conn_of(key: &LinkKey) -> Conn {
    Conn {
        holder: HolderId::Peer(key.peer),
        lane: key.lane,
    }
}

impl Inner {
    /// A link on the page's early connection if there is one, else on a new
    /// connection.
    pub(super) fn new_link(
        &mut self,
        offerer: bool,
        on_event: crate::rtc::OnEvent,
    ) -> Result<Link, PeerError> {
        let link = Link::new(
            &self.signaling.ice_servers,
            offerer,
            self.relay_only,
            self.spare.take(),
            on_event,
        )?;
        self.stats.connections_made += 1;
        Ok(link)
    }

    /// Makes a connection and adds it under `key`, its events going to
    /// `on_link_event` with its `LinkRef`; returns that and the
    /// `RTCPeerConnection`, or why it could not be made.
    fn add_link(
        &mut self,
        key: LinkKey,
        offerer: bool,
        role: Role,
    ) -> Result<(LinkRef, web_sys::RtcPeerConnection), PeerError> {
        let weak = self.me.clone();
        let target = Rc::new(std::cell::Cell::new(None::<LinkRef>));
        let on: crate::rtc::OnEvent = {
            let target = target.clone();
            Rc::new(move |ev: LinkEvent| {
                if let Some(link) = target.get() {
                    with_inner(&weak, move |i| i.on_link_event(link, ev));
                }
            })
        };
        let link = self.new_link(offerer, on)?;
        let pc = link.pc.clone();
        let link = self.links.insert(key, Peering::new(link, role));
        target.set(Some(link));
        Ok((link, pc))
    }

    /// Connects to a holder for `content`: answering the holder's ready
    /// offer if we have it (the first request rides on the answer, and the
    /// holder sends as soon as the channel opens), else making an offer.
    /// Whether the fetch link under `key` is another download's.
    pub(super) fn fetch_link_busy(&self, key: LinkKey, content: ContentId) -> bool {
        let link = self.links.get(&key);
        link.is_some_and(|p| matches!(p.role, Role::Fetch(other) if other != content))
    }

    pub(super) fn open_fetch_link(&mut self, content: ContentId, conn: Conn) {
        let Some(key) = fetch_key(conn) else {
            // Not a peer: reached another way, not over WebRTC.
            return self.drive(content, Input::Lost(conn));
        };
        let holder = key.peer;
        // One fetch link per holder and lane: another download's would be
        // replaced (and that download's chunks lost). This one goes on with
        // other holders (and a site's origin), and meets this holder again
        // when the broker next introduces it.
        if self.fetch_link_busy(key, content) {
            return self.drive(content, Input::Lost(conn));
        }
        // A ready offer is for a first connection.
        let ready_offer = match conn.lane {
            0 => self.offers_in_hand.remove(&holder),
            _ => None,
        };
        let (link, pc) = match self.add_link(key, ready_offer.is_none(), Role::Fetch(content)) {
            Ok(made) => made,
            Err(e) => {
                log_error("cannot create a connection", &e);
                return self.drive(content, Input::Lost(conn));
            }
        };
        if let Some(offer) = ready_offer {
            let request = self
                .fetches
                .get_mut(&content)
                .and_then(|f| f.download.request_ahead(conn.holder, now() as u64));
            return self.answer(link, pc, offer, move |sdp| PeerSignal::ReadyAnswer {
                sdp,
                request,
            });
        }
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::offer(pc).await;
            with_inner(&weak, move |i| {
                // The link may have been dropped while the offer was made.
                if i.links.current(&link).is_none() {
                    return;
                }
                match result {
                    Ok(sdp) => {
                        let lane = conn.lane;
                        i.signaling
                            .signal(holder, &PeerSignal::Offer { sdp, content, lane });
                        i.warm_up_once();
                    }
                    Err(e) => {
                        log_error("could not make an offer", &e);
                        i.on_link_lost(link);
                    }
                }
            });
        });
    }

    /// Applies `offer` on `link`, answers it and sends the answer (wrapped
    /// by `signal`) to the other peer.
    fn answer(
        &mut self,
        link: LinkRef,
        pc: web_sys::RtcPeerConnection,
        offer: String,
        signal: impl FnOnce(String) -> PeerSignal + 'static,
    ) {
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let remote_set = {
                let weak = weak.clone();
                move || {
                    with_inner(&weak, move |i| {
                        if let Some(p) = i.links.current_mut(&link) {
                            p.link.remote_ready();
                        }
                    })
                }
            };
            let result = Link::answer(pc, offer, remote_set).await;
            with_inner(&weak, move |i| {
                if i.links.current(&link).is_none() {
                    return;
                }
                match result {
                    Ok(answer) => {
                        i.signaling.signal(link.key.peer, &signal(answer));
                        if link.key.side == Side::Fetch {
                            i.warm_up_once();
                        }
                    }
                    Err(e) => {
                        log_error("could not answer", &e);
                        i.on_link_lost(link);
                    }
                }
            });
        });
    }

    /// Another peer wants `content` from us over a new connection: made
    /// only if `protocol::links::ServeGate` admits it, else refused with a
    /// `bye` that says why, before any `RTCPeerConnection` exists.
    pub(super) fn accept_offer(&mut self, from: PeerId, sdp: String, content: ContentId, lane: u8) {
        let key = LinkKey {
            peer: from,
            side: Side::Serve,
            lane,
        };
        let refusal = if self.held.contains_key(&content) {
            let serving = self.serving_view();
            match self.gate.admit(&key, &serving, now() as u64) {
                Ok(evict) => {
                    if let Some(idle) = evict {
                        self.stats.idle_closed += 1;
                        self.close_serving(idle, &Refusal::Evicted);
                    }
                    None
                }
                Err(why) => {
                    self.stats.offers_refused += 1;
                    Some(why.to_string())
                }
            }
        } else {
            Some(format!("this peer does not hold {content}"))
        };
        if let Some(reason) = refusal {
            let bye = PeerSignal::Bye {
                side: Side::Serve,
                reason,
                lane,
            };
            return self.signaling.signal(from, &bye);
        }
        match self.add_link(key, false, Role::Serve(Serving::default())) {
            Ok((link, pc)) => {
                self.answer(link, pc, sdp, move |sdp| PeerSignal::Answer { sdp, lane })
            }
            Err(e) => log_error("cannot create a connection", &e),
        }
    }

    /// The other side answered our offer (or our ready offer, then with
    /// its first request, `ahead`).
    pub(super) fn apply_answer(&mut self, key: LinkKey, sdp: String, ahead: Option<Request>) {
        let (Some(link), Some(p)) = (self.links.current_ref(&key), self.links.get_mut(&key)) else {
            return;
        };
        if ahead.is_some() {
            p.ahead = ahead;
        }
        let pc = p.link.pc.clone();
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::accept_answer(pc, sdp).await;
            with_inner(&weak, move |i| match result {
                Ok(()) => {
                    if let Some(p) = i.links.current_mut(&link) {
                        p.link.remote_ready();
                    }
                }
                Err(e) => {
                    if i.links.current(&link).is_some() {
                        log_error("bad answer", &e);
                        i.on_link_lost(link);
                    }
                }
            });
        });
    }

    pub(super) fn on_link_event(&mut self, link: LinkRef, ev: LinkEvent) {
        let key = link.key;
        match ev {
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                if self.links.current(&link).is_some() {
                    let signal = PeerSignal::Candidate {
                        side: key.side,
                        candidate,
                        sdp_mid,
                        sdp_m_line_index,
                        lane: key.lane,
                    };
                    self.signaling.signal(key.peer, &signal);
                }
            }
            LinkEvent::Channel(dc) => {
                if let Some(p) = self.links.current_mut(&link) {
                    p.link.attach(dc);
                    // A received channel is open already: no open event.
                    if p.link.is_open() {
                        self.on_link_event(link, LinkEvent::Open);
                    }
                }
            }
            LinkEvent::Open => self.on_open(link),
            LinkEvent::Message(data) => self.on_channel_message(link, data),
            LinkEvent::BufferLow => self.pump(link),
            LinkEvent::Closed => self.on_link_lost(link),
        }
    }

    fn on_open(&mut self, link: LinkRef) {
        let Some(p) = self.links.current_mut(&link) else {
            return;
        };
        if std::mem::replace(&mut p.opened, true) {
            return;
        }
        self.stats.channels_opened += 1;
        match &mut p.role {
            Role::Fetch(content) => {
                let content = *content;
                self.drive(content, Input::Opened(conn_of(&link.key)));
            }
            Role::Serve(serving) => {
                serving.opened(&p.link);
                if let Some(request) = p.ahead.take() {
                    self.serve(link, request);
                }
            }
        }
    }

    /// A connection failed or closed (or is to be dropped): it goes, and
    /// the download it served hears of it.
    pub(super) fn on_link_lost(&mut self, link: LinkRef) {
        let Some(p) = self.links.remove_current(&link) else {
            return;
        };
        if link.key.side == Side::Serve {
            // A slot is free: a ready offer refused as `Full` may go out.
            self.schedule_ready_offer();
        }
        if let Role::Fetch(content) = p.role {
            let conn = conn_of(&link.key);
            if let Some(fetch) = self.fetches.get_mut(&content) {
                fetch.arrivals.forget(&conn);
            }
            self.drive(content, Input::Lost(conn));
        }
    }

    fn on_channel_message(&mut self, link: LinkRef, data: wasm_bindgen::JsValue) {
        let Some(p) = self.links.current_mut(&link) else {
            return;
        };
        let fetching = match &p.role {
            Role::Fetch(c) => Some(*c),
            Role::Serve(_) => None,
        };
        let conn = conn_of(&link.key);
        if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
            let Some(content) = fetching else {
                log_error(
                    "cannot serve a peer",
                    &PeerError::Refused("a fetching peer sent binary data".into()),
                );
                return self.on_link_lost(link);
            };
            let len = buf.byte_length() as usize;
            // Only the header crosses into wasm; a chunk's payload stays
            // where it landed.
            let mut header = [0u8; HEADER];
            let head_len = len.min(HEADER);
            Uint8Array::new_with_byte_offset_and_length(buf, 0, head_len as u32)
                .copy_to(&mut header[..head_len]);
            match p.reader.read(&header[..head_len], len) {
                // A stream header: its bytes follow.
                Ok(None) => {}
                Ok(Some(Read { head, payload_at })) => {
                    self.stats.from_peers += head.len as u64;
                    if head.kind == FrameKind::Chunk {
                        let payload = Uint8Array::new_with_byte_offset_and_length(
                            buf,
                            payload_at as u32,
                            head.len,
                        );
                        self.on_chunk_frame(content, conn, head, &payload);
                    } else {
                        // The manifest (small).
                        let bytes = Uint8Array::new(buf).to_vec();
                        self.drive(content, Input::Frame(conn, &bytes));
                    }
                }
                Err(why) => self.drive(content, Input::BadFrame(conn, why)),
            }
        } else if let Some(text) = data.as_string() {
            match fetching {
                Some(content) => {
                    let reply = serde_json::from_str::<Reply>(&text).unwrap_or(Reply::Refused {
                        message: "unreadable reply".into(),
                    });
                    self.drive(content, Input::Reply(conn, reply));
                }
                None => self.serve_request(link, &text),
            }
        }
    }

    /// Drops the connections a download of `content` fetches over.
    pub(super) fn drop_fetch_links(&mut self, content: ContentId) {
        self.links
            .retain(|_, p| !matches!(p.role, Role::Fetch(c) if c == content));
    }

    /// Drops serving connections whose channel never opened.
    pub(super) fn drop_unopened(&mut self) {
        let t = now();
        self.links
            .retain(|k, p| p.open_deadline(k).is_none_or(|at| at > t));
    }

    /// When the oldest serving connection that has not opened is dropped.
    pub(super) fn unopened_deadline(&self) -> Option<f64> {
        self.links
            .iter()
            .filter_map(|(k, p)| p.open_deadline(k))
            .reduce(f64::min)
    }

    /// Every serving link, as `protocol::links::ServeGate` sees them.
    pub(super) fn serving_view(&self) -> Vec<ServingLink> {
        self.links
            .iter()
            .filter_map(|(k, p)| p.serving(k))
            .collect()
    }

    /// Closes the serving link under `key`, telling the other side `why`.
    pub(super) fn close_serving(&mut self, key: LinkKey, why: &Refusal) {
        let Some(link) = self.links.current_ref(&key) else {
            return;
        };
        let bye = PeerSignal::Bye {
            side: Side::Serve,
            reason: why.to_string(),
            lane: key.lane,
        };
        self.signaling.signal(key.peer, &bye);
        self.on_link_lost(link);
    }

    /// Closes serving links that asked for nothing for
    /// `protocol::links::SERVE_IDLE_MS`.
    pub(super) fn drop_idle(&mut self) {
        for key in idle_expired(&self.serving_view(), now() as u64) {
            self.stats.idle_closed += 1;
            self.close_serving(key, &Refusal::Idle);
        }
    }

    /// When the first serving link has been idle too long.
    pub(super) fn idle_deadline(&self) -> Option<f64> {
        idle_deadline(&self.serving_view()).map(|at| at as f64)
    }
}
