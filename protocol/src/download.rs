//! The wanter's side of a transfer, as a state machine without I/O:
//! want -> connect -> receive -> verify -> store -> hold.
//!
//! The browser layer feeds it [`Input`]s (introductions, channel events,
//! frames, availability, clock ticks) and carries out the [`Action`]s it
//! returns (open a connection, send a request, drop a holder, ask the
//! broker for more holders, keep, verify and store chunks). Nothing is
//! handed out without passing the manifest check against the address, and
//! no chunk without passing its hash check.
//!
//! Chunk bytes never enter the machine: it reads each chunk frame's header
//! ([`Input::ChunkFrame`]) and tells the caller where to keep the payload
//! ([`Action::Keep`]), when a chunk is whole and must be hashed
//! ([`Action::Verify`], answered by [`Input::Hashed`]), and what to do with
//! it once the hash is compared ([`Action::Store`] or [`Action::Discard`]).
//! So the caller can leave payloads where they landed and hash them with
//! the fastest means it has (the browser peer: JavaScript memory and
//! WebCrypto), while every decision stays here.
//!
//! Chunks are drawn from up to [`MAX_SOURCES`] holders at once, each told
//! what it has (`Reply::Has` / `Reply::Got`), rarest first (see
//! [`scheduler`]). Holders that send bad data are banned for the rest of
//! the download; holders that vanish cost only their chunks in flight.

use std::collections::{BTreeMap, HashSet};

use crate::availability::Availability;
use crate::ids::{ChunkHash, ContentId, PeerId};
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::transfer::{Assembly, Cursor, Frame, FrameError, FrameHead, FrameKind, Reply, Request};

pub mod scheduler;

/// Most holders a download draws from at once.
pub const MAX_SOURCES: usize = 4;
/// Chunks requested from one holder before the first of them arrives.
pub const PIPELINE: usize = 4;
/// A holder that owes chunks is asked for more once it owes this many
/// fewer than [`PIPELINE`], not after every chunk: each request costs
/// both sides a message, and the chunks still owed keep the holder busy
/// meanwhile.
pub const REFILL: usize = 2;
/// Leading chunks asked to come along with the manifest: one, which is
/// all of a typical page. More would make every downloader of a big file
/// take the same leading chunks from the first holder, which is the
/// seeder when a crowd arrives together.
pub const PREFETCH: u32 = 1;
/// Chunks are picked a block of about this many bytes at a time (see
/// [`scheduler`]).
pub const BLOCK_BYTES: u32 = 1 << 20;
/// A holder whose data channel is not open after this long is dropped.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// A holder that owes data and sends nothing for this long is dropped.
pub const STALL_TIMEOUT_MS: u64 = 5_000;
/// While more holders could help, ask the broker again this often.
pub const WANT_RETRY_MS: u64 = 2_000;

/// Something that happened, reported by the browser layer.
#[derive(Debug)]
pub enum Input<'a> {
    /// The broker introduced a holder.
    Introduced(PeerId),
    /// The data channel to a holder opened.
    Opened(PeerId),
    /// A binary message from a holder, whole. Manifest frames are read
    /// from it; of a chunk frame only the header is read, as for
    /// [`Input::ChunkFrame`], and the payload stays with the caller.
    Frame(PeerId, &'a [u8]),
    /// The header of a chunk frame from a holder. The caller holds its
    /// payload, to keep or drop as the actions say.
    ChunkFrame(PeerId, FrameHead),
    /// A binary message from a holder that could not be read (see
    /// [`crate::transfer::Reader`]): the holder is dropped.
    BadFrame(PeerId, FrameError),
    /// The SHA-256 of the bytes kept for chunk `index`, which an
    /// [`Action::Verify`] asked for.
    Hashed {
        /// Chunk index.
        index: u32,
        /// What the caller computed.
        hash: ChunkHash,
    },
    /// A text message from a holder.
    Reply(PeerId, Reply),
    /// The connection to a holder failed or closed.
    Lost(PeerId, String),
    /// The broker's holder count for this content.
    Holders(u32),
    /// Time passed (for timeouts).
    Tick,
}

