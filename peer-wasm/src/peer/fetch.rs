//! Downloads: feeding `protocol::download` what happens and carrying out
//! what it decides (connect, send, keep, hash, store), and telling the
//! page where each download stands.

use std::rc::Rc;

use futures_channel::oneshot;
use js_sys::Uint8Array;
use protocol::download::{Action, Conn, Download, DropReason, HolderId, Input, Status};
use protocol::transfer::{FrameHead, Reply, Request};
use protocol::{ClientMsg, ContentId};

use crate::arrivals::Arrivals;
use crate::events::{dropped_holder, Event};
use crate::hashing::{chunk_hash, digest_hash, hash_here, Hashing};
use crate::store::{Held, DISK_ABOVE};

use super::clock::now;
use super::links::fetch_key;
use super::origin::Origin;
use super::{with_inner, Inner};

/// Progress alone is reported at most this often (the page redraws on
/// every report); other changes of a download's status at once.
const PROGRESS_MS: f64 = 100.0;

/// One download and what goes with it.
pub struct Fetch {
    pub download: Download,
    /// Tells this download from an earlier one of the same content, for
    /// hashes that finish after it ended.
    serial: u64,
    /// Its chunks in transit.
    pub arrivals: Arrivals,
    pub waiters: Vec<oneshot::Sender<Rc<Held>>>,
    pub status: Shown,
    /// The site's origin, for a file of a site's index.
    pub origin: Option<Origin>,
    /// Payload bytes received from peers.
    pub from_peers: u64,
}

impl Fetch {
    /// Its next deadline: the download's, or the status report held back.
    pub fn deadline(&self) -> Option<f64> {
        let download = self.download.next_deadline().map(|t| t as f64);
        download
            .into_iter()
            .chain(self.status.due())
            .reduce(f64::min)
    }
}

/// What the page was last told of a download, so progress alone is told
/// at most every [`PROGRESS_MS`].
#[derive(Default)]
pub struct Shown {
    last: Option<Status>,
    at: f64,
    /// A newer progress report was held back.
    withheld: bool,
}

impl Shown {
    /// Whether to tell the page `status` now (and note that it was).
    fn tell(&mut self, status: &Status, t: f64) -> bool {
        let Some(last) = &self.last else {
            return self.told(status, t);
        };
        if last == status {
            // Back to what the page shows: nothing is held back.
            self.withheld = false;
            return false;
        }
        if t - self.at < PROGRESS_MS && status.only_progress_since(last) {
            self.withheld = true;
            return false;
        }
        self.told(status, t)
    }

    fn told(&mut self, status: &Status, t: f64) -> bool {
        self.last = Some(status.clone());
        self.at = t;
        self.withheld = false;
        true
    }

    /// When a held-back report is due.
    fn due(&self) -> Option<f64> {
        self.withheld.then_some(self.at + PROGRESS_MS)
    }

    /// The next status is told whatever it is.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// Numbers downloads (see [`Fetch::serial`]).
fn next_serial() -> u64 {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    NEXT.with(|n| {
        n.set(n.get() + 1);
        n.get()
    })
}

impl Inner {
    pub(super) fn start_fetch(&mut self, content: ContentId) {
        // Where this download starts in the content (see
        // `protocol::download::scheduler`).
        let seed = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        let fetch = Fetch {
            download: Download::new(content, now() as u64, seed),
            serial: next_serial(),
            arrivals: Arrivals::default(),
            waiters: Vec::new(),
            status: Shown::default(),
            origin: None,
            from_peers: 0,
        };
        self.fetches.insert(content, fetch);
        self.signaling.want(content);
    }

