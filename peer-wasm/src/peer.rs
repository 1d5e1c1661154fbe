//! The peer's state and its reactions to the broker, to other peers and to
//! the clock. Single-threaded: everything lives in one `Rc<RefCell<Inner>>`
//! reached from event callbacks through a `Weak`, so dropping the `Peer`
//! tears everything down.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use gloo_timers::callback::{Interval, Timeout};
use js_sys::{ArrayBuffer, Function, Promise, Uint8Array};
use protocol::download::{Action, Conn, Download, Input, Status};
use protocol::signaling::PeerSignal;
use protocol::transfer::{
    Frame, FrameHead, FrameKind, Read, Reader, Reply, Request, HEADER, MAX_MESSAGE, MAX_PAYLOAD,
    MAX_PREFETCH, MAX_REQUEST_CHUNKS,
};
use protocol::{ClientMsg, ContentId, IceServer, Manifest, PeerId, ServerMsg};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::WebSocket;

use crate::arrivals::Arrivals;
use crate::broker::{BrokerEvent, BrokerSocket};
use crate::disk::{Disk, DiskSlot};
use crate::error::{log_error, PeerError};
use crate::events::{dispatch, Event};
use crate::hashing::{chunk_hash, digest_hash, hash_here, Hashing};
use crate::rtc::{Link, LinkEvent, HIGH_WATER};
use crate::store::{ChunkRead, Held, Parts, DISK_ABOVE};

/// Clock for timeouts: every download is ticked this often.
const TICK_MS: u32 = 500;
/// Progress alone is reported at most this often (the page redraws on
/// every report); other changes of a download's status at once.
const PROGRESS_MS: f64 = 100.0;
/// A serving connection whose channel never opened is dropped after this.
const SERVE_OPEN_TIMEOUT_MS: f64 = 30_000.0;
/// Longest wait for ICE gathering before a ready offer goes out as is.
const READY_GATHER_MS: u32 = 3_000;
/// After failing to make a ready offer, wait this long before trying again.
const READY_RETRY_MS: f64 = 5_000.0;
/// A ready offer is made this long after the need arises: creating a
/// connection costs the main thread a few milliseconds, which should not
/// delay showing fetched content or serving the wanter that just took the
/// previous offer.
const READY_DELAY_MS: u32 = 50;
/// Chunks read ahead (from files or stored parts) per serving link, so the
/// channel never waits for a read.
const READ_AHEAD: usize = 2;

/// Which connection: one per remote peer and direction, since two peers can
/// fetch from each other at the same time, and a second one to a holder of
/// big content (its lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    /// The other peer.
    pub peer: PeerId,
    /// Whether we fetch over this link (else we serve).
    pub fetching: bool,
    /// Which connection between the two of us (see `download::Conn`).
    pub lane: u8,
}

impl LinkKey {
    /// The link we fetch over.
    fn fetch(conn: Conn) -> Self {
        LinkKey {
            peer: conn.peer,
            fetching: true,
            lane: conn.lane,
        }
    }

    /// The link we serve over.
    fn serve(peer: PeerId, lane: u8) -> Self {
        LinkKey {
            peer,
            fetching: false,
            lane,
        }
    }

    /// The connection to a holder this link is, for the download.
    fn conn(&self) -> Conn {
        Conn {
            peer: self.peer,
            lane: self.lane,
        }
    }
}

enum Role {
    /// We fetch this content over the link.
    Fetch(ContentId),
    /// We serve whatever the other side asks for that we hold.
    Serve(Serving),
}

/// The serving side of a link.
#[derive(Default)]
struct Serving {
    /// What to send, in order.
    queue: VecDeque<Job>,
    /// Content whose availability the other side was told: it hears of
    /// each chunk we gain (`Reply::Got`).
    watching: Vec<ContentId>,
    /// Largest message of a chunk stream on this link, once known.
    max_message: Option<usize>,
}

struct Peering {
    link: Link,
    role: Role,
    /// Reads what a holder sends us (frames and chunk streams).
    reader: Reader,
    created: f64,
    /// A request that came with a ready answer: served once the channel
    /// opens, without waiting for it to cross the channel.
    ahead: Option<Request>,
    /// Whether its channel opened (a received channel can report it twice).
    opened: bool,
}

impl Peering {
    fn new(link: Link, role: Role) -> Self {
        Peering {
            link,
            role,
            reader: Reader::default(),
            created: now(),
            ahead: None,
            opened: false,
        }
    }
}

/// A connection offered in advance, for the next wanter the broker
/// introduces us to (see `ClientMsg::Ready`).
struct ReadyOffer {
    link: Link,
    /// The gathered offer, once made; sent to the broker.
    sdp: Option<String>,
    /// Where the link's events go once a wanter took the offer.
    target: Rc<Cell<Option<LinkKey>>>,
    /// Candidates found after the offer went out, for whoever takes it.
    late: Vec<PeerSignal>,
}

/// Something to send on a serving link, in order with the rest.
enum Job {
    /// What we have of this content (`Reply::Has`), as of when it is sent;
    /// from then on the other side hears of every chunk we gain.
    Has(ContentId, Rc<Held>),
    /// An object, frame by frame as the channel drains.
    Object {
        kind: FrameKind,
        index: u32,
        held: Rc<Held>,
        data: Loading,
        offset: usize,
        /// Whether its stream header is sent (chunks sent as a stream).
        announced: bool,
    },
}

/// The bytes of an object being sent.
enum Loading {
    /// Not asked for yet.
    Idle,
    /// Being read; the number tells reads apart.
    Reading(u64),
    /// In JavaScript memory.
    Ready(js_sys::Uint8Array),
}

struct Fetch {
    download: Download,
    /// Its chunks in transit.
    arrivals: Arrivals,
    waiters: Vec<oneshot::Sender<Rc<Held>>>,
    /// The status last reported, and when.
    shown: Option<Status>,
    shown_at: f64,
}

/// Payload bytes moved over data channels.
#[derive(Default, Clone, Copy)]
pub struct Stats {
    /// Received from other peers.
    pub from_peers: u64,
    /// Sent to other peers.
    pub to_peers: u64,
    /// Data channels that opened, fetching or serving.
    pub channels_opened: u64,
}

