//! Which connection between two peers is which, and the table a peer
//! keeps them in.
//!
//! Two peers may have several connections: one each way (each fetching
//! from the other) and, for big content, a second one from a fetcher to
//! its holder (a lane). [`LinkKey`] names one: the other peer, our side
//! and the lane. Signals carry the sender's [`Side`] and the lane, so the
//! receiver finds the same connection under the opposite side.
//!
//! Work on a connection often finishes later (an offer made, an answer
//! applied, a read completed), by which time the connection may have been
//! dropped and another made under the same key. A continuation therefore
//! holds a [`LinkRef`], the key plus the entry's serial number, and
//! reaches the connection only through [`LinkTable::current`] (or
//! [`LinkTable::remove_current`]): a stale one finds nothing and cannot
//! touch the newer connection.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ids::PeerId;

/// Lanes there are: 0, and 1 for a second connection to a lone holder.
pub const LANES: u8 = 2;
/// Most serving connections a peer keeps at once. Chromium refuses to make
/// more than 500 `RTCPeerConnection`s per page (closed ones count until
/// they are garbage collected), and the page's own downloads need some.
pub const MAX_SERVING: usize = 64;
/// Serving connections are counted over this window for the caps below.
pub const SERVE_WINDOW_MS: u64 = 60_000;
/// Most serving connections made for one other peer per window: a
/// download needs one or two, and a few more after losing them.
pub const MAX_SERVING_PER_PEER: usize = 8;
/// Most serving connections made per window in all (ready offers
/// included), so that replacing connections never piles up the closed
/// ones Chromium still counts.
pub const MAX_SERVING_MADE: usize = 192;

/// Why an offer to serve over a new connection was refused (told to the
/// other peer in its `bye`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The lane does not exist.
    #[error("lane {0} does not exist: connections to a holder are on lanes 0 and 1")]
    NoSuchLane(u8),
    /// This peer serves [`MAX_SERVING`] connections already.
    #[error("this holder serves {MAX_SERVING} connections already; ask the broker for another holder or try again later")]
    Full,
    /// The other peer had [`MAX_SERVING_PER_PEER`] connections made within
    /// the window.
    #[error("you opened {MAX_SERVING_PER_PEER} connections to this holder within a minute; wait a minute before offering again")]
    TooOften,
    /// [`MAX_SERVING_MADE`] connections were made within the window.
    #[error("this holder made {MAX_SERVING_MADE} connections within a minute; ask the broker for another holder or try again later")]
    Busy,
}

/// Decides whether to make a serving connection, before anything is
/// made: lanes 0 and 1 only, at most [`MAX_SERVING`] at once, and at
/// most so many made per [`SERVE_WINDOW_MS`] for one peer and in all. A
/// peer offering on every lane, or again and again, gets refusals, never
/// connections.
#[derive(Debug, Default)]
pub struct ServeGate {
    /// When each serving connection of the window was made, and for whom
    /// (`None`: a ready offer, for whoever takes it).
    made: VecDeque<(u64, Option<PeerId>)>,
}

impl ServeGate {
    /// Whether a serving connection under `key` may be made at `now`,
    /// with `serving` of them open; if so, it counts as made.
    pub fn admit(
        &mut self,
        key: &LinkKey,
        serving: usize,
        replaces: bool,
        now: u64,
    ) -> Result<(), Refusal> {
        if key.lane >= LANES {
            return Err(Refusal::NoSuchLane(key.lane));
        }
        // Replacing one under the same key keeps the count.
        if !replaces && serving >= MAX_SERVING {
            return Err(Refusal::Full);
        }
        self.expire(now);
        let of_peer = self.made.iter().filter(|(_, p)| *p == Some(key.peer));
        if of_peer.count() >= MAX_SERVING_PER_PEER {
            return Err(Refusal::TooOften);
        }
        self.make(Some(key.peer), now)
    }

    /// Whether a ready offer (a serving connection for whoever takes it)
    /// may be made at `now`, with `serving` open; if so, it counts as made.
    pub fn admit_ready(&mut self, serving: usize, now: u64) -> Result<(), Refusal> {
        if serving >= MAX_SERVING {
            return Err(Refusal::Full);
        }
        self.expire(now);
        self.make(None, now)
    }

    /// When the window has room again for a connection, if it is full at
    /// `now`.
    pub fn reopens_at(&self, now: u64) -> Option<u64> {
        let mut live = self
            .made
            .iter()
            .map(|(at, _)| at + SERVE_WINDOW_MS)
            .skip_while(|&end| end <= now)
            .peekable();
        let first = *live.peek()?;
        (live.count() >= MAX_SERVING_MADE).then_some(first)
    }

    fn make(&mut self, peer: Option<PeerId>, now: u64) -> Result<(), Refusal> {
        if self.made.len() >= MAX_SERVING_MADE {
            return Err(Refusal::Busy);
        }
        self.made.push_back((now, peer));
        Ok(())
    }

