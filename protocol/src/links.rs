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

/// A serving connection that asked for nothing (and was sent nothing)
/// this long is closed. A downloading fetcher asks again as each chunk
/// arrives and drops a holder silent for `protocol::download`'s 5 s stall
/// timeout, so a link idle six times that is not in use; a fetcher that
/// needs us again reconnects (within its allowance). One held open
/// without asking only keeps a slot from others.
pub const SERVE_IDLE_MS: u64 = 30_000;
/// When all [`MAX_SERVING`] slots are taken, a serving connection idle at
/// least this long gives way to a new offer: longer than a fetcher's pause
/// between two requests, so a link in use is never the one dropped.
pub const EVICT_IDLE_MS: u64 = 5_000;
/// After refusing the taker of a ready offer (it took too many), the next
/// ready offer waits this long: a peer asking for the content again and
/// again then costs one connection per this time, not one per request.
pub const READY_BACKOFF_MS: u64 = 10_000;

/// Why an offer to serve over a new connection was refused (told to the
/// other peer in its `bye`), or why a serving connection was closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The lane does not exist.
    #[error("lane {0} does not exist: connections to a holder are on lanes 0 and 1")]
    NoSuchLane(u8),
    /// This peer serves [`MAX_SERVING`] connections already, none of them
    /// idle.
    #[error("this holder serves {MAX_SERVING} connections already; ask the broker for another holder or try again later")]
    Full,
    /// The other peer had [`MAX_SERVING_PER_PEER`] connections made within
    /// the window.
    #[error("you opened {MAX_SERVING_PER_PEER} connections to this holder within a minute; wait a minute before offering again")]
    TooOften,
    /// The other peer took a ready offer after [`MAX_SERVING_PER_PEER`]
    /// connections were made for it within the window.
    #[error("you took this holder's ready offer after {MAX_SERVING_PER_PEER} connections to it within a minute; wait a minute before asking for its content again")]
    TookTooOften,
    /// [`MAX_SERVING_MADE`] connections were made within the window.
    #[error("this holder made {MAX_SERVING_MADE} connections within a minute; ask the broker for another holder or try again later")]
    Busy,
    /// The connection asked for nothing for [`SERVE_IDLE_MS`].
    #[error("you asked this holder for nothing for {} s; it closed the connection: connect again when you need something", SERVE_IDLE_MS / 1000)]
    Idle,
    /// The connection was idle and its slot went to a new offer.
    #[error("this holder needed the connection for a peer that asks for something, and yours was idle; connect again when you need something")]
    Evicted,
}

/// A serving connection as [`ServeGate`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServingLink {
    /// Its key.
    pub key: LinkKey,
    /// Since when it has asked for nothing and been sent nothing; `None`
    /// while something it asked for is still being sent.
    pub idle_since: Option<u64>,
}

/// The serving connections among `links` idle for [`SERVE_IDLE_MS`] at
/// `now`: to be closed.
pub fn idle_expired(links: &[ServingLink], now: u64) -> Vec<LinkKey> {
    links
        .iter()
        .filter(|l| l.idle_since.is_some_and(|t| t + SERVE_IDLE_MS <= now))
        .map(|l| l.key)
        .collect()
}

/// When the first of `links` has been idle for [`SERVE_IDLE_MS`].
pub fn idle_deadline(links: &[ServingLink]) -> Option<u64> {
    links
        .iter()
        .filter_map(|l| l.idle_since)
        .min()
        .map(|t| t + SERVE_IDLE_MS)
}

/// Decides whether to make a serving connection, before anything is
/// made: lanes 0 and 1 only, at most [`MAX_SERVING`] at once (the
/// longest-idle one giving way to a new offer when all are taken), and at
/// most so many made per [`SERVE_WINDOW_MS`] for one peer and in all,
/// ready offers charged to whoever takes them. A peer offering on every
/// lane, again and again, or taking ready offers again and again, gets
/// refusals, never connections.
#[derive(Debug, Default)]
pub struct ServeGate {
    /// When each serving connection of the window was made, and for whom
    /// (`None`: a ready offer not taken yet).
    made: VecDeque<(u64, Option<PeerId>)>,
    /// No ready offer before this (after refusing a taker).
    ready_held_until: u64,
}