/// Everything a peer knows and owns.
pub struct Inner {
    me: Weak<RefCell<Inner>>,
    url: String,
    socket: BrokerSocket,
    id: Option<PeerId>,
    ice_servers: Vec<IceServer>,
    relay_only: bool,
    held: HashMap<ContentId, Rc<Held>>,
    fetches: HashMap<ContentId, Fetch>,
    links: HashMap<LinkKey, Peering>,
    counts: HashMap<ContentId, u32>,
    on_event: Option<Function>,
    stats: Stats,
    closed: bool,
    want_in_url: Option<ContentId>,
    warmed_up: bool,
    /// Where big downloads and shared files go, once opened (see
    /// `crate::disk`), and the opening (asked for once).
    disk: DiskSlot,
    disk_opening: Option<Promise>,
    tick: Option<Interval>,
    reconnect: Option<Timeout>,
    /// Our ready offer, while no wanter has taken it.
    ready: Option<ReadyOffer>,
    ready_timer: Option<Timeout>,
    ready_failed_at: f64,
    /// Holders' ready offers from introductions, until we answer them.
    offers_in_hand: HashMap<PeerId, String>,
    /// An unused connection the page made early, for the first link.
    spare: Option<web_sys::RtcPeerConnection>,
    /// Numbers chunk reads.
    reads: u64,
    /// Flip a byte in every chunk served (a dishonest holder, for tests).
    #[cfg(feature = "test-hooks")]
    pub corrupt_served: bool,
}

/// Runs `f` on the peer if it still exists. If the peer is busy (a browser
/// call re-entered us), `f` runs on the next microtask instead.
pub fn with_inner(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner) + 'static) {
    let Some(rc) = weak.upgrade() else { return };
    if let Ok(mut inner) = rc.try_borrow_mut() {
        f(&mut inner);
        return;
    }
    let weak = weak.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(rc) = weak.upgrade() {
            f(&mut rc.borrow_mut());
        }
    });
}

fn now() -> f64 {
    js_sys::Date::now()
}

impl Inner {
    /// A peer that will connect to the broker at `url` on the next
    /// microtask (so that fetches started right away ride on the upgrade
    /// request).
    pub fn create(url: String, relay_only: bool) -> Rc<RefCell<Inner>> {
        let rc = Self::build(url, relay_only);
        let weak = Rc::downgrade(&rc);
        wasm_bindgen_futures::spawn_local(async move { with_inner(&weak, Inner::connect) });
        rc
    }

    /// A peer that takes over a broker socket the page opened before the
    /// wasm loaded. `received` are the messages that already arrived on it
    /// (replayed on the next microtask); `wanted` is the address in its
    /// `?want=` query, whose download starts now so that the replayed
    /// introduction finds it. `spare` is a fresh connection for the first
    /// link.
    pub fn adopt(
        ws: WebSocket,
        received: Vec<String>,
        wanted: Option<ContentId>,
        relay_only: bool,
        spare: Option<web_sys::RtcPeerConnection>,
    ) -> Rc<RefCell<Inner>> {
        // Reconnect to the same endpoint, without the one-off query.
        let url = ws.url().split('?').next().unwrap_or_default().to_owned();
        let rc = Self::build(url, relay_only);
        {
            let mut inner = rc.borrow_mut();
            inner.spare = spare;
            if let Some(content) = wanted {
                inner.start_fetch(content);
            }
            inner.want_in_url = wanted;
            let on = inner.broker_callback();
            inner.socket.adopt(ws, on);
        }
        let weak = Rc::downgrade(&rc);
        wasm_bindgen_futures::spawn_local(async move {
            with_inner(&weak, move |inner| {
                for text in received {
                    inner.on_broker_event(BrokerEvent::Text(text));
                }
                // Closed before we listened: its close event is gone too.
                if inner.socket.is_closed() {
                    inner.on_broker_event(BrokerEvent::Closed(
                        "closed before the peer started".into(),
                    ));
                }
            })
        });
        rc
    }

    fn build(url: String, relay_only: bool) -> Rc<RefCell<Inner>> {
        let rc = Rc::new_cyclic(|me| {
            RefCell::new(Inner {
                me: me.clone(),
                url,
                socket: BrokerSocket::default(),
                id: None,
                ice_servers: Vec::new(),
                relay_only,
                held: HashMap::new(),
                fetches: HashMap::new(),
                links: HashMap::new(),
                counts: HashMap::new(),
                on_event: None,
                stats: Stats::default(),
                closed: false,
                want_in_url: None,
                warmed_up: false,
                disk: DiskSlot::default(),
                disk_opening: None,
                tick: None,
                reconnect: None,
                ready: None,
                ready_timer: None,
                ready_failed_at: f64::NEG_INFINITY,
                offers_in_hand: HashMap::new(),
                spare: None,
                reads: 0,
                #[cfg(feature = "test-hooks")]
                corrupt_served: false,
            })
        });
        let weak = Rc::downgrade(&rc);
        rc.borrow_mut().tick = Some(Interval::new(TICK_MS, move || {
            with_inner(&weak, Inner::on_tick)
        }));
        rc
    }

    // ----- API -----

    /// Sets the page's event handler.
    pub fn set_on_event(&mut self, f: Option<Function>) {
        self.on_event = f;
    }

    /// The id the broker gave this peer, while connected.
    pub fn id(&self) -> Option<PeerId> {
        self.id
    }

    /// Data-channel traffic so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Last known holder count of an address.
    pub fn holders(&self, content: &ContentId) -> Option<u32> {
        self.counts.get(content).copied()
    }

    /// The manifest of held or half-fetched content.
    pub fn manifest(&self, content: &ContentId) -> Option<Manifest> {
        self.held
            .get(content)
            .map(|h| h.manifest.clone())
            .or_else(|| {
                self.fetches
                    .get(content)
                    .and_then(|f| f.download.manifest().cloned())
            })
    }

    /// Holds `data` and announces it; returns its address.
    pub fn share(&mut self, data: Vec<u8>, media_type: &str, name: Option<&str>) -> ContentId {
        let (address, held) = Held::from_bytes(data, media_type, name);
        self.hold(address, held);
        address
    }

    /// Opens the disk store unless that was asked before; resolves once it
    /// is open in `disk`, or known to be unavailable.
    pub fn open_disk(&mut self) -> (Promise, DiskSlot) {
        let slot = self.disk.clone();
        let opening = self.disk_opening.get_or_insert_with(|| {
            let slot = slot.clone();
            wasm_bindgen_futures::future_to_promise(async move {
                let disk = Disk::open().await.map(Rc::new);
                *slot.borrow_mut() = disk;
                Ok(JsValue::UNDEFINED)
            })
        });
        (opening.clone(), slot)
    }