/// Something the browser layer must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a WebRTC connection to this holder (we make the offer).
    Connect(PeerId),
    /// Send a request over the holder's data channel.
    Send(PeerId, Request),
    /// Close the connection to this holder. `reason` is set when the holder
    /// misbehaved or failed, for the user's log.
    Disconnect {
        /// Holder to drop.
        peer: PeerId,
        /// Why, if it was not a normal end.
        reason: Option<String>,
    },
    /// Ask the broker to introduce this many more holders.
    Want(u8),
    /// The manifest arrived and matches the address: set up storage. From
    /// now on this peer can serve the manifest and the chunks it stores.
    Manifest {
        /// The verified manifest.
        manifest: Manifest,
        /// Its exact bytes (their hash is the address).
        manifest_bytes: Vec<u8>,
    },
    /// Keep the payload of the chunk frame just handed in, at `offset` of
    /// chunk `index` arriving from `peer`. Offset 0 starts the chunk:
    /// anything kept of an unfinished earlier chunk from `peer` is stale.
    Keep {
        /// The holder sending it.
        peer: PeerId,
        /// Chunk index.
        index: u32,
        /// Where the payload goes in the chunk.
        offset: u32,
    },
    /// Every byte of chunk `index` from `peer` is kept: hash it and report
    /// with [`Input::Hashed`]. Nothing may use the bytes before that.
    Verify {
        /// The holder that sent it.
        peer: PeerId,
        /// Chunk index.
        index: u32,
    },
    /// Chunk `index` matches its hash: store its kept bytes, and tell the
    /// peers we serve.
    Store {
        /// Chunk index.
        index: u32,
    },
    /// Chunk `index` does not match its hash: drop its kept bytes (its
    /// holder is dropped too, and the chunk asked of another).
    Discard {
        /// Chunk index.
        index: u32,
    },
    /// Every chunk was verified and stored.
    Complete,
}

/// What the user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Asking the broker for holders.
    Looking,
    /// Nobody holds the content now; waiting for a holder to appear.
    Gone,
    /// Opening a connection to a holder.
    Connecting,
    /// Data is arriving, or waiting for a holder of what is missing.
    Receiving {
        /// Verified bytes so far.
        received: u64,
        /// Total bytes (0 until the manifest arrived).
        total: u64,
        /// Holders currently connected.
        sources: u32,
        /// Holders with chunks requested and not yet delivered.
        sending: u32,
        /// While nothing arrives (`sending` is 0): the `[start, end)` byte
        /// ranges that no connected holder has; the download waits for a
        /// holder of them to appear.
        missing: Vec<(u64, u64)>,
    },
    /// Everything arrived and matched the address.
    Verified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Requested,
    /// Whole, and being hashed by the caller: from this holder.
    Verifying(PeerId),
    Done,
}

#[derive(Debug)]
struct Source {
    open: bool,
    /// When it was introduced, or last delivered data.
    last_progress: u64,
    /// Chunk indices requested and not yet delivered, in request order.
    in_flight: Vec<u32>,
    /// The manifest, while it arrives from this holder.
    manifest_asm: Option<Assembly>,
    /// The chunk arriving from this holder (the first in flight), by its
    /// frames' headers: the caller keeps the bytes.
    arriving: Option<Cursor>,
    /// What it has, once it said.
    has: Option<Availability>,
    /// Whether its availability was asked for (or comes with the manifest).
    asked_has: bool,
}

impl Source {
    fn new(now: u64) -> Self {
        Source {
            open: false,
            last_progress: now,
            in_flight: Vec::new(),
            manifest_asm: None,
            arriving: None,
            has: None,
            asked_has: false,
        }
    }
}

/// One download. See the module docs.
#[derive(Debug)]
pub struct Download {
    content: ContentId,
    manifest: Option<Manifest>,
    manifest_from: Option<PeerId>,
    slots: Vec<Slot>,
    verified_bytes: u64,
    sources: BTreeMap<PeerId, Source>,
    banned: HashSet<PeerId>,
    holders_online: Option<u32>,
    last_want: u64,
    /// Where ties in the chunk order start (random per download).
    start: u32,
    complete: bool,
}

