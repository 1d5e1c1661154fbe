//! The peer's state and its reactions to the broker, to other peers and to
//! the clock. Single-threaded: everything lives in one `Rc<RefCell<Inner>>`
//! reached from event callbacks through a `Weak`, so dropping the `Peer`
//! tears everything down.
//!
//! Parts, each with its own state; the top level carries out what they
//! decide:
//! * [`signaling`]: the broker socket, reconnects, what we announce and
//!   what the broker tells us.
//! * [`ready`]: our ready offer for the next wanter.
//! * [`links`]: WebRTC connections by (peer, side, lane), their handshakes
//!   and events; continuations reach a connection only while it is the
//!   current one under its key.
//! * [`serve`]: carrying out `protocol::serve`'s plan on a serving link.
//! * [`fetch`]: carrying out `protocol::download`'s actions.
//! * [`origin`]: a site's origin as a holder, over HTTP range requests.
//! * [`clock`]: the monotonic clock and the one timer for the earliest
//!   deadline.

mod clock;
mod fetch;
mod links;
mod origin;
mod ready;
mod serve;
mod signaling;
#[cfg(feature = "test-hooks")]
mod tarpit;

pub use origin::Origin;
#[cfg(feature = "test-hooks")]
pub use tarpit::Mode as TarpitMode;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use js_sys::{Function, Promise};
use protocol::links::{ServeGate, Side};
use protocol::transfer::Reply;
use protocol::{ClientMsg, ContentId, Manifest, PeerId};
use wasm_bindgen::JsValue;
use web_sys::WebSocket;

use crate::broker::BrokerEvent;
use crate::disk::{Disk, DiskSlot};
use crate::events::{dispatch, Event};
use crate::store::{Held, Parts};

use clock::Wake;
use fetch::Fetch;
use links::Links;
use ready::Ready;
use signaling::Signaling;

/// Payload bytes moved over data channels.
#[derive(Default, Clone, Copy)]
pub struct Stats {
    /// Received from other peers.
    pub from_peers: u64,
    /// Sent to other peers.
    pub to_peers: u64,
    /// Data channels that opened, fetching or serving.
    pub channels_opened: u64,
    /// `RTCPeerConnection`s made (or taken over from the page).
    pub connections_made: u64,
    /// Offers to serve refused without making a connection (see
    /// `protocol::links::ServeGate`).
    pub offers_refused: u64,
    /// Serving connections closed for asking for nothing, or for a new
    /// offer while all slots were taken.
    pub idle_closed: u64,
    /// Received from sites' origins (see `origin`).
    pub from_origin: u64,
}

/// Everything a peer knows and owns.
pub struct Inner {
    me: Weak<RefCell<Inner>>,
    signaling: Signaling,
    relay_only: bool,
    held: HashMap<ContentId, Rc<Held>>,
    fetches: HashMap<ContentId, Fetch>,
    links: Links,
    counts: HashMap<ContentId, u32>,
    on_event: Option<Function>,
    stats: Stats,
    closed: bool,
    warmed_up: bool,
    /// Where big downloads and shared files go, once opened (see
    /// `crate::disk`), and the opening (asked for once).
    disk: DiskSlot,
    disk_opening: Option<Promise>,
    wake: Wake,
    ready: Ready,
    /// Holders' ready offers from introductions, until we answer them.
    offers_in_hand: HashMap<PeerId, String>,
    /// An unused connection the page made early, for the first link.
    spare: Option<web_sys::RtcPeerConnection>,
    /// Which serving connections may be made.
    gate: ServeGate,
    /// Woken when a chunk of the content is stored, or its download ends
    /// (see `on_stored`).
    stored_waiters: HashMap<ContentId, Vec<oneshot::Sender<()>>>,
    /// Sites' indexes for `fetchUrl` (see `crate::site`).
    pub(crate) site_indexes: Rc<RefCell<crate::site::Indexes>>,
    /// Followed sites, by key: the URL of their release record.
    pub(crate) follows: HashMap<protocol::release::SiteKey, String>,
    /// Flip a byte in every chunk served (a dishonest holder, for tests).
    #[cfg(feature = "test-hooks")]
    pub corrupt_served: bool,
    /// Serve chunks as a tarpit would (for tests, see `tarpit`).
    #[cfg(feature = "test-hooks")]
    pub tarpit: Option<TarpitMode>,
}