    /// Holds a file described by `manifest` (see `crate::hashing`), served
    /// from its copy in `copy` if it has one, and announces it; returns its
    /// address.
    pub fn share_file(
        &mut self,
        manifest: Manifest,
        file: web_sys::Blob,
        copy: Option<Parts>,
    ) -> ContentId {
        let held = Held::from_file(manifest, file, copy);
        let address = held.address();
        self.hold(address, held);
        address
    }

    /// Holds complete content.
    fn hold(&mut self, address: ContentId, held: Rc<Held>) {
        // Someone waiting for this very content gets it at once.
        self.finish_fetch(address, &held);
        let replaced = self.held.insert(address, held.clone()).is_some();
        if replaced {
            // Had part of it: whoever we told so learns it is all here now.
            let has = Reply::Has {
                content: address,
                chunks: held.availability(),
            };
            self.tell_watchers(address, &has);
        }
        self.socket.send(&ClientMsg::Hold { content: address });
        self.schedule_ready_offer();
    }

    /// Stops holding `content`.
    pub fn release(&mut self, content: &ContentId) {
        if self.held.remove(content).is_some() {
            self.socket.send(&ClientMsg::Release { content: *content });
        }
    }

    /// Starts (or joins) a download; the receiver gets the verified content.
    pub fn fetch(&mut self, content: ContentId) -> oneshot::Receiver<Rc<Held>> {
        let (tx, rx) = oneshot::channel();
        if let Some(held) = self.held.get(&content).filter(|h| h.is_complete()) {
            let _ = tx.send(held.clone());
            return rx;
        }
        if !self.fetches.contains_key(&content) {
            self.start_fetch(content);
        }
        let fetch = self.fetches.get_mut(&content).expect("started above");
        fetch.waiters.push(tx);
        // Whoever joins learns where the download stands.
        fetch.shown = None;
        self.emit_status(content);
        rx
    }

    fn start_fetch(&mut self, content: ContentId) {
        self.fetches.insert(
            content,
            Fetch {
                // Where this download starts in the content (see
                // `protocol::download::scheduler`).
                download: Download::new(
                    content,
                    now() as u64,
                    (js_sys::Math::random() * f64::from(u32::MAX)) as u32,
                ),
                arrivals: Arrivals::default(),
                waiters: Vec::new(),
                shown: None,
                shown_at: 0.0,
            },
        );
        // A want already on the socket's upgrade request is not repeated.
        if self.want_in_url != Some(content) {
            self.socket.send(&ClientMsg::Want {
                content,
                holders: None,
            });
        }
    }

    /// A link on the page's early connection if there is one, else on a new
    /// connection.
    fn new_link(
        &mut self,
        offerer: bool,
        on_event: crate::rtc::OnEvent,
    ) -> Result<Link, PeerError> {
        Link::new(
            &self.ice_servers,
            offerer,
            self.relay_only,
            self.spare.take(),
            on_event,
        )
    }

    /// Abandons a download; its promise rejects.
    pub fn cancel(&mut self, content: &ContentId) {
        if self.fetches.remove(content).is_some() {
            if self.want_in_url == Some(*content) {
                self.want_in_url = None;
            }
            self.socket.send(&ClientMsg::Unwant { content: *content });
            self.links
                .retain(|_, p| !matches!(p.role, Role::Fetch(c) if c == *content));
            // What arrived so far is not kept.
            if self.held.get(content).is_some_and(|h| !h.is_complete()) {
                self.release(content);
            }
        }
    }

    /// Closes everything; the peer stays silent afterwards.
    pub fn close(&mut self) {
        self.closed = true;
        self.socket.close();
        self.links.clear();
        self.fetches.clear();
        self.ready = None;
        self.ready_timer = None;
        self.offers_in_hand.clear();
        if let Some(pc) = self.spare.take() {
            pc.close();
        }
        self.tick = None;
        self.reconnect = None;
    }

    // ----- broker -----

    fn connect(&mut self) {
        if self.closed {
            return;
        }
        // Riding the first want on the upgrade request saves a round trip
        // when a share link is opened.
        self.want_in_url = self.fetches.keys().next().copied();
        let url = match self.want_in_url {
            Some(c) => format!("{}?want={c}", self.url),
            None => self.url.clone(),
        };
        if let Err(e) = self.socket.open(&url, self.broker_callback()) {
            log_error("cannot open the broker socket", &e);
            self.schedule_reconnect();
        }
    }

    fn broker_callback(&self) -> crate::broker::OnEvent {
        let weak = self.me.clone();
        Rc::new(move |ev: BrokerEvent| with_inner(&weak, move |i| i.on_broker_event(ev)))
    }

    fn schedule_reconnect(&mut self) {
        if self.closed {
            return;
        }
        let delay = self.socket.next_delay();
        let weak = self.me.clone();
        self.reconnect = Some(Timeout::new(delay, move || {
            with_inner(&weak, Inner::connect)
        }));
    }