    fn expire(&mut self, now: u64) {
        while self
            .made
            .front()
            .is_some_and(|(at, _)| at + SERVE_WINDOW_MS <= now)
        {
            self.made.pop_front();
        }
    }
}

/// Which end of a connection a peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// It fetches content over the connection (it made the want).
    Fetch,
    /// It serves what it holds over the connection.
    Serve,
}

impl Side {
    /// The other end's side.
    pub fn other(self) -> Side {
        match self {
            Side::Fetch => Side::Serve,
            Side::Serve => Side::Fetch,
        }
    }
}

/// One connection between this peer and another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    /// The other peer.
    pub peer: PeerId,
    /// Our side of it.
    pub side: Side,
    /// Which connection between the two of us, for this side: 0, or 1 for a
    /// second one to the same holder.
    pub lane: u8,
}

impl LinkKey {
    /// The connection named by a signal from `from` that says the sender
    /// is on `side` of it.
    pub fn of_signal(from: PeerId, side: Side, lane: u8) -> Self {
        LinkKey {
            peer: from,
            side: side.other(),
            lane,
        }
    }
}

/// One entry of a [`LinkTable`], as it was when a continuation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkRef {
    /// The connection's key.
    pub key: LinkKey,
    serial: u64,
}

/// Connections by key, each entry numbered so that work started on one
/// never reaches a later entry under the same key.
#[derive(Debug)]
pub struct LinkTable<T> {
    entries: HashMap<LinkKey, (u64, T)>,
    next: u64,
}

impl<T> Default for LinkTable<T> {
    fn default() -> Self {
        LinkTable {
            entries: HashMap::new(),
            next: 0,
        }
    }
}

impl<T> LinkTable<T> {
    /// Adds a connection under `key`, dropping any earlier one there;
    /// returns the reference continuations use.
    pub fn insert(&mut self, key: LinkKey, value: T) -> LinkRef {
        self.next += 1;
        self.entries.insert(key, (self.next, value));
        LinkRef {
            key,
            serial: self.next,
        }
    }

    /// The reference to the connection now under `key`.
    pub fn current_ref(&self, key: &LinkKey) -> Option<LinkRef> {
        self.entries.get(key).map(|(serial, _)| LinkRef {
            key: *key,
            serial: *serial,
        })
    }