impl ServeGate {
    /// Whether a serving connection under `key` may be made at `now`,
    /// with `serving` open; if so, it counts as made, and the answer names
    /// the idle connection to close first for it, if all slots are taken.
    pub fn admit(
        &mut self,
        key: &LinkKey,
        serving: &[ServingLink],
        now: u64,
    ) -> Result<Option<LinkKey>, Refusal> {
        if key.lane >= LANES {
            return Err(Refusal::NoSuchLane(key.lane));
        }
        // Replacing one under the same key keeps the count.
        let replaces = serving.iter().any(|l| l.key == *key);
        let evict = if !replaces && serving.len() >= MAX_SERVING {
            Some(longest_idle(serving, now).ok_or(Refusal::Full)?)
        } else {
            None
        };
        self.expire(now);
        if self.made_for(key.peer) >= MAX_SERVING_PER_PEER {
            return Err(Refusal::TooOften);
        }
        self.make(Some(key.peer), now)?;
        Ok(evict)
    }

    /// Whether a ready offer (a serving connection for whoever takes it)
    /// may be made at `now`, with `serving` open; if so, it counts as made.
    /// Callers wait for [`ServeGate::ready_reopens_at`] first.
    pub fn admit_ready(&mut self, serving: usize, now: u64) -> Result<(), Refusal> {
        if serving >= MAX_SERVING {
            return Err(Refusal::Full);
        }
        self.expire(now);
        self.make(None, now)
    }

