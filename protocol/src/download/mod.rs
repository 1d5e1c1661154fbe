//! The wanter's side of a transfer, as a state machine without I/O:
//! want -> connect -> receive -> verify -> store -> hold.
//!
//! The caller feeds it [`Input`]s (introductions, channel events, frames,
//! availability, the clock) and carries out the [`Action`]s it returns
//! (open a connection, send a request, drop a holder, ask the broker for
//! more holders, keep, verify and store chunks). Every input carries
//! `now`, a monotonic millisecond clock; the machine names its next
//! deadline ([`Download::next_deadline`]) and the caller feeds
//! [`Input::Tick`] then. Nothing is handed out without passing the
//! manifest check against the address, and no chunk without passing its
//! hash check.
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
//! Chunks are drawn from up to [`MAX_SOURCES`] holders at once (see
//! [`holders`]: availability and bans are a holder's, requests and
//! timeouts a connection's), each told what it has (`Reply::Has` /
//! `Reply::Got`), rarest first (see [`scheduler`]). Holders that send bad
//! data are banned for the rest of the download ([`DropReason`] says
//! why); holders that vanish cost only their chunks in flight.
//!
//! Content bigger than the page wants unasked waits, once its manifest
//! is verified, for the user's yes ([`Download::confirm`]).
//!
//! Big content from a lone holder comes over two connections to it
//! ([`Conn`]'s lanes, see [`SECOND_LANE_BYTES`]): each is its own SCTP
//! association over its own UDP socket, so a receiver that falls behind
//! loses fewer datagrams, and the two recover from losses apart.

use crate::ids::ContentId;
use crate::manifest::Manifest;
use crate::transfer::Request;

mod confirm;
pub mod holders;
mod io;
mod origin;
mod receive;
mod requests;
pub mod scheduler;
mod status;
mod timeouts;
mod vec_map;

pub use holders::{Conn, HolderId};
pub use io::{Action, DropReason, Input};
pub use origin::{ORIGIN_EARLY_CHUNKS, ORIGIN_LANES, ORIGIN_RUN_BYTES, ORIGIN_WAIT_MS};
pub use status::Status;

use holders::{Connection, Holder, Holders};

/// Most holders a download draws from at once.
pub const MAX_SOURCES: usize = 4;
/// Chunks requested from one holder before the first of them arrives.
pub const PIPELINE: usize = 4;
/// A connection that owes chunks is asked for more once it owes this many
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
/// A connection whose data channel is not open after this long is dropped.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// A connection that owes data and makes no progress for this long is
/// dropped: progress is [`MIN_PROGRESS_BYTES`] of payload, or finishing
/// what it owed (the manifest, what it has, a chunk).
pub const STALL_TIMEOUT_MS: u64 = 5_000;
/// Payload bytes a connection that owes data must deliver per
/// [`STALL_TIMEOUT_MS`]: 3.2 KiB/s, about 26 kbit/s. A 1 Mbit/s link
/// delivers 38 times that, and a holder sharing such a link among 30
/// downloaders still passes; frames with (next to) no payload do not.
pub const MIN_PROGRESS_BYTES: u64 = 16 << 10;
/// A connection that has owed its first chunk in flight this long is
/// late: connections of other holders with nothing else to do ask for
/// its chunks too (the endgame), the first copy that verifies is stored
/// and the others are dropped as they arrive. A 256 KiB chunk takes
/// 2.1 s at 1 Mbit/s, tens of milliseconds on a typical link.
pub const ENDGAME_LATE_MS: u64 = 3_000;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    /// Missing, and not asked for until the user confirms (see
    /// [`Download::confirm`]).
    Gated,
    Requested,
    /// Whole, and being hashed by the caller: from this holder.
    Verifying(HolderId),
    Done,
}