    /// Starts a download of a file of a site's index, whose manifest the
    /// origin gave (`manifest_bytes`, checked here against `content`), from
    /// peers and, as a fallback, from `origin`. Joins one under way.
    pub(crate) fn start_site_fetch(
        &mut self,
        content: ContentId,
        manifest_bytes: Vec<u8>,
        origin: Origin,
    ) -> Result<(), String> {
        if self.fetches.contains_key(&content)
            || self.held.get(&content).is_some_and(|h| h.is_complete())
        {
            return Ok(());
        }
        let seed = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
        let (mut download, actions) =
            Download::with_manifest(content, manifest_bytes, now() as u64, seed).map_err(|e| {
                format!(
                    "the manifest of {} does not match the site's index ({e}): re-run \
                     `peerpage manifest`",
                    origin.path
                )
            })?;
        download.set_sequential(true);
        download.set_me(self.signaling.id);
        let fetch = Fetch {
            download,
            serial: next_serial(),
            arrivals: Arrivals::default(),
            waiters: Vec::new(),
            status: Shown::default(),
            origin: Some(origin),
            from_peers: 0,
        };
        self.fetches.insert(content, fetch);
        // Held (and announced) first, so the broker's count of holders,
        // which decides how much the origin is asked, includes this peer.
        self.run(content, actions);
        self.signaling.want(content);
        if let Some(fetch) = self.fetches.get_mut(&content) {
            let actions = fetch.download.add_origin(now() as u64);
            self.run(content, actions);
        }
        self.emit_status(content);
        Ok(())
    }

    /// A site fetch whose origin is gone with no peer to go on from ends,
    /// with the origin's reason.
    fn check_site_fetch(&mut self, content: ContentId) {
        let Some(fetch) = self.fetches.get(&content) else {
            return;
        };
        let Some(origin) = &fetch.origin else { return };
        if fetch.download.has_origin() || fetch.download.peer_count() > 0 {
            return;
        }
        let failure = origin.failure.clone();
        let path = origin.path.clone();
        failure
            .borrow_mut()
            .get_or_insert_with(|| format!("the origin stopped serving {path}"));
        self.cancel(&content);
    }

    /// Content bigger than `limit` waits for the user's yes, in the
    /// download of `content` (every download, without one) if its manifest
    /// has not arrived (see `protocol::download::Download::confirm`).
    pub(crate) fn confirm_above(&mut self, content: Option<ContentId>, limit: Option<u64>) {
        for (c, fetch) in &mut self.fetches {
            if content.is_none_or(|only| only == *c) && fetch.download.manifest().is_none() {
                fetch.download.set_confirm_above(limit);
            }
        }
    }

    /// The user said yes to the download of `content`: it goes on.
    pub(crate) fn confirm(&mut self, content: ContentId) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        let actions = fetch.download.confirm(now() as u64);
        self.run(content, actions);
        self.emit_status(content);
    }

