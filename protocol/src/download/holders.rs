//! Whom a download draws from. A holder has what it has (its
//! availability) and is banned or not as a whole; it is reached over one
//! or more connections, and each connection has its own requests in
//! flight, the chunk arriving over it and its own timeouts.
//!
//! A holder need not be a peer: the site's origin is one that has every
//! chunk and is reached another way, asked only for what peers cannot
//! give (see [`super::origin`]).

use std::collections::HashSet;
use std::fmt;

use crate::availability::Availability;
use crate::ids::PeerId;
use crate::transfer::{Assembly, Cursor};

use super::vec_map::VecMap;

/// Who holds the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HolderId {
    /// Another browser, introduced by the broker.
    Peer(PeerId),
    /// The site's origin server, which has every chunk.
    Origin,
}

impl From<PeerId> for HolderId {
    fn from(peer: PeerId) -> Self {
        HolderId::Peer(peer)
    }
}

impl HolderId {
    /// The peer this holder is, if it is one.
    pub fn peer(self) -> Option<PeerId> {
        match self {
            HolderId::Peer(peer) => Some(peer),
            HolderId::Origin => None,
        }
    }
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HolderId::Peer(peer) => write!(f, "peer {peer}"),
            HolderId::Origin => f.write_str("the origin"),
        }
    }
}

/// One connection to a holder. Lane 0 is the first; a download may open
/// lane 1 to the same holder for big content (see
/// [`super::SECOND_LANE_BYTES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conn {
    /// The holder.
    pub holder: HolderId,
    /// Which of its connections.
    pub lane: u8,
}

impl Conn {
    /// The first connection to `holder`.
    pub fn first(holder: impl Into<HolderId>) -> Self {
        Conn {
            holder: holder.into(),
            lane: 0,
        }
    }
}

/// A holder the download is connected or connecting to.
#[derive(Debug, Default)]
pub(super) struct Holder {
    /// What it has, once it said.
    pub has: Option<Availability>,
    /// Whether its availability was asked for (or comes with the manifest).
    pub asked_has: bool,
    /// Its connections, by lane; never empty while the holder is listed.
    pub conns: VecMap<u8, Connection>,
}

impl Holder {
    /// Whether it said it has chunk `i`.
    pub fn has(&self, i: u32) -> bool {
        self.has.as_ref().is_some_and(|h| h.contains(i))
    }

    /// Whether one of its connections is open.
    pub fn is_open(&self) -> bool {
        self.conns.values().any(|c| c.open)
    }

    /// Whether an open connection of it owes chunks.
    pub fn is_sending(&self) -> bool {
        self.conns
            .values()
            .any(|c| c.open && !c.in_flight.is_empty())
    }
}

/// One connection's state.
#[derive(Debug)]
pub(super) struct Connection {
    /// Whether its data channel is open.
    pub open: bool,
    /// When it was made, or last made progress: delivered
    /// [`super::MIN_PROGRESS_BYTES`] or finished something it owed.
    pub last_progress: u64,
    /// Payload bytes delivered since `last_progress`.
    pub window_bytes: u64,
    /// Chunk indices requested and not yet delivered, in request order.
    /// A chunk may also be in flight at another holder (see
    /// [`super::ENDGAME_LATE_MS`]).
    pub in_flight: Vec<u32>,
    /// When it began to owe the first chunk in flight (it was asked for
    /// chunks while owing none, or finished the one before).
    pub owing_since: u64,
    /// When its first chunk in flight becomes late, until the clock has
    /// passed that moment once (see [`super::Download::next_deadline`]).
    pub late_at: Option<u64>,
    /// The manifest, while it arrives over this connection.
    pub manifest_asm: Option<Assembly>,
    /// The chunk arriving over it (the first in flight), by its frames'
    /// headers: the caller keeps the bytes.
    pub arriving: Option<Cursor>,
    /// Whether the caller keeps the arriving chunk's bytes: not once
    /// another copy of it is whole.
    pub keeping: bool,
}