/// One download. See the module docs.
#[derive(Debug)]
pub struct Download {
    content: ContentId,
    manifest: Option<Manifest>,
    /// The connection the manifest was asked over, until it arrived.
    manifest_from: Option<Conn>,
    slots: Vec<Slot>,
    verified_bytes: u64,
    holders: Holders,
    holders_online: Option<u32>,
    last_want: u64,
    /// Where ties in the chunk order start (random per download).
    start: u32,
    complete: bool,
    /// Content bigger than this waits for the user's yes (see `confirm`).
    confirm_above: Option<u64>,
    /// Waiting for it now.
    gated: bool,
    /// Blocks in index order rather than shuffled (see
    /// [`Download::set_sequential`]).
    sequential: bool,
    /// When the origin was added, and chunks asked of it while the peers
    /// online were not known (see [`origin`]).
    origin_since: u64,
    origin_early: usize,
    /// Whether the wait for peers to be known is over.
    origin_waited: bool,
    /// This peer's id, if the caller said (see [`Download::set_me`]).
    me: Option<crate::ids::PeerId>,
}

impl Download {
    /// Starts a download. The caller has sent (or is sending) a `want` for
    /// one holder; `now` is a monotonic millisecond clock; `seed` is random
    /// and picks where in the content this download starts.
    pub fn new(content: ContentId, now: u64, seed: u32) -> Self {
        Download {
            content,
            manifest: None,
            manifest_from: None,
            slots: Vec::new(),
            verified_bytes: 0,
            holders: Holders::default(),
            holders_online: None,
            last_want: now,
            start: seed,
            complete: false,
            confirm_above: None,
            gated: false,
            sequential: false,
            origin_since: now,
            origin_early: 0,
            origin_waited: false,
            me: None,
        }
    }

    /// The verified manifest, once it arrived.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Whether this holder was caught sending bad data or stalling.
    pub fn is_banned(&self, holder: &HolderId) -> bool {
        self.holders.banned.contains(holder)
    }