impl Download {
    /// Starts a download. The caller has sent (or is sending) a `want` for
    /// one holder; `now` is a millisecond clock; `seed` is random and picks
    /// where in the content this download starts.
    pub fn new(content: ContentId, now: u64, seed: u32) -> Self {
        Download {
            content,
            manifest: None,
            manifest_from: None,
            slots: Vec::new(),
            verified_bytes: 0,
            sources: BTreeMap::new(),
            banned: HashSet::new(),
            holders_online: None,
            last_want: now,
            start: seed,
            complete: false,
        }
    }

    /// The address being downloaded.
    pub fn content(&self) -> ContentId {
        self.content
    }

    /// The verified manifest, once it arrived.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Whether this holder was caught sending bad data.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains(peer)
    }

    /// What the user should see now.
    pub fn status(&self) -> Status {
        if self.complete {
            return Status::Verified;
        }
        let open = self.sources.values().filter(|s| s.open).count() as u32;
        if self.manifest.is_some() || open > 0 {
            let sending = self
                .sources
                .values()
                .filter(|s| s.open && !s.in_flight.is_empty())
                .count() as u32;
            return Status::Receiving {
                received: self.verified_bytes,
                total: self.manifest.as_ref().map_or(0, |m| m.size),
                sources: open,
                sending,
                // Only worth its cost (a pass over every chunk, on every
                // frame) once nothing arrives.
                missing: if sending == 0 {
                    self.missing()
                } else {
                    Vec::new()
                },
            };
        }
        if !self.sources.is_empty() {
            return Status::Connecting;
        }
        match self.holders_online {
            Some(0) => Status::Gone,
            _ => Status::Looking,
        }
    }

    /// Byte ranges no connected holder has, once every connected holder
    /// said what it has (before that, nothing is known to be missing).
    fn missing(&self) -> Vec<(u64, u64)> {
        let Some(m) = &self.manifest else {
            return Vec::new();
        };
        if self.sources.values().any(|s| s.has.is_none()) {
            return Vec::new();
        }
        let unheld = (0..m.chunk_count()).filter(|&i| {
            self.slots[i as usize] == Slot::Missing && !self.sources.values().any(|s| has(s, i))
        });
        let chunk = m.chunk_size as u64;
        scheduler::ranges(unheld)
            .into_iter()
            .map(|(a, b)| (a as u64 * chunk, (b as u64 * chunk).min(m.size)))
            .collect()
    }

    /// Decides now what to ask of a holder that answers before its channel
    /// opens: one introduced with a ready offer, whose answer carries the
    /// first request so that the holder sends as soon as the channel opens.
    /// The request counts as sent; `None` if there is nothing to ask yet.
    pub fn request_ahead(&mut self, peer: PeerId, now: u64) -> Option<Request> {
        let src = self.sources.get_mut(&peer).filter(|s| !s.open)?;
        if self.manifest.is_none() {
            if self.manifest_from.is_some() {
                return None;
            }
            self.manifest_from = Some(peer);
            return Some(Request::Manifest {
                content: self.content,
                prefetch: PREFETCH,
            });
        }
        if src.asked_has {
            return None;
        }
        src.asked_has = true;
        src.last_progress = now;
        Some(Request::Has {
            content: self.content,
        })
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input<'_>, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.complete {
            // Late events after completion only need their connection closed.
            if let Input::Introduced(peer) | Input::Opened(peer) = input {
                out.push(Action::Disconnect { peer, reason: None });
            }
            return out;
        }
        match input {
            Input::Introduced(peer) => {
                if !self.banned.contains(&peer)
                    && !self.sources.contains_key(&peer)
                    && self.sources.len() < MAX_SOURCES
                {
                    self.sources.insert(peer, Source::new(now));
                    out.push(Action::Connect(peer));
                }
            }
            Input::Opened(peer) => {
                if let Some(src) = self.sources.get_mut(&peer) {
                    src.open = true;
                    src.last_progress = now;
                    self.schedule(now, &mut out);
                }
            }
            Input::Frame(peer, bytes) => {
                if self.sources.contains_key(&peer) {
                    if let Err(why) = self.on_frame(peer, bytes, now, &mut out) {
                        self.ban(peer, why, now, &mut out);
                    }
                }
            }
            Input::ChunkFrame(peer, head) => {
                if self.sources.contains_key(&peer) {
                    if let Err(why) = self.on_chunk_frame(peer, head, now, &mut out) {
                        self.ban(peer, why, now, &mut out);
                    }
                }
            }
            Input::BadFrame(peer, why) => {
                if self.sources.contains_key(&peer) {
                    self.ban(peer, why.to_string(), now, &mut out);
                }
            }
            Input::Hashed { index, hash } => self.on_hashed(index, hash, now, &mut out),
            Input::Reply(peer, reply) => {
                if self.sources.contains_key(&peer) {
                    self.on_reply(peer, reply, now, &mut out);
                }
            }
            Input::Lost(peer, _why) => {
                if self.sources.contains_key(&peer) {
                    // The connection is already gone; nothing to close.
                    self.forget(peer);
                    self.after_loss(now, &mut out);
                }
            }
            Input::Holders(count) => {
                self.holders_online = Some(count);
            }
            Input::Tick => self.check_timeouts(now, &mut out),
        }
        out
    }

    fn on_reply(&mut self, peer: PeerId, reply: Reply, now: u64, out: &mut Vec<Action>) {
        let why = match reply {
            Reply::Has { content, chunks } if content == self.content => {
                let Some(m) = &self.manifest else {
                    return self.ban(
                        peer,
                        "said what it has before the manifest".into(),
                        now,
                        out,
                    );
                };
                let has = match Availability::from_have(&chunks, m.chunk_count()) {
                    Ok(has) => has,
                    Err(e) => return self.ban(peer, e.to_string(), now, out),
                };
                let src = self.sources.get_mut(&peer).expect("checked by caller");
                // The first `Has` of the holder that sent the manifest: the
                // leading chunks it has follow, unasked.
                if self.manifest_from == Some(peer) && src.has.is_none() {
                    let leading = m.chunk_count().min(PREFETCH);
                    src.in_flight = (0..leading).filter(|&i| has.contains(i)).collect();
                    for &i in &src.in_flight {
                        self.slots[i as usize] = Slot::Requested;
                    }
                }
                src.has = Some(has);
                src.last_progress = now;
                return self.schedule(now, out);
            }
            Reply::Got { content, index } if content == self.content => {
                let src = self.sources.get_mut(&peer).expect("checked by caller");
                // Not asked: ignored.
                let Some(has) = &mut src.has else { return };
                if has.insert(index) {
                    return self.schedule(now, out);
                }
                return self.ban(
                    peer,
                    format!("said it gained chunk {index}, which does not exist"),
                    now,
                    out,
                );
            }
            Reply::Has { .. } | Reply::Got { .. } => return,
            Reply::Missing { .. } => "the holder no longer has this content".to_owned(),
            Reply::Refused { message } => format!("the holder refused: {message}"),
        };
        self.drop_source(peer, Some(why), now, out);
    }

    fn on_frame(
        &mut self,
        peer: PeerId,
        bytes: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let frame = Frame::decode(bytes).map_err(|e| e.to_string())?;
        if frame.kind == FrameKind::Chunk {
            return self.on_chunk_frame(peer, frame.head(), now, out);
        }
        if self.manifest.is_some() || self.manifest_from != Some(peer) {
            return Err("sent a manifest nobody asked for".into());
        }
        let src = self.sources.get_mut(&peer).expect("checked by caller");
        src.last_progress = now;
        let asm = match &mut src.manifest_asm {
            Some(asm) => asm,
            slot => slot
                .insert(Assembly::new(frame.total, MAX_MANIFEST_BYTES).map_err(|e| e.to_string())?),
        };
        let Some(bytes) = asm.push(&frame).map_err(|e| e.to_string())? else {
            return Ok(());
        };
        src.manifest_asm = None;
        let manifest = Manifest::verify(&self.content, &bytes).map_err(|e| e.to_string())?;
        // Its `Has` comes next, then the leading chunks it has.
        src.asked_has = true;
        self.slots = vec![Slot::Missing; manifest.chunk_count() as usize];
        let many = manifest.chunk_count() > 1;
        self.manifest = Some(manifest.clone());
        out.push(Action::Manifest {
            manifest,
            manifest_bytes: bytes,
        });
        if many && self.sources.len() < MAX_SOURCES {
            // Big content: draw from several holders at once.
            self.last_want = now;
            out.push(Action::Want((MAX_SOURCES - self.sources.len()) as u8));
        }
        self.schedule(now, out);
        Ok(())
    }

    /// Checks a chunk frame's header against what was asked of `peer`;
    /// its payload is kept by the caller, and hashed once the chunk is whole.
    fn on_chunk_frame(
        &mut self,
        peer: PeerId,
        head: FrameHead,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let Some(manifest) = &self.manifest else {
            return Err("sent a chunk before the manifest".into());
        };
        let src = self.sources.get_mut(&peer).expect("checked by caller");
        src.last_progress = now;
        let index = head.index;
        if head.kind != FrameKind::Chunk || src.in_flight.first() != Some(&index) {
            return Err(format!("sent chunk {index} which was not requested next"));
        }
        if head.total as usize != manifest.chunk_len(index) {
            return Err(format!("chunk {index} has the wrong length"));
        }
        let cursor = src.arriving.get_or_insert_with(|| Cursor::new(head.total));
        let whole = cursor.advance(&head).map_err(|e| e.to_string())?;
        out.push(Action::Keep {
            peer,
            index,
            offset: head.offset,
        });
        if whole {
            src.arriving = None;
            src.in_flight.remove(0);
            self.slots[index as usize] = Slot::Verifying(peer);
            out.push(Action::Verify { peer, index });
            // Its holder has room for more while this one is hashed.
            self.schedule(now, out);
        }
        Ok(())
    }

    /// The caller hashed chunk `index`: store it, or drop it and ban the
    /// holder that sent it.
    fn on_hashed(&mut self, index: u32, hash: ChunkHash, now: u64, out: &mut Vec<Action>) {
        let (Some(manifest), Some(&Slot::Verifying(from))) =
            (&self.manifest, self.slots.get(index as usize))
        else {
            // Not asked for (or asked of an earlier download).
            return;
        };
        if manifest.chunks.get(index as usize) == Some(&hash) {
            self.slots[index as usize] = Slot::Done;
            self.verified_bytes += manifest.chunk_len(index) as u64;
            out.push(Action::Store { index });
            return self.schedule(now, out);
        }
        self.slots[index as usize] = Slot::Missing;
        out.push(Action::Discard { index });
        let why = format!("chunk {index} failed verification");
        if self.sources.contains_key(&from) {
            self.ban(from, why, now, out);
        } else {
            // It left meanwhile; it is not asked again if it returns.
            self.banned.insert(from);
            self.schedule(now, out);
        }
    }

    /// Asks for the manifest first; then asks every open holder what it
    /// has, and hands missing chunks to holders with room in their
    /// pipeline (see [`scheduler`]).
    fn schedule(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(manifest) = &self.manifest else {
            if self.manifest_from.is_none() {
                if let Some((&peer, _)) = self.sources.iter().find(|(_, s)| s.open) {
                    self.manifest_from = Some(peer);
                    out.push(Action::Send(
                        peer,
                        Request::Manifest {
                            content: self.content,
                            prefetch: PREFETCH,
                        },
                    ));
                }
            }
            return;
        };
        if self.slots.iter().all(|s| *s == Slot::Done) {
            return self.finish(out);
        }
        let count = manifest.chunk_count();
        // How many connected holders have each chunk, and how many of them
        // only partly hold the content.
        let mut rarity = vec![0u16; count as usize];
        let mut partly = vec![false; count as usize];
        for has in self.sources.values().filter_map(|s| s.has.as_ref()) {
            let full = has.is_full();
            for (i, r) in rarity.iter_mut().enumerate() {
                if has.contains(i as u32) {
                    *r += 1;
                    partly[i] |= !full;
                }
            }
        }
        let block = (BLOCK_BYTES / manifest.chunk_size).max(1);
        for (&peer, src) in self.sources.iter_mut().filter(|(_, s)| s.open) {
            let Some(has) = &src.has else {
                if !std::mem::replace(&mut src.asked_has, true) {
                    src.last_progress = now;
                    out.push(Action::Send(
                        peer,
                        Request::Has {
                            content: self.content,
                        },
                    ));
                }
                continue;
            };
            let room = PIPELINE.saturating_sub(src.in_flight.len());
            if room < REFILL && !src.in_flight.is_empty() {
                continue;
            }
            let slots = &self.slots;
            // A full holder is left what no connected partial holder has.
            let full = has.is_full();
            let indices = scheduler::pick(has, &rarity, self.start, block, room, |i| {
                slots[i as usize] == Slot::Missing && !(full && partly[i as usize])
            });
            if indices.is_empty() {
                continue;
            }
            for &i in &indices {
                self.slots[i as usize] = Slot::Requested;
            }
            if src.in_flight.is_empty() {
                // Stall timing starts when the holder owes us something.
                src.last_progress = now;
            }
            src.in_flight.extend_from_slice(&indices);
            out.push(Action::Send(
                peer,
                Request::Chunks {
                    content: self.content,
                    indices,
                },
            ));
        }
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        self.complete = true;
        for peer in std::mem::take(&mut self.sources).into_keys() {
            out.push(Action::Disconnect { peer, reason: None });
        }
        out.push(Action::Complete);
    }

    fn ban(&mut self, peer: PeerId, why: String, now: u64, out: &mut Vec<Action>) {
        self.banned.insert(peer);
        self.drop_source(peer, Some(why), now, out);
    }

    fn drop_source(&mut self, peer: PeerId, why: Option<String>, now: u64, out: &mut Vec<Action>) {
        self.forget(peer);
        out.push(Action::Disconnect { peer, reason: why });
        self.after_loss(now, out);
    }

    /// Removes a holder and puts its unfinished chunks back up for grabs.
    fn forget(&mut self, peer: PeerId) {
        if let Some(src) = self.sources.remove(&peer) {
            for index in src.in_flight {
                self.slots[index as usize] = Slot::Missing;
            }
        }
        if self.manifest_from == Some(peer) {
            self.manifest_from = None;
        }
    }

    fn after_loss(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.sources.is_empty() {
            self.last_want = now;
            out.push(Action::Want(1));
        }
        self.schedule(now, out);
    }

    fn check_timeouts(&mut self, now: u64, out: &mut Vec<Action>) {
        let late: Vec<(PeerId, String)> = self
            .sources
            .iter()
            .filter_map(|(peer, s)| {
                let idle = now.saturating_sub(s.last_progress);
                if !s.open && idle > CONNECT_TIMEOUT_MS {
                    Some((*peer, "could not connect in time".to_owned()))
                } else if s.open && self.owes_data(peer, s) && idle > STALL_TIMEOUT_MS {
                    Some((*peer, "stalled: sent nothing for 5 s".to_owned()))
                } else {
                    None
                }
            })
            .collect();
        for (peer, why) in late {
            // A stalled holder is not trusted again during this download.
            self.ban(peer, why, now, out);
        }
        if now.saturating_sub(self.last_want) >= WANT_RETRY_MS {
            if let Some(n) = self.more_holders() {
                self.last_want = now;
                out.push(Action::Want(n));
            }
        }
    }

    /// How many more holders to ask the broker for, if any: one while we
    /// have none and some are online; for content of several chunks, as
    /// many as there are online holders we are not connected to (up to
    /// the cap). Holders that appear later are introduced by the broker on
    /// its own, so this only catches up with ones we missed.
    fn more_holders(&self) -> Option<u8> {
        let online = self.holders_online?;
        // Once it has the manifest, this peer counts itself as a holder.
        let others = online.saturating_sub(u32::from(self.manifest.is_some()));
        if self.sources.is_empty() {
            return (others > 0).then_some(1);
        }
        let many = self.manifest.as_ref().is_some_and(|m| m.chunk_count() > 1);
        let known = (self.sources.len() + self.banned.len()) as u32;
        let room = (MAX_SOURCES - self.sources.len()) as u32;
        let n = others.saturating_sub(known).min(room);
        (many && n > 0).then_some(n as u8)
    }

    fn owes_data(&self, peer: &PeerId, src: &Source) -> bool {
        !src.in_flight.is_empty()
            || (src.asked_has && src.has.is_none())
            || (self.manifest.is_none() && self.manifest_from == Some(*peer))
    }
}

/// Whether `src` said it has chunk `i`.
fn has(src: &Source, i: u32) -> bool {
    src.has.as_ref().is_some_and(|h| h.contains(i))
}

#[cfg(test)]
mod tests;