    /// The connection under `key`, whichever it is.
    pub fn get(&self, key: &LinkKey) -> Option<&T> {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// The connection under `key`, whichever it is.
    pub fn get_mut(&mut self, key: &LinkKey) -> Option<&mut T> {
        self.entries.get_mut(key).map(|(_, v)| v)
    }

    /// The connection `link` refers to, if it is still the one in the
    /// table.
    pub fn current(&self, link: &LinkRef) -> Option<&T> {
        match self.entries.get(&link.key) {
            Some((serial, v)) if *serial == link.serial => Some(v),
            _ => None,
        }
    }

    /// As [`LinkTable::current`], mutably.
    pub fn current_mut(&mut self, link: &LinkRef) -> Option<&mut T> {
        match self.entries.get_mut(&link.key) {
            Some((serial, v)) if *serial == link.serial => Some(v),
            _ => None,
        }
    }

    /// Removes the connection under `key`, whichever it is.
    pub fn remove(&mut self, key: &LinkKey) -> Option<T> {
        self.entries.remove(key).map(|(_, v)| v)
    }

    /// Removes the connection `link` refers to, if it is still the one in
    /// the table; a newer one under the same key stays.
    pub fn remove_current(&mut self, link: &LinkRef) -> Option<T> {
        self.current(link)?;
        self.remove(&link.key)
    }

    /// Whether a connection is under `key`.
    pub fn contains(&self, key: &LinkKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Every connection.
    pub fn iter(&self) -> impl Iterator<Item = (&LinkKey, &T)> {
        self.entries.iter().map(|(k, (_, v))| (k, v))
    }

    /// Keeps the connections `f` accepts.
    pub fn retain(&mut self, mut f: impl FnMut(&LinkKey, &mut T) -> bool) {
        self.entries.retain(|k, (_, v)| f(k, v));
    }

    /// Drops every connection.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn key(side: Side) -> LinkKey {
        LinkKey {
            peer: PeerId(Uuid::from_u128(1)),
            side,
            lane: 0,
        }
    }

    #[test]
    fn a_stale_continuation_cannot_reach_or_drop_the_connection_that_replaced_it() {
        let mut table = LinkTable::default();
        let old = table.insert(key(Side::Fetch), "first");
        // Dropped while its offer was being made, then made again.
        assert_eq!(table.remove(&key(Side::Fetch)), Some("first"));
        let new = table.insert(key(Side::Fetch), "second");
        // The old offer's failure arrives: it finds nothing to tear down.
        assert_eq!(table.current(&old), None);
        assert_eq!(table.current_mut(&old), None);
        assert_eq!(table.remove_current(&old), None);
        assert_eq!(table.get(&key(Side::Fetch)), Some(&"second"));
        // The new one's continuation still reaches it, once.
        assert_eq!(table.current(&new), Some(&"second"));
        assert_eq!(table.current_ref(&key(Side::Fetch)), Some(new));
        assert_eq!(table.remove_current(&new), Some("second"));
        assert_eq!(table.remove_current(&new), None);
    }

    #[test]
    fn replacing_under_the_same_key_makes_earlier_references_stale() {
        let mut table = LinkTable::default();
        let old = table.insert(key(Side::Serve), 1);
        let new = table.insert(key(Side::Serve), 2);
        assert_ne!(old, new);
        assert_eq!(table.current(&old), None);
        assert_eq!(table.current(&new), Some(&2));
        // The other side's connection with the same peer is another entry.
        let fetch = table.insert(key(Side::Fetch), 3);
        assert_eq!(table.current(&new), Some(&2));
        assert_eq!(table.current(&fetch), Some(&3));
    }

    fn serve(peer: u128, lane: u8) -> LinkKey {
        LinkKey {
            peer: PeerId(Uuid::from_u128(peer)),
            side: Side::Serve,
            lane,
        }
    }

    #[test]
    fn offers_on_lanes_past_the_second_are_refused() {
        let mut gate = ServeGate::default();
        assert_eq!(gate.admit(&serve(1, 0), 0, false, 0), Ok(()));
        assert_eq!(gate.admit(&serve(1, 1), 1, false, 0), Ok(()));
        for lane in 2..=255 {
            assert_eq!(
                gate.admit(&serve(1, lane), 2, false, 0),
                Err(Refusal::NoSuchLane(lane))
            );
        }
        // Refusals cost nothing of the peer's allowance.
        for _ in 2..MAX_SERVING_PER_PEER {
            assert_eq!(gate.admit(&serve(1, 0), 2, true, 1), Ok(()));
        }
        let why = Refusal::NoSuchLane(7).to_string();
        assert!(why.contains("lanes 0 and 1"), "{why}");
    }

    #[test]
    fn one_peer_offering_again_and_again_is_refused_until_the_window_passes() {
        let mut gate = ServeGate::default();
        for _ in 0..MAX_SERVING_PER_PEER {
            assert_eq!(gate.admit(&serve(1, 0), 1, true, 10), Ok(()));
        }
        assert_eq!(
            gate.admit(&serve(1, 0), 1, true, 20),
            Err(Refusal::TooOften)
        );
        // Others are served meanwhile.
        assert_eq!(gate.admit(&serve(2, 0), 1, false, 30), Ok(()));
        assert_eq!(
            gate.admit(&serve(1, 1), 2, false, 10 + SERVE_WINDOW_MS - 1),
            Err(Refusal::TooOften)
        );
        assert_eq!(
            gate.admit(&serve(1, 1), 2, false, 10 + SERVE_WINDOW_MS),
            Ok(())
        );
        assert!(Refusal::TooOften.to_string().contains("wait a minute"));
    }

    #[test]
    fn serving_connections_are_capped_at_once_and_per_window() {
        let mut gate = ServeGate::default();
        // At the cap, only a replacement is made.
        assert_eq!(
            gate.admit(&serve(1, 0), MAX_SERVING, false, 0),
            Err(Refusal::Full)
        );
        assert_eq!(gate.admit_ready(MAX_SERVING, 0), Err(Refusal::Full));
        assert_eq!(gate.admit(&serve(1, 0), MAX_SERVING, true, 0), Ok(()));
        // Many peers, each within its allowance, fill the window.
        let mut peer = 2;
        while gate.admit(&serve(peer, 0), 0, false, 5).is_ok() {
            peer += 1;
        }
        assert_eq!(peer as usize - 1, MAX_SERVING_MADE);
        assert_eq!(gate.admit(&serve(peer, 0), 0, false, 6), Err(Refusal::Busy));
        assert_eq!(gate.admit_ready(0, 6), Err(Refusal::Busy));
        assert_eq!(gate.reopens_at(6), Some(SERVE_WINDOW_MS));
        // The first one made leaves the window: room for one more.
        assert_eq!(gate.admit_ready(0, SERVE_WINDOW_MS), Ok(()));
        assert_eq!(gate.reopens_at(SERVE_WINDOW_MS), Some(5 + SERVE_WINDOW_MS));
        assert_eq!(gate.reopens_at(5 + SERVE_WINDOW_MS), None);
    }

    #[test]
    fn a_signal_names_the_connection_from_the_receivers_side() {
        let from = PeerId(Uuid::from_u128(1));
        assert_eq!(LinkKey::of_signal(from, Side::Fetch, 1).side, Side::Serve);
        assert_eq!(LinkKey::of_signal(from, Side::Serve, 0), key(Side::Fetch));
        assert_eq!(serde_json::to_string(&Side::Fetch).unwrap(), r#""fetch""#);
    }
}