    /// Decides now what to ask of a holder that answers before its channel
    /// opens: one introduced with a ready offer, whose answer carries the
    /// first request so that the holder sends as soon as the channel opens.
    /// The request counts as sent; `None` if there is nothing to ask yet.
    pub fn request_ahead(&mut self, holder: HolderId, now: u64) -> Option<Request> {
        let conn = Conn::first(holder);
        let h = self.holders.map.get_mut(&holder)?;
        if h.conns.get(&0).is_none_or(|c| c.open) {
            return None;
        }
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
        if std::mem::replace(&mut h.asked_has, true) {
            return None;
        }
        if let Some(c) = h.conns.get_mut(&0) {
            c.last_progress = now;
        }
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
                Input::Introduced(holder) => out.push(Action::Disconnect {
                    conn: Conn::first(holder),
                    reason: None,
                }),
                Input::Opened(conn) => out.push(Action::Disconnect { conn, reason: None }),
                _ => {}
            }
            return out;
        }
        let known = |d: &Self, conn: &Conn| d.holders.contains(conn);
        let had_manifest = self.manifest.is_some();
        match input {
            Input::Introduced(holder) => {
                // A holder left with only its second connection gets a
                // first one again.
                let listed = self.holders.map.contains_key(&holder);
                if !self.holders.banned.contains(&holder)
                    && !self.holders.contains(&Conn::first(holder))
                {
                    if !listed && self.holders.peer_count() >= MAX_SOURCES {
                        self.make_room(&mut out);
                    }
                    if listed || self.holders.peer_count() < MAX_SOURCES {
                        self.holders.connect(Conn::first(holder), now);
                        out.push(Action::Connect(Conn::first(holder)));
                    }
                }
            }
            Input::Opened(conn) => {
                if let Some(c) = self.holders.conn_mut(&conn) {
                    c.open = true;
                    c.last_progress = now;
                    self.schedule(now, &mut out);
                }
            }
            Input::Frame(conn, bytes) if known(self, &conn) => {
                if let Err(why) = self.on_frame(conn, bytes, now, &mut out) {
                    self.ban(conn.holder, why, now, &mut out);
                }
            }
            Input::ChunkFrame(conn, head) if known(self, &conn) => {
                if let Err(why) = self.on_chunk_frame(conn, head, now, &mut out) {
                    self.ban(conn.holder, why, now, &mut out);
                }
            }
            Input::BadFrame(conn, why) if known(self, &conn) => {
                self.ban(conn.holder, DropReason::BadFrame(why), now, &mut out);
            }
            Input::Hashed { index, hash } => self.on_hashed(index, hash, now, &mut out),
            Input::Reply(conn, reply) if known(self, &conn) => {
                self.on_reply(conn, reply, now, &mut out);
            }
            Input::Lost(conn) if known(self, &conn) => {
                // The connection is already gone; nothing to close.
                self.forget(conn);
                self.after_loss(now, &mut out);
            }
            Input::Holders(count) => self.holders_online = Some(count),
            Input::Tick => self.check_timeouts(now, &mut out),
            // From a connection this download no longer has.
            Input::Frame(..)
            | Input::ChunkFrame(..)
            | Input::BadFrame(..)
            | Input::Reply(..)
            | Input::Lost(..) => {}
        }
        self.gate(had_manifest, &mut out);
        out
    }

    /// Whether the holders online are one and this peer (which holds from
    /// the manifest on): the case for a second connection.
    fn lone_holder(&self) -> bool {
        self.holders_online == Some(2)
    }

    /// Whether `h` said what it has and has none of the chunks still to
    /// come (missing, waiting for the yes, or owed by a connection that
    /// may be late) and owes nothing: it only takes up a place.
    fn is_useless(&self, h: &Holder) -> bool {
        let Some(has) = &h.has else { return false };
        let idle = h.conns.values().all(|c| c.in_flight.is_empty());
        idle && (0..has.len()).all(|i| !has.contains(i) || self.slots[i as usize] == Slot::Done)
    }

    /// Drops one holder with nothing useful, if any, so that a newly
    /// introduced one can take its place: otherwise holders that claim to
    /// have nothing would keep every place, since they owe nothing and so
    /// never stall. Not banned: an honest holder that gains chunks later
    /// may be introduced again.
    fn make_room(&mut self, out: &mut Vec<Action>) {
        let useless = self.holders.map.iter().find(|(_, h)| self.is_useless(h));
        let Some(holder) = useless.map(|(&holder, _)| holder) else {
            return;
        };
        for conn in self.holders.conns_of(holder) {
            self.drop_conn(conn, Some(DropReason::NothingToOffer), out);
        }
    }

    /// Bans `holder` for the rest of the download and drops it.
    fn ban(&mut self, holder: HolderId, why: DropReason, now: u64, out: &mut Vec<Action>) {
        self.holders.banned.insert(holder);
        self.drop_holder(holder, Some(why), now, out);
    }

    /// Closes every connection to `holder`.
    fn drop_holder(
        &mut self,
        holder: HolderId,
        why: Option<DropReason>,
        now: u64,
        out: &mut Vec<Action>,
    ) {
        for conn in self.holders.conns_of(holder) {
            self.drop_conn(conn, why.clone(), out);
        }
        self.after_loss(now, out);
    }

    /// Closes one connection, its chunks in flight back up for grabs.
    fn drop_conn(&mut self, conn: Conn, why: Option<DropReason>, out: &mut Vec<Action>) {
        self.forget(conn);
        out.push(Action::Disconnect { conn, reason: why });
    }

    /// Removes a connection and puts its unfinished chunks back up for
    /// grabs (those not in flight elsewhere too).
    fn forget(&mut self, conn: Conn) {
        for index in self.holders.remove(&conn).unwrap_or_default() {
            self.release(index);
        }
        if self.manifest_from == Some(conn) {
            self.manifest_from = None;
        }
    }

    fn after_loss(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.holders.peer_count() == 0 {
            self.last_want = now;
            out.push(Action::Want(1));
        }
        self.schedule(now, out);
    }
}

#[cfg(test)]
mod tests;