    /// The ready offer was taken by `by` at `now`: it is charged to `by`'s
    /// allowance, or, if that is spent, refused (the connection is to be
    /// dropped) and the next ready offer held back for
    /// [`READY_BACKOFF_MS`].
    pub fn taken(&mut self, by: PeerId, now: u64) -> Result<(), Refusal> {
        self.expire(now);
        if self.made_for(by) >= MAX_SERVING_PER_PEER {
            self.ready_held_until = now + READY_BACKOFF_MS;
            return Err(Refusal::TookTooOften);
        }
        match self.made.iter_mut().rev().find(|(_, p)| p.is_none()) {
            Some(entry) => entry.1 = Some(by),
            // Made before the window: it counts from now.
            None => self.made.push_back((now, Some(by))),
        }
        Ok(())
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

    /// When a ready offer may be made again, if not at `now`: the window
    /// is full, or a taker was just refused.
    pub fn ready_reopens_at(&self, now: u64) -> Option<u64> {
        let held = (self.ready_held_until > now).then_some(self.ready_held_until);
        self.reopens_at(now).into_iter().chain(held).max()
    }

    fn made_for(&self, peer: PeerId) -> usize {
        self.made.iter().filter(|(_, p)| *p == Some(peer)).count()
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

/// The serving connection idle longest at `now`, if one has been idle at
/// least [`EVICT_IDLE_MS`]: a link in use never gives way.
fn longest_idle(serving: &[ServingLink], now: u64) -> Option<LinkKey> {
    serving
        .iter()
        .filter_map(|l| Some((l.idle_since?, l.key)))
        .filter(|(since, _)| since + EVICT_IDLE_MS <= now)
        .min_by_key(|(since, _)| *since)
        .map(|(_, key)| key)
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

    /// `n` serving links in use (not idle), `replaced` among them.
    fn busy(n: usize, replaced: Option<LinkKey>) -> Vec<ServingLink> {
        let mut links: Vec<ServingLink> = (0..n)
            .map(|i| ServingLink {
                key: serve(1_000 + i as u128, 0),
                idle_since: None,
            })
            .collect();
        if let (Some(key), Some(first)) = (replaced, links.first_mut()) {
            first.key = key;
        }
        links
    }

    #[test]
    fn offers_on_lanes_past_the_second_are_refused() {
        let mut gate = ServeGate::default();
        assert_eq!(gate.admit(&serve(1, 0), &busy(0, None), 0), Ok(None));
        assert_eq!(gate.admit(&serve(1, 1), &busy(1, None), 0), Ok(None));
        for lane in 2..=255 {
            assert_eq!(
                gate.admit(&serve(1, lane), &busy(2, None), 0),
                Err(Refusal::NoSuchLane(lane))
            );
        }
        // Refusals cost nothing of the peer's allowance.
        for _ in 2..MAX_SERVING_PER_PEER {
            assert_eq!(
                gate.admit(&serve(1, 0), &busy(2, Some(serve(1, 0))), 1),
                Ok(None)
            );
        }
        let why = Refusal::NoSuchLane(7).to_string();
        assert!(why.contains("lanes 0 and 1"), "{why}");
    }

    #[test]
    fn one_peer_offering_again_and_again_is_refused_until_the_window_passes() {
        let mut gate = ServeGate::default();
        for _ in 0..MAX_SERVING_PER_PEER {
            assert_eq!(
                gate.admit(&serve(1, 0), &busy(1, Some(serve(1, 0))), 10),
                Ok(None)
            );
        }
        assert_eq!(
            gate.admit(&serve(1, 0), &busy(1, Some(serve(1, 0))), 20),
            Err(Refusal::TooOften)
        );
        // Others are served meanwhile.
        assert_eq!(gate.admit(&serve(2, 0), &busy(1, None), 30), Ok(None));
        assert_eq!(
            gate.admit(&serve(1, 1), &busy(2, None), 10 + SERVE_WINDOW_MS - 1),
            Err(Refusal::TooOften)
        );
        assert_eq!(
            gate.admit(&serve(1, 1), &busy(2, None), 10 + SERVE_WINDOW_MS),
            Ok(None)
        );
        assert!(Refusal::TooOften.to_string().contains("wait a minute"));
    }

    #[test]
    fn serving_connections_are_capped_at_once_and_per_window() {
        let mut gate = ServeGate::default();
        // At the cap, only a replacement is made.
        assert_eq!(
            gate.admit(&serve(1, 0), &busy(MAX_SERVING, None), 0),
            Err(Refusal::Full)
        );
        assert_eq!(gate.admit_ready(MAX_SERVING, 0), Err(Refusal::Full));
        assert_eq!(
            gate.admit(&serve(1, 0), &busy(MAX_SERVING, Some(serve(1, 0))), 0),
            Ok(None)
        );
        // Many peers, each within its allowance, fill the window.
        let mut peer = 2;
        while gate.admit(&serve(peer, 0), &busy(0, None), 5).is_ok() {
            peer += 1;
        }
        assert_eq!(peer as usize - 1, MAX_SERVING_MADE);
        assert_eq!(
            gate.admit(&serve(peer, 0), &busy(0, None), 6),
            Err(Refusal::Busy)
        );
        assert_eq!(gate.admit_ready(0, 6), Err(Refusal::Busy));
        assert_eq!(gate.reopens_at(6), Some(SERVE_WINDOW_MS));
        // The first one made leaves the window: room for one more.
        assert_eq!(gate.admit_ready(0, SERVE_WINDOW_MS), Ok(()));
        assert_eq!(gate.reopens_at(SERVE_WINDOW_MS), Some(5 + SERVE_WINDOW_MS));
        assert_eq!(gate.reopens_at(5 + SERVE_WINDOW_MS), None);
    }

    #[test]
    fn a_peer_taking_ready_offers_again_and_again_is_charged_and_refused() {
        let mut gate = ServeGate::default();
        let taker = PeerId(Uuid::from_u128(9));
        let mut now = 0;
        // Each take is charged to the taker, as its own offers are.
        for _ in 0..MAX_SERVING_PER_PEER {
            assert_eq!(gate.admit_ready(0, now), Ok(()));
            assert_eq!(gate.taken(taker, now), Ok(()));
            now += 50;
        }
        assert_eq!(gate.ready_reopens_at(now), None);
        // Its allowance is spent: a new offer of its own is refused, and so
        // is the next ready offer it takes; the next waits.
        assert_eq!(
            gate.admit(&serve(9, 0), &busy(0, None), now),
            Err(Refusal::TooOften)
        );
        assert_eq!(gate.admit_ready(0, now), Ok(()));
        assert_eq!(gate.taken(taker, now), Err(Refusal::TookTooOften));
        assert_eq!(gate.ready_reopens_at(now), Some(now + READY_BACKOFF_MS));
        assert_eq!(gate.ready_reopens_at(now + READY_BACKOFF_MS), None);
        // Others are unaffected: their offers are admitted meanwhile, and
        // a take by another peer is charged to that peer.
        assert_eq!(gate.admit(&serve(2, 0), &busy(1, None), now + 1), Ok(None));
        assert_eq!(gate.admit_ready(0, now + READY_BACKOFF_MS), Ok(()));
        let other = PeerId(Uuid::from_u128(2));
        assert_eq!(gate.taken(other, now + READY_BACKOFF_MS), Ok(()));
        assert_eq!(gate.made_for(other), 2);
        // The window passes: the taker is served again.
        assert_eq!(gate.taken(taker, SERVE_WINDOW_MS + now), Ok(()));
        let why = Refusal::TookTooOften.to_string();
        assert!(why.contains("wait a minute"), "{why}");
    }

    fn idle(peer: u128, since: u64) -> ServingLink {
        ServingLink {
            key: serve(peer, 0),
            idle_since: Some(since),
        }
    }

    #[test]
    fn idle_serving_links_are_closed_after_the_idle_time() {
        let links = [
            idle(1, 0),
            idle(2, 10),
            ServingLink {
                key: serve(3, 0),
                idle_since: None,
            },
        ];
        assert_eq!(idle_deadline(&links), Some(SERVE_IDLE_MS));
        assert!(idle_expired(&links, SERVE_IDLE_MS - 1).is_empty());
        assert_eq!(idle_expired(&links, SERVE_IDLE_MS), vec![serve(1, 0)]);
        // A link being served is never idle, however old.
        assert_eq!(
            idle_expired(&links, 10 * SERVE_IDLE_MS),
            vec![serve(1, 0), serve(2, 0)]
        );
        assert_eq!(idle_deadline(&busy(3, None)), None);
        assert!(Refusal::Idle.to_string().contains("30 s"));
    }

    #[test]
    fn when_full_the_longest_idle_link_gives_way_never_one_in_use() {
        let mut gate = ServeGate::default();
        let now = 100_000;
        // All slots held by links in use: the offer is refused.
        let mut links = busy(MAX_SERVING, None);
        assert_eq!(gate.admit(&serve(1, 0), &links, now), Err(Refusal::Full));
        // Idle links give way, the longest idle first; one idle only a
        // moment (between two requests) does not.
        links[3] = idle(50, now - EVICT_IDLE_MS);
        links[7] = idle(51, now - 3 * EVICT_IDLE_MS);
        links[9] = idle(52, now - 1);
        assert_eq!(
            gate.admit(&serve(1, 0), &links, now),
            Ok(Some(serve(51, 0)))
        );
        links[7] = idle(51, now - 1);
        assert_eq!(
            gate.admit(&serve(2, 0), &links, now),
            Ok(Some(serve(50, 0)))
        );
        links[3] = idle(50, now - 1);
        assert_eq!(gate.admit(&serve(3, 0), &links, now), Err(Refusal::Full));
        // A refused offer evicts nothing: the caps are checked first.
        links[3] = idle(50, 0);
        for _ in 0..MAX_SERVING_PER_PEER - 1 {
            assert!(gate
                .admit(&serve(1, 1), &busy(1, Some(serve(1, 1))), now)
                .is_ok());
        }
        assert_eq!(
            gate.admit(&serve(1, 0), &links, now),
            Err(Refusal::TooOften)
        );
    }

    #[test]
    fn a_signal_names_the_connection_from_the_receivers_side() {
        let from = PeerId(Uuid::from_u128(1));
        assert_eq!(LinkKey::of_signal(from, Side::Fetch, 1).side, Side::Serve);
        assert_eq!(LinkKey::of_signal(from, Side::Serve, 0), key(Side::Fetch));
        assert_eq!(serde_json::to_string(&Side::Fetch).unwrap(), r#""fetch""#);
    }
}
