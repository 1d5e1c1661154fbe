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

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::PeerId;

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

    #[test]
    fn a_signal_names_the_connection_from_the_receivers_side() {
        let from = PeerId(Uuid::from_u128(1));
        assert_eq!(LinkKey::of_signal(from, Side::Fetch, 1).side, Side::Serve);
        assert_eq!(LinkKey::of_signal(from, Side::Serve, 0), key(Side::Fetch));
        assert_eq!(serde_json::to_string(&Side::Fetch).unwrap(), r#""fetch""#);
    }
}