impl Connection {
    pub fn new(now: u64) -> Self {
        Connection {
            open: false,
            last_progress: now,
            window_bytes: 0,
            in_flight: Vec::new(),
            owing_since: now,
            late_at: None,
            manifest_asm: None,
            arriving: None,
            keeping: false,
        }
    }

    /// It made progress now: its stall window starts again.
    pub fn progressed(&mut self, now: u64) {
        self.last_progress = now;
        self.window_bytes = 0;
    }

    /// It delivered `bytes` of payload: progress once they add up to
    /// [`super::MIN_PROGRESS_BYTES`] within one stall window, so a holder
    /// that trickles frames with (next to) nothing in them stalls all the
    /// same.
    pub fn delivered(&mut self, bytes: u32, now: u64) {
        self.window_bytes += u64::from(bytes);
        if self.window_bytes >= super::MIN_PROGRESS_BYTES {
            self.progressed(now);
        }
    }

    /// It starts owing its (new) first chunk in flight now.
    pub fn owes_next(&mut self, now: u64) {
        self.owing_since = now;
        self.late_at = (!self.in_flight.is_empty()).then_some(now + super::ENDGAME_LATE_MS);
    }

    /// Whether its first chunk in flight is late at `now`.
    pub fn is_late(&self, now: u64) -> bool {
        !self.in_flight.is_empty() && now >= self.owing_since + super::ENDGAME_LATE_MS
    }
}

/// Every holder of one download, and those it will not use again.
#[derive(Debug, Default)]
pub(super) struct Holders {
    /// Ordered, so that iteration (and so the order of requests) is the
    /// same on every run.
    pub map: VecMap<HolderId, Holder>,
    /// Caught sending bad data or stalling: not asked again.
    pub banned: HashSet<HolderId>,
    /// Holders a second connection was opened to (once per download).
    pub laned: HashSet<HolderId>,
}

impl Holders {
    /// How many holders have a connection, open or not.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// How many of them are peers (not the origin).
    pub fn peer_count(&self) -> usize {
        self.map.keys().filter(|h| h.peer().is_some()).count()
    }

    /// How many holders `f` holds for.
    pub fn count(&self, f: impl Fn(&Holder) -> bool) -> u32 {
        self.map.values().filter(|h| f(h)).count() as u32
    }

    /// Whether this connection exists.
    pub fn contains(&self, conn: &Conn) -> bool {
        self.map
            .get(&conn.holder)
            .is_some_and(|h| h.conns.contains_key(&conn.lane))
    }

    /// The connection `conn`.
    pub fn conn_mut(&mut self, conn: &Conn) -> Option<&mut Connection> {
        self.map.get_mut(&conn.holder)?.conns.get_mut(&conn.lane)
    }

    /// Adds a connection to `conn.holder`, listing the holder if new.
    pub fn connect(&mut self, conn: Conn, now: u64) {
        self.map
            .get_or_default(conn.holder)
            .conns
            .insert(conn.lane, Connection::new(now));
    }

    /// The connections to `holder`.
    pub fn conns_of(&self, holder: HolderId) -> Vec<Conn> {
        self.map.get(&holder).map_or_else(Vec::new, |h| {
            h.conns.keys().map(|&lane| Conn { holder, lane }).collect()
        })
    }

    /// Every connection, with its holder.
    pub fn conns(&self) -> impl Iterator<Item = (Conn, &Holder, &Connection)> {
        self.map.iter().flat_map(|(&holder, h)| {
            h.conns
                .iter()
                .map(move |(&lane, c)| (Conn { holder, lane }, h, c))
        })
    }

    /// Removes a connection (and its holder with its last one); returns
    /// the chunks it had in flight.
    pub fn remove(&mut self, conn: &Conn) -> Option<Vec<u32>> {
        let holder = self.map.get_mut(&conn.holder)?;
        let connection = holder.conns.remove(&conn.lane)?;
        if holder.conns.is_empty() {
            self.map.remove(&conn.holder);
        }
        Some(connection.in_flight)
    }
}
