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
//!
//! Big content from a lone holder comes over two connections to it
//! ([`Conn`]'s lanes, see [`SECOND_LANE_BYTES`]): each is its own SCTP
//! association over its own UDP socket, so a receiver that falls behind
//! loses fewer datagrams, and the two recover from losses apart.

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
/// Content of at least this many bytes, with at least half of it still
/// to come, is drawn over a second connection to a holder that is the
/// only one online. (Several holders already spread a download over
/// several connections.)
pub const SECOND_LANE_BYTES: u64 = 16 << 20;
/// The second connection waits until this much is verified: by then the
/// broker has counted the holders that arrived together with this peer,
/// so a crowd around one seeder does not double its connections.
pub const SECOND_LANE_AFTER_BYTES: u64 = 2 << 20;

/// One connection to a holder. Lane 0 is the first; a download may open
/// lane 1 to the same holder for big content (see [`SECOND_LANE_BYTES`]).
/// Bans and availability are the holder's; requests, chunks in flight and
/// timeouts are each connection's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conn {
    /// The holder.
    pub peer: PeerId,
    /// Which of its connections.
    pub lane: u8,
}

impl Conn {
    /// The first connection to `peer`.
    pub fn first(peer: PeerId) -> Self {
        Conn { peer, lane: 0 }
    }
}

/// Something that happened, reported by the browser layer.
#[derive(Debug)]
pub enum Input<'a> {
    /// The broker introduced a holder.
    Introduced(PeerId),
    /// The data channel of a connection to a holder opened.
    Opened(Conn),
    /// A binary message from a holder, whole. Manifest frames are read
    /// from it; of a chunk frame only the header is read, as for
    /// [`Input::ChunkFrame`], and the payload stays with the caller.
    Frame(Conn, &'a [u8]),
    /// The header of a chunk frame from a holder. The caller holds its
    /// payload, to keep or drop as the actions say.
    ChunkFrame(Conn, FrameHead),
    /// A binary message from a holder that could not be read (see
    /// [`crate::transfer::Reader`]): the holder is dropped.
    BadFrame(Conn, FrameError),
    /// The SHA-256 of the bytes kept for chunk `index`, which an
    /// [`Action::Verify`] asked for.
    Hashed {
        /// Chunk index.
        index: u32,
        /// What the caller computed.
        hash: ChunkHash,
    },
    /// A text message from a holder.
    Reply(Conn, Reply),
    /// A connection to a holder failed or closed.
    Lost(Conn, String),
    /// The broker's holder count for this content.
    Holders(u32),
    /// Time passed (for timeouts).
    Tick,
}