/// Runs `f` on the peer if it still exists, then arms the timer for
/// whatever deadline `f` left. If the peer is busy (a browser call
/// re-entered us), `f` runs on the next microtask instead.
pub fn with_inner(weak: &Weak<RefCell<Inner>>, f: impl FnOnce(&mut Inner) + 'static) {
    let Some(rc) = weak.upgrade() else { return };
    if let Ok(mut inner) = rc.try_borrow_mut() {
        f(&mut inner);
        inner.arm_wake();
        return;
    }
    let weak = weak.clone();
    wasm_bindgen_futures::spawn_local(async move {
        if let Some(rc) = weak.upgrade() {
            let mut inner = rc.borrow_mut();
            f(&mut inner);
            inner.arm_wake();
        }
    });
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
            inner.signaling.want_in_url = wanted;
            if let Some(content) = wanted {
                inner.start_fetch(content);
            }
            let on = inner.broker_callback();
            inner.signaling.socket.adopt(ws, on);
        }
        let weak = Rc::downgrade(&rc);
        wasm_bindgen_futures::spawn_local(async move {
            with_inner(&weak, move |inner| {
                for text in received {
                    inner.on_broker_event(BrokerEvent::Text(text));
                }
                // Closed before we listened: its close event is gone too.
                if inner.signaling.socket.is_closed() {
                    inner.on_broker_event(BrokerEvent::Closed(
                        "closed before the peer started".into(),
                    ));
                }
            })
        });
        rc
    }

    fn build(url: String, relay_only: bool) -> Rc<RefCell<Inner>> {
        Rc::new_cyclic(|me| {
            RefCell::new(Inner {
                me: me.clone(),
                signaling: Signaling::new(url),
                relay_only,
                held: HashMap::new(),
                fetches: HashMap::new(),
                links: Links::default(),
                counts: HashMap::new(),
                on_event: None,
                stats: Stats::default(),
                closed: false,
                warmed_up: false,
                disk: DiskSlot::default(),
                disk_opening: None,
                wake: Wake::default(),
                ready: Ready::default(),
                offers_in_hand: HashMap::new(),
                spare: None,
                gate: ServeGate::default(),
                stored_waiters: HashMap::new(),
                site_indexes: Rc::default(),
                follows: HashMap::new(),
                #[cfg(feature = "test-hooks")]
                corrupt_served: false,
                #[cfg(feature = "test-hooks")]
                tarpit: None,
            })
        })
    }

    // ----- API -----

    /// Sets the page's event handler.
    pub fn set_on_event(&mut self, f: Option<Function>) {
        self.on_event = f;
    }

    /// The id the broker gave this peer, while connected.
    pub fn id(&self) -> Option<PeerId> {
        self.signaling.id
    }

    /// Data-channel traffic so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Serving connections now, opened or not.
    pub fn serving_links(&self) -> usize {
        let serving = self.links.iter().filter(|(k, _)| k.side == Side::Serve);
        serving.count()
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
        self.signaling.send(&ClientMsg::Hold { content: address });
        self.schedule_ready_offer();
    }

    /// Stops holding `content`.
    pub fn release(&mut self, content: &ContentId) {
        if self.held.remove(content).is_some() {
            self.signaling
                .send(&ClientMsg::Release { content: *content });
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
        fetch.status.forget();
        self.emit_status(content);
        rx
    }

    /// Follows `site` (record at `url`) through the broker too: its newer
    /// releases are pushed, also after a reconnect.
    pub(crate) fn follow(&mut self, site: protocol::release::SiteKey, url: String) {
        if self.follows.insert(site, url).is_none() {
            self.signaling.send(&ClientMsg::Follow { site });
        }
    }

    /// The peer's weak self, for tasks that call back into it.
    pub(crate) fn weak(&self) -> Weak<RefCell<Inner>> {
        self.me.clone()
    }

    /// Held (or half-fetched) content.
    pub fn held(&self, content: &ContentId) -> Option<Rc<Held>> {
        self.held.get(content).cloned()
    }

    /// Resolves when a chunk of `content` is next stored, or (cancelled)
    /// when its download ends.
    pub fn on_stored(&mut self, content: ContentId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if self.fetches.contains_key(&content) {
            self.stored_waiters.entry(content).or_default().push(tx);
        }
        rx
    }

    /// Why the site fetch of `content` under way failed, when it does.
    pub fn site_failure(&self, content: &ContentId) -> Option<Rc<RefCell<Option<String>>>> {
        let fetch = self.fetches.get(content)?;
        fetch.origin.as_ref().map(|o| o.failure.clone())
    }

    /// Abandons a download; its promise rejects.
    pub fn cancel(&mut self, content: &ContentId) {
        self.stored_waiters.remove(content);
        if self.fetches.remove(content).is_some() {
            self.signaling.unwant(*content);
            self.drop_fetch_links(*content);
            // What arrived so far is not kept.
            if self.held.get(content).is_some_and(|h| !h.is_complete()) {
                self.release(content);
            }
        }
    }

    /// Closes everything; the peer stays silent afterwards.
    pub fn close(&mut self) {
        self.closed = true;
        self.signaling.close();
        self.links.clear();
        self.fetches.clear();
        self.ready.clear();
        self.offers_in_hand.clear();
        if let Some(pc) = self.spare.take() {
            pc.close();
        }
        self.wake.cancel();
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

    // ----- the clock -----

    /// The earliest deadline of any part.
    fn next_deadline(&self) -> Option<f64> {
        let fetches = self.fetches.values().filter_map(Fetch::deadline);
        fetches
            .chain(self.unopened_deadline())
            .chain(self.idle_deadline())
            .chain(self.ready_retry_at())
            .reduce(f64::min)
    }

    /// Arms the timer for the earliest deadline.
    fn arm_wake(&mut self) {
        if self.closed {
            return;
        }
        let weak = self.me.clone();
        let deadline = self.next_deadline();
        self.wake
            .arm(deadline, move || with_inner(&weak, Inner::on_wake));
    }

    /// The timer fired: every part does what is due.
    fn on_wake(&mut self) {
        self.wake.fired();
        self.tick_fetches();
        self.drop_unopened();
        self.drop_idle();
        self.schedule_ready_offer();
    }
}