    fn on_broker_event(&mut self, ev: BrokerEvent) {
        match ev {
            BrokerEvent::Text(text) => match serde_json::from_str::<ServerMsg>(&text) {
                Ok(msg) => self.on_server_msg(msg),
                Err(e) => log_error(
                    "unreadable message from the broker",
                    &PeerError::Refused(e.to_string()),
                ),
            },
            BrokerEvent::Closed(reason) => {
                if self.id.take().is_some() {
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
                self.id = Some(id);
                self.ice_servers = ice_servers;
                self.socket.reset_backoff();
                self.emit(Event::Connected(id.to_string()));
                // After a reconnect the broker knows nothing of us: announce
                // again what we hold and want (the ready offer first, so the
                // first wanter gets it).
                self.publish_ready_offer();
                for content in self.held.keys() {
                    self.socket.send(&ClientMsg::Hold { content: *content });
                }
                for content in self.fetches.keys() {
                    if Some(*content) != self.want_in_url {
                        self.socket.send(&ClientMsg::Want {
                            content: *content,
                            holders: None,
                        });
                    }
                }
                self.schedule_ready_offer();
            }
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
                self.drive(content, Input::Introduced(holder));
                // Not needed (e.g. already connected to that holder); the
                // holder drops its side when it never opens.
                self.offers_in_hand.remove(&holder);
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
                        let key = LinkKey::fetch(Conn { peer, lane });
                        self.on_link_lost(key, message.clone());
                    }
                }
            }
        }
    }

    fn send_signal(&self, to: PeerId, signal: &PeerSignal) {
        let data = serde_json::value::to_raw_value(signal).expect("signals serialize");
        self.socket.send(&ClientMsg::Signal { to, data });
    }

    fn on_signal(&mut self, from: PeerId, signal: PeerSignal) {
        match signal {
            PeerSignal::Offer { sdp, content, lane } => self.accept_offer(from, sdp, content, lane),
            PeerSignal::Answer { sdp, lane } => {
                self.apply_answer(LinkKey::fetch(Conn { peer: from, lane }), sdp)
            }
            PeerSignal::ReadyAnswer { sdp, request } => {
                // Ready offers are for first connections.
                let key = LinkKey::serve(from, 0);
                match self.links.get_mut(&key) {
                    Some(p) => {
                        p.ahead = request;
                        self.apply_answer(key, sdp);
                    }
                    None => self.send_signal(
                        from,
                        &PeerSignal::Bye {
                            fetcher: false,
                            reason: "no ready offer of this peer waits for your answer; make an offer instead".into(),
                            lane: 0,
                        },
                    ),
                }
            }
            PeerSignal::Ready { .. } => log_error(
                "a peer sent a ready offer directly; only the broker hands those out",
                &PeerError::Refused(format!("from {from}")),
            ),
            PeerSignal::Candidate {
                fetcher,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                lane,
            } => {
                let key = LinkKey {
                    peer: from,
                    fetching: !fetcher,
                    lane,
                };
                if let Some(p) = self.links.get_mut(&key) {
                    p.link
                        .add_candidate(&candidate, sdp_mid.as_deref(), sdp_m_line_index);
                }
            }
            PeerSignal::Bye {
                fetcher,
                reason,
                lane,
            } => {
                self.on_link_lost(
                    LinkKey {
                        peer: from,
                        fetching: !fetcher,
                        lane,
                    },
                    reason,
                );
            }
        }
    }

    fn apply_answer(&mut self, key: LinkKey, sdp: String) {
        let Some(p) = self.links.get(&key) else {
            return;
        };
        let pc = p.link.pc.clone();
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::accept_answer(pc, sdp).await;
            with_inner(&weak, move |i| match result {
                Ok(()) => {
                    if let Some(p) = i.links.get_mut(&key) {
                        p.link.remote_ready();
                    }
                }
                Err(e) => i.on_link_lost(key, format!("bad answer: {e}")),
            });
        });
    }

    // ----- ready offers -----

    /// Whether a ready offer should be made now: we hold something, are
    /// connected, have none, and did not just fail to make one.
    fn needs_ready_offer(&self) -> bool {
        !self.closed
            && self.ready.is_none()
            && !self.held.is_empty()
            && self.id.is_some()
            && now() - self.ready_failed_at >= READY_RETRY_MS
    }

    fn schedule_ready_offer(&mut self) {
        if self.ready_timer.is_none() && self.needs_ready_offer() {
            let weak = self.me.clone();
            self.ready_timer = Some(Timeout::new(READY_DELAY_MS, move || {
                with_inner(&weak, |i| {
                    i.ready_timer = None;
                    i.prepare_ready_offer();
                })
            }));
        }
    }

    /// Makes an offer in advance, while we hold something, so the next
    /// wanter can answer it at once instead of making its own.
    fn prepare_ready_offer(&mut self) {
        if !self.needs_ready_offer() {
            return;
        }
        let target: Rc<Cell<Option<LinkKey>>> = Rc::default();
        let on: crate::rtc::OnEvent = {
            let (weak, target) = (self.me.clone(), target.clone());
            Rc::new(move |ev: LinkEvent| {
                let to = target.get();
                with_inner(&weak, move |i| match to {
                    Some(key) => i.on_link_event(key, ev),
                    None => i.on_ready_event(ev),
                })
            })
        };
        let link = match self.new_link(true, on) {
            Ok(link) => link,
            Err(e) => {
                self.ready_failed_at = now();
                return log_error("cannot prepare a ready offer", &e);
            }
        };
        let pc = link.pc.clone();
        self.ready = Some(ReadyOffer {
            link,
            sdp: None,
            target,
            late: Vec::new(),
        });
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::gathered_offer(pc.clone(), READY_GATHER_MS).await;
            with_inner(&weak, move |i| {
                let Some(ready) = i.ready.as_mut().filter(|r| r.link.pc == pc) else {
                    return;
                };
                match result {
                    Ok(sdp) => {
                        ready.sdp = Some(sdp);
                        i.publish_ready_offer();
                    }
                    Err(e) => {
                        i.ready = None;
                        i.ready_failed_at = now();
                        log_error("cannot prepare a ready offer", &e);
                    }
                }
            });
        });
    }

    fn publish_ready_offer(&self) {
        if let Some(sdp) = self.ready.as_ref().and_then(|r| r.sdp.clone()) {
            let data = serde_json::value::to_raw_value(&PeerSignal::Ready { sdp })
                .expect("signals serialize");
            self.socket.send(&ClientMsg::Ready { data });
        }
    }

    fn on_ready_event(&mut self, ev: LinkEvent) {
        let Some(ready) = self.ready.as_mut() else {
            return;
        };
        match ev {
            // Candidates found before the offer went out are in its SDP.
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } if ready.sdp.is_some() => ready.late.push(PeerSignal::Candidate {
                fetcher: false,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                lane: 0,
            }),
            LinkEvent::Closed(_) => {
                // Unusable now; the broker's copy fails its taker, which
                // then asks for another holder. Make a fresh one.
                self.ready = None;
                self.schedule_ready_offer();
            }
            _ => {}
        }
    }

    /// The broker handed our ready offer to `by`: the connection becomes a
    /// serving link to it, and a fresh offer waits for the next wanter.
    fn on_offer_taken(&mut self, by: PeerId) {
        let Some(ready) = self.ready.take() else {
            return;
        };
        let key = LinkKey::serve(by, 0);
        // Already serving `by` on another link: it will not answer this one.
        if let std::collections::hash_map::Entry::Vacant(slot) = self.links.entry(key) {
            ready.target.set(Some(key));
            slot.insert(Peering::new(ready.link, Role::Serve(Serving::default())));
            for candidate in &ready.late {
                self.send_signal(by, candidate);
            }
        }
        self.schedule_ready_offer();
    }

    // ----- links -----

    fn link_callback(&self, key: LinkKey) -> crate::rtc::OnEvent {
        let weak = self.me.clone();
        Rc::new(move |ev: LinkEvent| with_inner(&weak, move |i| i.on_link_event(key, ev)))
    }

    /// Connects to `holder` for `content`: answering the holder's ready
    /// offer if we have it (the first request rides on the answer, and the
    /// holder sends as soon as the channel opens), else making an offer.
    fn open_fetch_link(&mut self, content: ContentId, conn: Conn) {
        let key = LinkKey::fetch(conn);
        let holder = conn.peer;
        // A ready offer is for a first connection.
        let ready_offer = match conn.lane {
            0 => self.offers_in_hand.remove(&holder),
            _ => None,
        };
        let link = match self.new_link(ready_offer.is_none(), self.link_callback(key)) {
            Ok(link) => link,
            Err(e) => {
                self.drive(content, Input::Lost(conn, e.to_string()));
                return;
            }
        };
        let pc = link.pc.clone();
        self.links
            .insert(key, Peering::new(link, Role::Fetch(content)));
        if let Some(offer) = ready_offer {
            let request = self
                .fetches
                .get_mut(&content)
                .and_then(|f| f.download.request_ahead(holder, now() as u64));
            self.answer(key, pc, offer, move |sdp| PeerSignal::ReadyAnswer {
                sdp,
                request,
            });
            return;
        }
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::offer(pc.clone()).await;
            with_inner(&weak, move |i| {
                // The link may have been dropped while the offer was made.
                let current = i.links.get(&key).is_some_and(|p| p.link.pc == pc);
                match result {
                    Ok(sdp) if current => {
                        let lane = conn.lane;
                        i.send_signal(holder, &PeerSignal::Offer { sdp, content, lane });
                        i.warm_up_once();
                    }
                    Ok(_) => {}
                    Err(e) => i.on_link_lost(key, format!("could not make an offer: {e}")),
                }
            });
        });
    }

    /// Applies `offer` on the link `key`, answers it and sends the answer
    /// (wrapped by `signal`) to the other peer.
    fn answer(
        &mut self,
        key: LinkKey,
        pc: web_sys::RtcPeerConnection,
        offer: String,
        signal: impl FnOnce(String) -> PeerSignal + 'static,
    ) {
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let ready = {
                let (weak, pc) = (weak.clone(), pc.clone());
                move || {
                    with_inner(&weak, move |i| {
                        if let Some(p) = i.links.get_mut(&key).filter(|p| p.link.pc == pc) {
                            p.link.remote_ready();
                        }
                    })
                }
            };
            let result = Link::answer(pc.clone(), offer, ready).await;
            with_inner(&weak, move |i| {
                if !i.links.get(&key).is_some_and(|p| p.link.pc == pc) {
                    return;
                }
                match result {
                    Ok(answer) => {
                        i.send_signal(key.peer, &signal(answer));
                        if key.fetching {
                            i.warm_up_once();
                        }
                    }
                    Err(e) => i.on_link_lost(key, format!("could not answer: {e}")),
                }
            });
        });
    }

    fn accept_offer(&mut self, from: PeerId, sdp: String, content: ContentId, lane: u8) {
        if !self.held.contains_key(&content) {
            self.send_signal(
                from,
                &PeerSignal::Bye {
                    fetcher: false,
                    reason: format!("this peer does not hold {content}"),
                    lane,
                },
            );
            return;
        }
        let key = LinkKey::serve(from, lane);
        let link = match self.new_link(false, self.link_callback(key)) {
            Ok(link) => link,
            Err(e) => return log_error("cannot create a connection", &e),
        };
        let pc = link.pc.clone();
        self.links
            .insert(key, Peering::new(link, Role::Serve(Serving::default())));
        self.answer(key, pc, sdp, move |sdp| PeerSignal::Answer { sdp, lane });
    }

    fn on_link_event(&mut self, key: LinkKey, ev: LinkEvent) {
        match ev {
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => self.send_signal(
                key.peer,
                &PeerSignal::Candidate {
                    fetcher: key.fetching,
                    candidate,
                    sdp_mid,
                    sdp_m_line_index,
                    lane: key.lane,
                },
            ),
            LinkEvent::Channel(dc) => {
                if let Some(p) = self.links.get_mut(&key) {
                    p.link.attach(dc);
                    // A received channel is open already: no open event.
                    if p.link.is_open() {
                        self.on_link_event(key, LinkEvent::Open);
                    }
                }
            }
            LinkEvent::Open => {
                let Some(p) = self.links.get_mut(&key) else {
                    return;
                };
                if std::mem::replace(&mut p.opened, true) {
                    return;
                }
                let fetching = match p.role {
                    Role::Fetch(content) => Some(content),
                    Role::Serve(_) => None,
                };
                let ahead = p.ahead.take();
                self.stats.channels_opened += 1;
                if let Some(content) = fetching {
                    self.drive(content, Input::Opened(key.conn()));
                } else if let Some(request) = ahead {
                    self.serve(key, request);
                }
            }
            LinkEvent::Message(data) => self.on_channel_message(key, data),
            LinkEvent::BufferLow => self.pump(key),
            LinkEvent::Closed(reason) => self.on_link_lost(key, reason),
        }
    }

    fn on_link_lost(&mut self, key: LinkKey, reason: String) {
        if let Some(p) = self.links.remove(&key) {
            if let Role::Fetch(content) = p.role {
                if let Some(fetch) = self.fetches.get_mut(&content) {
                    fetch.arrivals.forget(&key.conn());
                }
                self.drive(content, Input::Lost(key.conn(), reason));
            }
        }
    }

    fn on_channel_message(&mut self, key: LinkKey, data: wasm_bindgen::JsValue) {
        let Some(peering) = self.links.get(&key) else {
            return;
        };
        let role_content = match &peering.role {
            Role::Fetch(c) => Some(*c),
            Role::Serve(_) => None,
        };
        if let Some(buf) = data.dyn_ref::<ArrayBuffer>() {
            let Some(content) = role_content else {
                return self.on_link_lost(key, "a fetching peer sent binary data".into());
            };
            let len = buf.byte_length() as usize;
            // Only the header crosses into wasm; a chunk's payload stays
            // where it landed.
            let mut header = [0u8; HEADER];
            let head_len = len.min(HEADER);
            Uint8Array::new_with_byte_offset_and_length(buf, 0, head_len as u32)
                .copy_to(&mut header[..head_len]);
            let read = match self.links.get_mut(&key) {
                Some(p) => p.reader.read(&header[..head_len], len),
                None => return,
            };
            match read {
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
                        self.on_chunk_frame(content, key.conn(), head, &payload);
                    } else {
                        // The manifest (small).
                        let bytes = Uint8Array::new(buf).to_vec();
                        self.drive(content, Input::Frame(key.conn(), &bytes));
                    }
                }
                Err(why) => self.drive(content, Input::BadFrame(key.conn(), why)),
            }
        } else if let Some(text) = data.as_string() {
            match role_content {
                Some(content) => match serde_json::from_str::<Reply>(&text) {
                    Ok(reply) => self.drive(content, Input::Reply(key.conn(), reply)),
                    Err(_) => self.drive(
                        content,
                        Input::Reply(
                            key.conn(),
                            Reply::Refused {
                                message: "unreadable reply".into(),
                            },
                        ),
                    ),
                },
                None => self.serve_request(key, &text),
            }
        }
    }

    // ----- serving -----

    fn reply(&self, key: LinkKey, reply: &Reply) {
        if let Some(dc) = self.links.get(&key).and_then(|p| p.link.channel.as_ref()) {
            let _ = dc.send_with_str(&serde_json::to_string(reply).expect("replies serialize"));
        }
    }

    /// Tells every link watching `content` (see `Serving::watching`).
    fn tell_watchers(&self, content: ContentId, reply: &Reply) {
        let text = serde_json::to_string(reply).expect("replies serialize");
        for p in self.links.values() {
            if let Role::Serve(s) = &p.role {
                if s.watching.contains(&content) {
                    if let Some(dc) = p.link.channel.as_ref() {
                        let _ = dc.send_with_str(&text);
                    }
                }
            }
        }
    }

    fn serve_request(&mut self, key: LinkKey, text: &str) {
        match serde_json::from_str::<Request>(text) {
            Ok(request) => self.serve(key, request),
            Err(e) => self.reply(
                key,
                &Reply::Refused {
                    message: format!("unreadable request: {e}"),
                },
            ),
        }
    }

    fn serve(&mut self, key: LinkKey, request: Request) {
        let content = match &request {
            Request::Manifest { content, .. }
            | Request::Has { content }
            | Request::Chunks { content, .. } => *content,
        };
        let Some(held) = self.held.get(&content).cloned() else {
            return self.reply(key, &Reply::Missing { content });
        };
        let object = |kind, index| Job::Object {
            kind,
            index,
            held: held.clone(),
            data: Loading::Idle,
            offset: 0,
            announced: false,
        };
        let jobs = match request {
            Request::Manifest { prefetch, .. } => {
                let leading = prefetch.min(MAX_PREFETCH).min(held.manifest.chunk_count());
                let mut jobs = vec![
                    object(FrameKind::Manifest, 0),
                    Job::Has(content, held.clone()),
                ];
                jobs.extend(
                    (0..leading)
                        .filter(|&i| held.has(i))
                        .map(|i| object(FrameKind::Chunk, i)),
                );
                jobs
            }
            Request::Has { .. } => vec![Job::Has(content, held.clone())],
            Request::Chunks { indices, .. } => {
                if indices.len() > MAX_REQUEST_CHUNKS {
                    return self.reply(
                        key,
                        &Reply::Refused {
                            message: format!("at most {MAX_REQUEST_CHUNKS} chunks per request"),
                        },
                    );
                }
                if let Some(i) = indices.iter().find(|&&i| !held.has(i)) {
                    let message = if *i >= held.manifest.chunk_count() {
                        format!("chunk {i} is out of range")
                    } else {
                        format!("chunk {i} is not here (yet): ask for chunks this peer said it has")
                    };
                    return self.reply(key, &Reply::Refused { message });
                }
                indices
                    .into_iter()
                    .map(|i| object(FrameKind::Chunk, i))
                    .collect()
            }
        };
        if let Some(Peering {
            role: Role::Serve(serving),
            ..
        }) = self.links.get_mut(&key)
        {
            serving.queue.extend(jobs);
        }
        self.pump(key);
    }

    /// Sends queued messages until the channel's buffer is full (resuming
    /// on `bufferedamountlow`) or the next object is still being read
    /// (resuming when the read completes), and starts the next reads.
    fn pump(&mut self, key: LinkKey) {
        // Objects in memory are ready as soon as their read starts.
        while self.send_queued(key) && self.read_ahead(key) {}
    }

    /// Sends what is ready; false if the link cannot send now.
    fn send_queued(&mut self, key: LinkKey) -> bool {
        let Some(peering) = self.links.get_mut(&key) else {
            return false;
        };
        let Role::Serve(serving) = &mut peering.role else {
            return false;
        };
        let link = &peering.link;
        if !link.is_open() {
            return false;
        }
        let Some(dc) = link.channel.clone() else {
            return false;
        };
        while link.buffered() < HIGH_WATER {
            let Some(job) = serving.queue.front_mut() else {
                break;
            };
            match job {
                Job::Has(content, held) => {
                    let has = Reply::Has {
                        content: *content,
                        chunks: held.availability(),
                    };
                    let text = serde_json::to_string(&has).expect("replies serialize");
                    if dc.send_with_str(&text).is_err() {
                        break;
                    }
                    if !serving.watching.contains(content) {
                        serving.watching.push(*content);
                    }
                    serving.queue.pop_front();
                }
                Job::Object {
                    kind,
                    index,
                    data: Loading::Ready(bytes),
                    offset,
                    announced,
                    ..
                } => {
                    let total = bytes.length() as usize;
                    // Chunks of more than a frame go as a stream of views
                    // of the bytes read (see `protocol::transfer`).
                    let streamed = *kind == FrameKind::Chunk && total > MAX_PAYLOAD;
                    let (message, end) = if streamed {
                        // Once only: after the header, the other side
                        // reads every message as this chunk's bytes.
                        if !*announced {
                            if dc
                                .send_with_u8_array(&Frame::stream_header(*index, total))
                                .is_err()
                            {
                                break;
                            }
                            *announced = true;
                        }
                        let max = *serving
                            .max_message
                            .get_or_insert_with(|| link.max_message(MAX_MESSAGE));
                        let end = (*offset + max).min(total);
                        (bytes.subarray(*offset as u32, end as u32), end)
                    } else {
                        let end = (*offset + MAX_PAYLOAD).min(total);
                        let frame =
                            js_sys::Uint8Array::new_with_length((HEADER + end - *offset) as u32);
                        frame
                            .subarray(0, HEADER as u32)
                            .copy_from(&Frame::header(*kind, *index, *offset, total));
                        frame.set(&bytes.subarray(*offset as u32, end as u32), HEADER as u32);
                        (frame, end)
                    };
                    #[cfg(feature = "test-hooks")]
                    let message =
                        if self.corrupt_served && *kind == FrameKind::Chunk && end > *offset {
                            // A copy: the bytes read may be kept and served again.
                            let bad = message.slice(0, message.length());
                            let last = bad.length() - 1;
                            bad.set_index(last, bad.get_index(last) ^ 0xff);
                            bad
                        } else {
                            message
                        };
                    if dc.send_with_array_buffer_view(&message).is_err() {
                        break;
                    }
                    self.stats.to_peers += (end - *offset) as u64;
                    *offset = end;
                    if end >= total {
                        serving.queue.pop_front();
                    }
                }
                // Waits for its read.
                Job::Object { .. } => break,
            }
        }
        link.buffered() < HIGH_WATER
    }

    /// Starts reading the next few queued objects; true if one of them is
    /// ready at once (it was in memory).
    fn read_ahead(&mut self, key: LinkKey) -> bool {
        let Some(Peering {
            role: Role::Serve(serving),
            ..
        }) = self.links.get_mut(&key)
        else {
            return false;
        };
        let mut failed = None;
        let mut ready = false;
        let objects = serving
            .queue
            .iter_mut()
            .filter(|j| matches!(j, Job::Object { .. }))
            .take(READ_AHEAD);
        for job in objects {
            let Job::Object {
                kind,
                index,
                held,
                data,
                ..
            } = job
            else {
                continue;
            };
            if !matches!(data, Loading::Idle) {
                continue;
            }
            let read = match kind {
                FrameKind::Manifest => Ok(ChunkRead::Ready(js_sys::Uint8Array::from(
                    held.manifest_bytes.as_slice(),
                ))),
                FrameKind::Chunk => held.read_chunk(*index),
            };
            match read {
                Ok(ChunkRead::Ready(bytes)) => {
                    *data = Loading::Ready(bytes);
                    ready = true;
                }
                Ok(ChunkRead::Pending { read, at, len }) => {
                    self.reads += 1;
                    let id = self.reads;
                    *data = Loading::Reading(id);
                    let weak = self.me.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let result =
                            wasm_bindgen_futures::JsFuture::from(read)
                                .await
                                .and_then(|span| {
                                    let span: ArrayBuffer = span.dyn_into()?;
                                    Ok(Uint8Array::new_with_byte_offset_and_length(&span, at, len))
                                });
                        with_inner(&weak, move |i| i.on_read(key, id, result));
                    });
                }
                Err(e) => {
                    failed = Some(format!("cannot read chunk {index}: {e}"));
                    break;
                }
            }
        }
        if let Some(message) = failed {
            self.fail_serving(key, message);
            return false;
        }
        ready
    }

    /// A chunk read finished: send it, or give up serving this link.
    fn on_read(
        &mut self,
        key: LinkKey,
        id: u64,
        result: Result<Uint8Array, wasm_bindgen::JsValue>,
    ) {
        let Some(Peering {
            role: Role::Serve(serving),
            ..
        }) = self.links.get_mut(&key)
        else {
            return;
        };
        let job = serving
            .queue
            .iter_mut()
            .find(|j| matches!(j, Job::Object { data: Loading::Reading(n), .. } if *n == id));
        let Some(Job::Object { data, index, .. }) = job else {
            return;
        };
        match result {
            Ok(bytes) => {
                *data = Loading::Ready(bytes);
                self.pump(key);
            }
            Err(e) => {
                let message = format!("cannot read chunk {index}: {}", PeerError::Js(e));
                self.fail_serving(key, message);
            }
        }
    }

    /// Stops serving a link whose content cannot be read (e.g. a shared
    /// file that changed on disk): the other side is told and moves on.
    fn fail_serving(&mut self, key: LinkKey, message: String) {
        log_error("cannot serve a peer", &PeerError::Refused(message.clone()));
        if let Some(Peering {
            role: Role::Serve(serving),
            ..
        }) = self.links.get_mut(&key)
        {
            serving.queue.clear();
        }
        self.reply(key, &Reply::Refused { message });
    }

    // ----- downloads -----

    /// Feeds `input` to the download of `content` and carries out what it
    /// decides.
    fn drive(&mut self, content: ContentId, input: Input<'_>) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            // Not fetching (done or cancelled): close stray links.
            match input {
                Input::Introduced(peer) => {
                    self.links.remove(&LinkKey::fetch(Conn::first(peer)));
                }
                Input::Opened(conn) => {
                    self.links.remove(&LinkKey::fetch(conn));
                }
                _ => {}
            }
            return;
        };
        let actions = fetch.download.handle(input, now() as u64);
        self.run(content, actions);
        self.emit_status(content);
    }

    /// A chunk frame: the download checks its header and says where its
    /// payload goes.
    fn on_chunk_frame(
        &mut self,
        content: ContentId,
        conn: Conn,
        head: FrameHead,
        payload: &Uint8Array,
    ) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        let actions = fetch
            .download
            .handle(Input::ChunkFrame(conn, head), now() as u64);
        for action in &actions {
            if let Action::Keep { conn, offset, .. } = action {
                fetch.arrivals.keep(*conn, *offset, head.total, payload);
            }
        }
        self.run(content, actions);
        self.emit_status(content);
    }

    /// WebCrypto hashed chunk `index`.
    fn on_digest(
        &mut self,
        content: ContentId,
        index: u32,
        digest: Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>,
    ) {
        let Some(fetch) = self.fetches.get(&content) else {
            return;
        };
        let hash = match digest.map_err(PeerError::Js).and_then(|d| digest_hash(&d)) {
            Ok(hash) => hash,
            // WebCrypto failed: hash here instead.
            Err(_) => match fetch.arrivals.waiting(index) {
                Some(bytes) => hash_here(bytes),
                None => return,
            },
        };
        self.drive(content, Input::Hashed { index, hash });
    }

    fn run(&mut self, content: ContentId, actions: Vec<Action>) {
        // Hashes computed at once are fed back after these actions.
        let mut hashed = Vec::new();
        for action in actions {
            match action {
                // Done by `on_chunk_frame`, which has the payload.
                Action::Keep { .. } => {}
                Action::Verify { conn, index } => {
                    let Some(bytes) = self
                        .fetches
                        .get_mut(&content)
                        .and_then(|f| f.arrivals.whole(conn, index))
                    else {
                        continue;
                    };
                    match chunk_hash(&bytes) {
                        Hashing::Done(hash) => hashed.push(Input::Hashed { index, hash }),
                        Hashing::Pending(promise) => {
                            let weak = self.me.clone();
                            wasm_bindgen_futures::spawn_local(async move {
                                let digest = wasm_bindgen_futures::JsFuture::from(promise).await;
                                with_inner(&weak, move |i| i.on_digest(content, index, digest));
                            });
                        }
                    }
                }
                Action::Discard { index } => {
                    if let Some(fetch) = self.fetches.get_mut(&content) {
                        fetch.arrivals.take(index);
                    }
                }
                Action::Connect(conn) => self.open_fetch_link(content, conn),
                Action::Send(conn, request) => {
                    let key = LinkKey::fetch(conn);
                    if let Some(dc) = self.links.get(&key).and_then(|p| p.link.channel.as_ref()) {
                        let text = serde_json::to_string(&request).expect("requests serialize");
                        let _ = dc.send_with_str(&text);
                    }
                }
                Action::Disconnect { conn, reason } => {
                    self.links.remove(&LinkKey::fetch(conn));
                    if let Some(fetch) = self.fetches.get_mut(&content) {
                        fetch.arrivals.forget(&conn);
                    }
                    if let Some(reason) = reason {
                        self.emit(Event::Warning(
                            content,
                            format!("dropped a holder: {reason}"),
                        ));
                    }
                }
                Action::Want(n) => {
                    self.socket.send(&ClientMsg::Want {
                        content,
                        holders: Some(n),
                    });
                }
                Action::Manifest {
                    manifest,
                    manifest_bytes,
                } => {
                    // From now on we serve what we have of it, and say so.
                    if manifest.size > DISK_ABOVE {
                        // Batches made before it opens stay in memory.
                        let _ = self.open_disk();
                    }
                    let held = Held::receiving(manifest, manifest_bytes, &self.disk);
                    self.held.insert(content, held);
                    self.socket.send(&ClientMsg::Hold { content });
                    self.schedule_ready_offer();
                }
                Action::Store { index } => {
                    let bytes = self
                        .fetches
                        .get_mut(&content)
                        .and_then(|f| f.arrivals.take(index));
                    let (Some(held), Some(bytes)) = (self.held.get(&content), bytes) else {
                        continue;
                    };
                    if let Err(e) = held.store(index, bytes) {
                        // The browser refused the bytes (out of memory or
                        // disk): nothing can be kept, so stop here.
                        let message = format!(
                            "cannot keep the content: {e}; free some memory or disk space and open the link again"
                        );
                        self.emit(Event::Warning(content, message));
                        // Its promises reject.
                        self.cancel(&content);
                        return;
                    }
                    self.tell_watchers(content, &Reply::Got { content, index });
                }
                Action::Complete => self.complete(content),
            }
        }
        for input in hashed {
            self.drive(content, input);
        }
    }

    /// Every chunk is stored: the content we hold (since its manifest)
    /// is complete.
    fn complete(&mut self, content: ContentId) {
        if let Some(held) = self.held.get(&content).cloned() {
            self.finish_fetch(content, &held);
        }
    }

    /// Ends the download of `content`, if any, with `held`: its waiters get
    /// it, the broker hears we want it no more, the page that it is
    /// verified.
    fn finish_fetch(&mut self, content: ContentId, held: &Rc<Held>) {
        if self.want_in_url == Some(content) {
            self.want_in_url = None;
        }
        let Some(fetch) = self.fetches.remove(&content) else {
            return;
        };
        self.socket.send(&ClientMsg::Unwant { content });
        for w in fetch.waiters {
            let _ = w.send(held.clone());
        }
        self.emit(Event::Status(content, Status::Verified));
    }

    fn emit_status(&mut self, content: ContentId) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        let status = fetch.download.status();
        if fetch.shown.as_ref() == Some(&status) {
            return;
        }
        let t = now();
        // Progress alone waits for its turn (the tick shows the last of it).
        if t - fetch.shown_at < PROGRESS_MS && only_progress(fetch.shown.as_ref(), &status) {
            return;
        }
        fetch.shown = Some(status.clone());
        fetch.shown_at = t;
        self.emit(Event::Status(content, status));
    }

    pub(crate) fn emit(&self, event: Event) {
        dispatch(&self.on_event, event);
    }

    /// Runs the receive path (frames, hashing, manifest parsing) once on
    /// made-up data while the first handshake is in flight: the engine
    /// compiles wasm functions on first use, and that should not happen
    /// on the critical path when the real content arrives.
    fn warm_up_once(&mut self) {
        if !std::mem::replace(&mut self.warmed_up, true) {
            wasm_bindgen_futures::spawn_local(async {
                gloo_timers::future::TimeoutFuture::new(0).await;
                crate::warm_up::run();
            });
        }
    }

    fn on_tick(&mut self) {
        let contents: Vec<ContentId> = self.fetches.keys().copied().collect();
        for content in contents {
            self.drive(content, Input::Tick);
        }
        // E.g. after a failed attempt.
        self.schedule_ready_offer();
        let stale = now() - SERVE_OPEN_TIMEOUT_MS;
        self.links
            .retain(|k, p| k.fetching || p.link.is_open() || p.created > stale);
    }
}

/// Whether `new` differs from `old` only in bytes received.
fn only_progress(old: Option<&Status>, new: &Status) -> bool {
    match (old, new) {
        (
            Some(Status::Receiving {
                total,
                sources,
                sending,
                missing,
                ..
            }),
            Status::Receiving {
                total: t,
                sources: s,
                sending: n,
                missing: m,
                ..
            },
        ) => total == t && sources == s && sending == n && missing == m,
        _ => false,
    }
}