    /// Feeds `input` to the download of `content` and carries out what it
    /// decides.
    pub(super) fn drive(&mut self, content: ContentId, input: Input<'_>) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            // Not fetching (done or cancelled): close stray links.
            let conn = match input {
                Input::Introduced(holder) => Some(Conn::first(holder)),
                Input::Opened(conn) => Some(conn),
                _ => None,
            };
            if let Some(key) = conn.and_then(fetch_key) {
                self.links.remove(&key);
            }
            return;
        };
        let actions = fetch.download.handle(input, now() as u64);
        self.run(content, actions);
        self.check_site_fetch(content);
        self.emit_status(content);
    }

    /// Feeds the clock to downloads whose deadline passed, and tells the
    /// page progress that was held back.
    pub(super) fn tick_fetches(&mut self) {
        let t = now();
        let due: Vec<ContentId> = self
            .fetches
            .iter()
            .filter(|(_, f)| f.deadline().is_some_and(|d| d <= t))
            .map(|(c, _)| *c)
            .collect();
        for content in due {
            self.drive(content, Input::Tick);
        }
    }

    /// A chunk frame: the download checks its header and says where its
    /// payload goes.
    pub(super) fn on_chunk_frame(
        &mut self,
        content: ContentId,
        conn: Conn,
        head: FrameHead,
        payload: &Uint8Array,
    ) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        if conn.holder != HolderId::Origin {
            fetch.from_peers += u64::from(head.len);
        }
        let actions = fetch
            .download
            .handle(Input::ChunkFrame(conn, head), now() as u64);
        for action in &actions {
            if let Action::Keep {
                conn,
                index,
                offset,
            } = action
            {
                fetch
                    .arrivals
                    .keep(*conn, *index, *offset, head.total, payload);
            }
        }
        self.run(content, actions);
        self.emit_status(content);
    }

    /// WebCrypto hashed chunk `index` of the download numbered `serial`.
    fn on_digest(
        &mut self,
        content: ContentId,
        serial: u64,
        index: u32,
        digest: Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue>,
    ) {
        // A hash for an earlier download of the same content would judge
        // bytes it was not computed from.
        let Some(fetch) = self.fetches.get(&content).filter(|f| f.serial == serial) else {
            return;
        };
        let hash = match digest
            .map_err(crate::error::PeerError::Js)
            .and_then(|d| digest_hash(&d))
        {
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
                // Another copy of the chunk is whole: this one's bytes go.
                Action::Abandon { conn } => {
                    if let Some(fetch) = self.fetches.get_mut(&content) {
                        fetch.arrivals.forget(&conn);
                    }
                }
                Action::Verify { conn, index } => {
                    let Some(fetch) = self.fetches.get_mut(&content) else {
                        continue;
                    };
                    let Some(bytes) = fetch.arrivals.whole(conn, index) else {
                        continue;
                    };
                    match chunk_hash(&bytes) {
                        Hashing::Done(hash) => hashed.push(Input::Hashed { index, hash }),
                        Hashing::Pending(promise) => {
                            let (weak, serial) = (self.me.clone(), fetch.serial);
                            wasm_bindgen_futures::spawn_local(async move {
                                let digest = wasm_bindgen_futures::JsFuture::from(promise).await;
                                with_inner(&weak, move |i| {
                                    i.on_digest(content, serial, index, digest)
                                });
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
                Action::Send(conn, Request::Chunks { indices, .. })
                    if conn.holder == HolderId::Origin =>
                {
                    self.origin_request(content, conn.lane, &indices);
                }
                Action::Send(conn, request) => {
                    let channel = fetch_key(conn)
                        .and_then(|key| self.links.get(&key))
                        .and_then(|p| p.link.channel.as_ref());
                    if let Some(dc) = channel {
                        let text = serde_json::to_string(&request).expect("requests serialize");
                        let _ = dc.send_with_str(&text);
                    }
                }
                Action::Disconnect { conn, reason } => {
                    if let Some(key) = fetch_key(conn) {
                        self.links.remove(&key);
                    }
                    if conn.holder == HolderId::Origin {
                        let origin = self
                            .fetches
                            .get_mut(&content)
                            .and_then(|f| f.origin.as_mut());
                        if let Some(origin) = origin {
                            origin.abort(conn.lane);
                            if let Some(DropReason::FailedVerification(index)) = &reason {
                                let message = format!(
                                    "the origin's {} does not match its manifest (chunk {index}): \
                                     the file changed since `peerpage manifest` ran; re-run it",
                                    origin.path
                                );
                                origin.failure.borrow_mut().replace(message);
                            }
                        }
                    }
                    if let Some(fetch) = self.fetches.get_mut(&content) {
                        fetch.arrivals.forget(&conn);
                    }
                    if let Some(reason) = reason {
                        self.emit(Event::Warning(content, dropped_holder(&reason)));
                    }
                }
                Action::Want(n) => {
                    self.signaling.send(&ClientMsg::Want {
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
                    self.signaling.send(&ClientMsg::Hold { content });
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
                    for waiter in self.stored_waiters.remove(&content).unwrap_or_default() {
                        let _ = waiter.send(());
                    }
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
    pub(super) fn finish_fetch(&mut self, content: ContentId, held: &Rc<Held>) {
        let Some(fetch) = self.fetches.remove(&content) else {
            return;
        };
        self.stored_waiters.remove(&content);
        self.signaling.unwant(content);
        // Ended by holding the content (shared here meanwhile): its links
        // are of no use any more.
        self.drop_fetch_links(content);
        for w in fetch.waiters {
            let _ = w.send(held.clone());
        }
        let sources = fetch
            .origin
            .as_ref()
            .map(|o| (fetch.from_peers, o.bytes.get()));
        self.emit(Event::Status(content, Status::Verified, sources));
    }

    /// Tells the page where the download of `content` stands, if that
    /// changed (progress alone at most every [`PROGRESS_MS`]).
    pub(super) fn emit_status(&mut self, content: ContentId) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        let status = fetch.download.status();
        if fetch.status.tell(&status, now()) {
            let sources = fetch
                .origin
                .as_ref()
                .map(|o| (fetch.from_peers, o.bytes.get()));
            self.emit(Event::Status(content, status, sources));
        }
    }
}