/// Something the browser layer must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Open this connection to a holder (we make the offer, or answer the
    /// holder's ready offer on lane 0).
    Connect(Conn),
    /// Send a request over this connection's data channel.
    Send(Conn, Request),
    /// Close this connection. `reason` is set when the holder misbehaved
    /// or failed, for the user's log.
    Disconnect {
        /// Connection to drop.
        conn: Conn,
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
    /// chunk `index` arriving over `conn`. Offset 0 starts the chunk:
    /// anything kept of an unfinished earlier chunk from `conn` is stale.
    Keep {
        /// The connection it came over.
        conn: Conn,
        /// Chunk index.
        index: u32,
        /// Where the payload goes in the chunk.
        offset: u32,
    },
    /// Every byte of chunk `index` from `conn` is kept: hash it and report
    /// with [`Input::Hashed`]. Nothing may use the bytes before that.
    Verify {
        /// The connection it came over.
        conn: Conn,
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
    manifest_from: Option<Conn>,
    slots: Vec<Slot>,
    verified_bytes: u64,
    /// Ordered by holder, so a holder's connections are neighbours.
    sources: BTreeMap<Conn, Source>,
    banned: HashSet<PeerId>,
    /// Holders a second connection was opened to (once per download).
    laned: HashSet<PeerId>,
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
            laned: HashSet::new(),
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
        let open = self.count_holders(|s| s.open);
        if self.manifest.is_some() || open > 0 {
            let sending = self.count_holders(|s| s.open && !s.in_flight.is_empty());
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

    /// For each holder with a connection for which `f` holds, the first
    /// such connection.
    fn per_holder<'a>(
        &'a self,
        f: impl Fn(&Source) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a Conn, &'a Source)> + 'a {
        let mut last = None;
        // A holder's connections are neighbours (the map's order).
        self.sources
            .iter()
            .filter(move |(conn, src)| f(src) && last.replace(conn.peer) != Some(conn.peer))
    }

    /// How many holders have a connection for which `f` holds.
    fn count_holders(&self, f: impl Fn(&Source) -> bool) -> u32 {
        self.per_holder(f).count() as u32
    }

    /// Whether the holders online are one and this peer (which holds from
    /// the manifest on): the case for a second connection.
    fn lone_holder(&self) -> bool {
        self.holders_online == Some(2)
    }

    /// The connections to `peer`.
    fn conns_of(&self, peer: PeerId) -> Vec<Conn> {
        self.sources
            .range(
                Conn::first(peer)..=Conn {
                    peer,
                    lane: u8::MAX,
                },
            )
            .map(|(c, _)| *c)
            .collect()
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
        let conn = Conn::first(peer);
        let src = self.sources.get_mut(&conn).filter(|s| !s.open)?;
        if self.manifest.is_none() {
            if self.manifest_from.is_some() {
                return None;
            }
            self.manifest_from = Some(conn);
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
            match input {
                Input::Introduced(peer) => out.push(Action::Disconnect {
                    conn: Conn::first(peer),
                    reason: None,
                }),
                Input::Opened(conn) => out.push(Action::Disconnect { conn, reason: None }),
                _ => {}
            }
            return out;
        }
        match input {
            Input::Introduced(peer) => {
                if !self.banned.contains(&peer)
                    && !self.sources.contains_key(&Conn::first(peer))
                    && (self.count_holders(|_| true) as usize) < MAX_SOURCES
                {
                    self.sources.insert(Conn::first(peer), Source::new(now));
                    out.push(Action::Connect(Conn::first(peer)));
                }
            }
            Input::Opened(conn) => {
                if let Some(src) = self.sources.get_mut(&conn) {
                    src.open = true;
                    src.last_progress = now;
                    self.schedule(now, &mut out);
                }
            }
            Input::Frame(conn, bytes) => {
                if self.sources.contains_key(&conn) {
                    if let Err(why) = self.on_frame(conn, bytes, now, &mut out) {
                        self.ban(conn.peer, why, now, &mut out);
                    }
                }
            }
            Input::ChunkFrame(conn, head) => {
                if self.sources.contains_key(&conn) {
                    if let Err(why) = self.on_chunk_frame(conn, head, now, &mut out) {
                        self.ban(conn.peer, why, now, &mut out);
                    }
                }
            }
            Input::BadFrame(conn, why) => {
                if self.sources.contains_key(&conn) {
                    self.ban(conn.peer, why.to_string(), now, &mut out);
                }
            }
            Input::Hashed { index, hash } => self.on_hashed(index, hash, now, &mut out),
            Input::Reply(conn, reply) => {
                if self.sources.contains_key(&conn) {
                    self.on_reply(conn, reply, now, &mut out);
                }
            }
            Input::Lost(conn, _why) => {
                if self.sources.contains_key(&conn) {
                    // The connection is already gone; nothing to close.
                    self.forget(conn);
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

    fn on_reply(&mut self, conn: Conn, reply: Reply, now: u64, out: &mut Vec<Action>) {
        let peer = conn.peer;
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
                let src = self.sources.get_mut(&conn).expect("checked by caller");
                // The first `Has` of the holder that sent the manifest: the
                // leading chunks it has follow, unasked.
                if self.manifest_from == Some(conn) && src.has.is_none() {
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
                // Told on the connection that asked what it has; true of
                // every connection to that holder.
                let mut told = false;
                for c in self.conns_of(peer) {
                    let src = self.sources.get_mut(&c).expect("listed");
                    // Not asked: ignored.
                    let Some(has) = &mut src.has else { continue };
                    if !has.insert(index) {
                        return self.ban(
                            peer,
                            format!("said it gained chunk {index}, which does not exist"),
                            now,
                            out,
                        );
                    }
                    told = true;
                }
                if told {
                    self.schedule(now, out);
                }
                return;
            }
            Reply::Has { .. } | Reply::Got { .. } => return,
            Reply::Missing { .. } => "the holder no longer has this content".to_owned(),
            Reply::Refused { message } => format!("the holder refused: {message}"),
        };
        self.drop_holder(peer, Some(why), now, out);
    }

    fn on_frame(
        &mut self,
        conn: Conn,
        bytes: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let frame = Frame::decode(bytes).map_err(|e| e.to_string())?;
        if frame.kind == FrameKind::Chunk {
            return self.on_chunk_frame(conn, frame.head(), now, out);
        }
        if self.manifest.is_some() || self.manifest_from != Some(conn) {
            return Err("sent a manifest nobody asked for".into());
        }
        let src = self.sources.get_mut(&conn).expect("checked by caller");
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
        let holders = self.count_holders(|_| true) as usize;
        if many && holders < MAX_SOURCES {
            // Big content: draw from several holders at once.
            self.last_want = now;
            out.push(Action::Want((MAX_SOURCES - holders) as u8));
        }
        self.schedule(now, out);
        Ok(())
    }

    /// Checks a chunk frame's header against what was asked over `conn`;
    /// its payload is kept by the caller, and hashed once the chunk is whole.
    fn on_chunk_frame(
        &mut self,
        conn: Conn,
        head: FrameHead,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let Some(manifest) = &self.manifest else {
            return Err("sent a chunk before the manifest".into());
        };
        let src = self.sources.get_mut(&conn).expect("checked by caller");
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
            conn,
            index,
            offset: head.offset,
        });
        if whole {
            src.arriving = None;
            src.in_flight.remove(0);
            self.slots[index as usize] = Slot::Verifying(conn.peer);
            out.push(Action::Verify { conn, index });
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
        if self.conns_of(from).is_empty() {
            // It left meanwhile; it is not asked again if it returns.
            self.banned.insert(from);
            self.schedule(now, out);
        } else {
            self.ban(from, why, now, out);
        }
    }

    /// Asks for the manifest first; then asks every open holder what it
    /// has, and hands missing chunks to connections with room in their
    /// pipeline (see [`scheduler`]).
    fn schedule(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(manifest) = &self.manifest else {
            if self.manifest_from.is_none() {
                if let Some((&conn, _)) = self.sources.iter().find(|(_, s)| s.open) {
                    self.manifest_from = Some(conn);
                    out.push(Action::Send(
                        conn,
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
        // only partly hold the content. A holder's second connection
        // shares the first one's availability: counted once.
        let mut rarity = vec![0u16; count as usize];
        let mut partly = vec![false; count as usize];
        for has in self
            .per_holder(|s| s.has.is_some())
            .filter_map(|(_, s)| s.has.as_ref())
        {
            let full = has.is_full();
            for (i, r) in rarity.iter_mut().enumerate() {
                if has.contains(i as u32) {
                    *r += 1;
                    partly[i] |= !full;
                }
            }
        }
        let block = (BLOCK_BYTES / manifest.chunk_size).max(1);
        // Once other holders are online, a second connection is asked for
        // nothing more and closes when it owes nothing: a crowd around one
        // seeder must not have it serve anyone twice.
        let lone = self.lone_holder();
        let mut retired = Vec::new();
        for (&conn, src) in self.sources.iter_mut().filter(|(_, s)| s.open) {
            if conn.lane > 0 && !lone {
                if src.in_flight.is_empty() {
                    retired.push(conn);
                }
                continue;
            }
            let Some(has) = &src.has else {
                if !std::mem::replace(&mut src.asked_has, true) {
                    src.last_progress = now;
                    out.push(Action::Send(
                        conn,
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
                conn,
                Request::Chunks {
                    content: self.content,
                    indices,
                },
            ));
        }
        for conn in retired {
            self.drop_conn(conn, None, out);
        }
        self.second_lane(now, out);
    }

    /// Opens a second connection to the only holder online, once, for big
    /// content with much still to come (see [`SECOND_LANE_BYTES`]). It
    /// shares what the first one was told the holder has.
    fn second_lane(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(m) = &self.manifest else { return };
        let remaining = m.size - self.verified_bytes;
        if m.size < SECOND_LANE_BYTES
            || remaining < SECOND_LANE_BYTES / 2
            || self.verified_bytes < SECOND_LANE_AFTER_BYTES
            || !self.lone_holder()
            || self.sources.len() != 1
        {
            return;
        }
        let Some((&first, src)) = self.sources.iter().next() else {
            return;
        };
        if first.lane != 0 || !src.open || self.laned.contains(&first.peer) {
            return;
        }
        let Some(has) = src.has.clone() else { return };
        self.laned.insert(first.peer);
        let conn = Conn {
            peer: first.peer,
            lane: 1,
        };
        let mut lane = Source::new(now);
        lane.has = Some(has);
        lane.asked_has = true;
        self.sources.insert(conn, lane);
        out.push(Action::Connect(conn));
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        self.complete = true;
        for conn in std::mem::take(&mut self.sources).into_keys() {
            out.push(Action::Disconnect { conn, reason: None });
        }
        out.push(Action::Complete);
    }

    fn ban(&mut self, peer: PeerId, why: String, now: u64, out: &mut Vec<Action>) {
        self.banned.insert(peer);
        self.drop_holder(peer, Some(why), now, out);
    }

    /// Closes every connection to `peer`.
    fn drop_holder(&mut self, peer: PeerId, why: Option<String>, now: u64, out: &mut Vec<Action>) {
        for conn in self.conns_of(peer) {
            self.drop_conn(conn, why.clone(), out);
        }
        self.after_loss(now, out);
    }

    /// Closes one connection, its chunks in flight back up for grabs.
    fn drop_conn(&mut self, conn: Conn, why: Option<String>, out: &mut Vec<Action>) {
        self.forget(conn);
        out.push(Action::Disconnect { conn, reason: why });
    }

    /// Removes a connection and puts its unfinished chunks back up for
    /// grabs.
    fn forget(&mut self, conn: Conn) {
        if let Some(src) = self.sources.remove(&conn) {
            for index in src.in_flight {
                self.slots[index as usize] = Slot::Missing;
            }
        }
        if self.manifest_from == Some(conn) {
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
        let late: Vec<(Conn, bool, String)> = self
            .sources
            .iter()
            .filter_map(|(conn, s)| {
                let idle = now.saturating_sub(s.last_progress);
                if !s.open && idle > CONNECT_TIMEOUT_MS {
                    Some((*conn, s.open, "could not connect in time".to_owned()))
                } else if s.open && self.owes_data(conn, s) && idle > STALL_TIMEOUT_MS {
                    Some((*conn, s.open, "stalled: sent nothing for 5 s".to_owned()))
                } else {
                    None
                }
            })
            .collect();
        for (conn, open, why) in late {
            if !self.sources.contains_key(&conn) {
                // Dropped with its holder, for its other connection.
                continue;
            }
            if conn.lane > 0 && !open {
                // A second connection that never opened: the first one
                // still serves.
                self.drop_conn(conn, Some(why), out);
            } else {
                // A stalled holder is not trusted again during this download.
                self.ban(conn.peer, why, now, out);
            }
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
        let holders = self.count_holders(|_| true) as usize;
        let known = (holders + self.banned.len()) as u32;
        let room = (MAX_SOURCES - holders) as u32;
        let n = others.saturating_sub(known).min(room);
        (many && n > 0).then_some(n as u8)
    }

    fn owes_data(&self, conn: &Conn, src: &Source) -> bool {
        !src.in_flight.is_empty()
            || (src.asked_has && src.has.is_none())
            || (self.manifest.is_none() && self.manifest_from == Some(*conn))
    }
}

/// Whether `src` said it has chunk `i`.
fn has(src: &Source, i: u32) -> bool {
    src.has.as_ref().is_some_and(|h| h.contains(i))
}

#[cfg(test)]
mod tests;
