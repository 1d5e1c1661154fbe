//! The site's origin as a fallback holder (peer-assisted delivery of a
//! site's files): it has every chunk, but is asked only for what peers
//! cannot give, so a visitor costs the site little egress when others
//! hold the file, and is never slower than a plain fetch when none do.
//!
//! The origin is reached over [`ORIGIN_LANES`] connections, each one HTTP
//! `Range` request at a time for a run of neighbouring chunks. It is asked
//! for
//! * the first chunks, one per lane ([`ORIGIN_EARLY_CHUNKS`] in all),
//!   while it is not yet known which peers hold what (the broker has not
//!   answered, or holders it counts are still connecting or have not said
//!   what they have), for at most [`ORIGIN_WAIT_MS`]: past that, peers
//!   not yet known are not waited for;
//! * once that is known, runs of chunks no connected peer has: for a lone
//!   visitor all of them, front to back, [`ORIGIN_RUN_BYTES`] a request;
//!   beside other peers that lack chunks too (visitors arriving together),
//!   a block (about 1 MiB) at a time, untouched blocks first in this
//!   download's own random order, only those it owns (rendezvous hashing
//!   of peer ids, the same for all of them) while peers are sending it
//!   anything, so that they ask for different blocks and trade them;
//! * chunks late at a peer (the endgame, [`super::ENDGAME_LATE_MS`]).

use crate::availability::Availability;
use crate::ids::{ContentId, PeerId};
use crate::manifest::{Manifest, ManifestError};

use super::requests::request;
use super::{Action, Conn, Download, HolderId, Slot, BLOCK_BYTES, MAX_SOURCES};

/// Which of `members` owns block `block` (see `schedule_origin`).
fn owner(members: &[PeerId], block: u32) -> PeerId {
    let weight = |m: &PeerId| {
        let mut x = (m.0.as_u128() as u64) ^ ((m.0.as_u128() >> 64) as u64);
        x ^= u64::from(block).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    *members
        .iter()
        .max_by_key(|m| weight(m))
        .expect("at least this peer")
}

/// Range requests to the origin at once.
pub const ORIGIN_LANES: u8 = 2;
/// Most bytes one range request asks for.
pub const ORIGIN_RUN_BYTES: u32 = 4 << 20;
/// Chunks asked of the origin while the peers online are not known: one
/// per lane, asked at once, so a lone visitor loses no time; more would
/// have a fast origin serve much of a file while the first peer connects
/// (a site's files are often a few chunks each).
pub const ORIGIN_EARLY_CHUNKS: usize = ORIGIN_LANES as usize;
/// How long the origin waits, after those, for the peers online to be
/// known: a peer connects in a few hundred milliseconds; one that does not
/// must not make a visitor slower than a plain fetch for long.
pub const ORIGIN_WAIT_MS: u64 = 1_500;

impl Download {
    /// Starts a download whose manifest came another way (from the site's
    /// origin): `manifest_bytes` are checked against `content` first. The
    /// actions set up storage ([`Action::Manifest`]) and ask the broker for
    /// holders; add the origin with [`Download::add_origin`].
    pub fn with_manifest(
        content: ContentId,
        manifest_bytes: Vec<u8>,
        now: u64,
        seed: u32,
    ) -> Result<(Download, Vec<Action>), ManifestError> {
        let manifest = Manifest::verify(&content, &manifest_bytes)?;
        let mut download = Download::new(content, now, seed);
        download.slots = vec![Slot::Missing; manifest.chunk_count() as usize];
        download.manifest = Some(manifest.clone());
        let mut out = vec![Action::Manifest {
            manifest: manifest.clone(),
            manifest_bytes,
        }];
        if manifest.chunk_count() > 1 {
            out.push(Action::Want(MAX_SOURCES as u8));
        }
        if manifest.chunk_count() == 0 {
            download.schedule(now, &mut out);
        }
        Ok((download, out))
    }

    /// This peer's own id (from the broker), so that peers fetching the
    /// same content from the origin together can split it (see
    /// `schedule_origin`).
    pub fn set_me(&mut self, me: Option<PeerId>) {
        self.me = me;
    }

    /// Equally rare chunks come front to back (see
    /// [`super::scheduler::Order::Sequential`]), for content a page uses
    /// as it arrives.
    pub fn set_sequential(&mut self, sequential: bool) {
        self.sequential = sequential;
    }

    /// Draws on the site's origin too (see the module docs). Its lanes are
    /// open at once: each [`Action::Send`] to it is one range request,
    /// whose body the caller hands in as chunk frames over that lane.
    pub fn add_origin(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(m) = &self.manifest else {
            return out;
        };
        if self.complete || self.holders.banned.contains(&HolderId::Origin) {
            return out;
        }
        let count = m.chunk_count();
        self.origin_since = now;
        for lane in 0..ORIGIN_LANES {
            let conn = Conn {
                holder: HolderId::Origin,
                lane,
            };
            self.holders.connect(conn, now);
            if let Some(c) = self.holders.conn_mut(&conn) {
                c.open = true;
            }
        }
        if let Some(h) = self.holders.map.get_mut(&HolderId::Origin) {
            h.has = Some(Availability::all(count));
            h.asked_has = true;
        }
        self.schedule(now, &mut out);
        out
    }

    /// How many peers (not the origin) it is connected or connecting to.
    pub fn peer_count(&self) -> usize {
        self.holders.peer_count()
    }

    /// Whether the origin is one of the holders (not dropped or banned).
    pub fn has_origin(&self) -> bool {
        self.holders.map.contains_key(&HolderId::Origin)
    }

    /// Whether the origin is held back for peers not known yet.
    fn origin_waiting(&self) -> bool {
        !self.origin_waited && !self.peers_known()
    }

    /// When the wait for peers to be known ends, while it matters.
    pub(super) fn origin_deadline(&self) -> Option<u64> {
        (self.has_origin() && self.origin_waiting()).then_some(self.origin_since + ORIGIN_WAIT_MS)
    }

    /// Ends the wait for peers at its deadline.
    pub(super) fn origin_tick(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.origin_deadline().is_some_and(|at| now >= at) {
            self.origin_waited = true;
            self.schedule(now, out);
        }
    }

    /// Whether it is known what the peers online can give: the broker
    /// counted them, every one is connected and said what it has.
    fn peers_known(&self) -> bool {
        let Some(online) = self.holders_online else {
            return false;
        };
        // This peer holds from the manifest on, and is counted.
        let others = online.saturating_sub(1) as usize;
        let peers = self
            .holders
            .map
            .iter()
            .filter(|(id, _)| id.peer().is_some());
        let mut listed = 0;
        for (_, h) in peers {
            if h.has.is_none() {
                return false;
            }
            listed += 1;
        }
        let banned = self.holders.banned.iter().filter(|h| h.peer().is_some());
        listed + banned.count() >= others.min(MAX_SOURCES)
    }

    /// Hands each idle origin lane a run of missing chunks no connected
    /// peer has (`held_by_peers`), lowest first.
    pub(super) fn schedule_origin(
        &mut self,
        held_by_peers: &[bool],
        now: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = &self.manifest else { return };
        if self.gated || !self.has_origin() {
            return;
        }
        // Known once is enough: a holder that leaves later is not waited
        // for (the broker's count lags behind it).
        if self.peers_known() {
            self.origin_waited = true;
        }
        let waiting = self.origin_waiting();
        // Beside other peers that lack chunks too (visitors arriving
        // together), a block at a time (about 1 MiB): the others hear of
        // its first chunk soon and leave the rest of it to this peer.
        let crowd = self.holders.peer_count() > 0;
        let block = (BLOCK_BYTES / m.chunk_size).max(1) as usize;
        let run_cap = if waiting {
            1
        } else if crowd {
            block
        } else {
            (ORIGIN_RUN_BYTES / m.chunk_size).max(1) as usize
        };
        let free = |slots: &[Slot], i: usize| {
            slots[i] == Slot::Missing && !held_by_peers.get(i).copied().unwrap_or(false)
        };
        let count = self.slots.len();
        // Alone, front to back (a streamed body gets its beginning first).
        // In a crowd, untouched blocks (no chunk of them held by a peer or
        // here), so that visitors arriving together ask the origin for
        // different blocks and trade them; then whatever no peer has.
        let mut untouched: Vec<usize> = Vec::new();
        if crowd && !waiting {
            let blocks = count.div_ceil(block);
            untouched = (0..blocks)
                .filter(|&b| {
                    (b * block..((b + 1) * block).min(count)).all(|i| free(&self.slots, i))
                })
                .collect();
            // In this download's own random order: visitors that start
            // together, and those that learn late what the others have,
            // rarely pick the same block.
            untouched.sort_by_key(|&b| super::scheduler::shuffle(b as u32, self.start));
            untouched.reverse();
        }
        // Whether a peer is sending this one anything.
        let others_sending = self
            .holders
            .map
            .iter()
            .any(|(id, h)| id.peer().is_some() && h.is_sending());
        // A block is heard of only once its first chunk reached the peer
        // that asked the origin for it, so two peers may pick the same one
        // meanwhile. Each block has an owner among this peer and the
        // connected peers that lack chunks too, the same for all of them
        // (rendezvous hashing of peer ids): a peer asks the origin for the
        // blocks it owns, and for others' only once no peer is sending it
        // anything (an owner that left or stalled).
        if let (Some(me), true) = (self.me, others_sending) {
            let mut members: Vec<PeerId> = vec![me];
            members.extend(self.holders.map.iter().filter_map(|(id, h)| {
                let partial = h.has.as_ref().is_some_and(|has| !has.is_full());
                id.peer().filter(|_| partial)
            }));
            untouched.retain(|&b| owner(&members, b as u32) == me);
        }
        for lane in 0..ORIGIN_LANES {
            let conn = Conn {
                holder: HolderId::Origin,
                lane,
            };
            let idle = self
                .holders
                .conn_mut(&conn)
                .is_some_and(|c| c.open && c.in_flight.is_empty());
            if !idle {
                continue;
            }
            if waiting && self.origin_early >= ORIGIN_EARLY_CHUNKS {
                return;
            }
            let next_block = std::iter::from_fn(|| untouched.pop())
                .find(|&b| free(&self.slots, b * block))
                .map(|b| b * block);
            // The rest of a block another peer started is likely on its
            // way to that peer (from the origin, or another peer): taken
            // here only once no peer is sending this one anything.
            // Alone, the lowest; in a crowd, in this download's own random
            // order too, so that visitors left with the same few chunks do
            // not all ask for the same one.
            let leftover = || {
                if crowd && others_sending {
                    return None;
                }
                let mut chunks = (0..count).filter(|&i| free(&self.slots, i));
                if crowd {
                    chunks.min_by_key(|&i| super::scheduler::shuffle(i as u32, self.start))
                } else {
                    chunks.next()
                }
            };
            let Some(first) = next_block.or_else(leftover) else {
                return;
            };
            let run: Vec<u32> = (first..count)
                .take_while(|&i| free(&self.slots, i))
                .take(run_cap)
                .map(|i| i as u32)
                .collect();
            for &i in &run {
                self.slots[i as usize] = Slot::Requested;
            }
            if waiting {
                self.origin_early += run.len();
            }
            let c = self.holders.conn_mut(&conn).expect("checked above");
            request(c, conn, run, self.content, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> PeerId {
        PeerId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn every_member_owns_about_its_share_of_blocks_whatever_the_order() {
        let members = [id(1), id(2), id(3), id(4)];
        let mut reversed = members;
        reversed.reverse();
        let mut owned = [0u32; 4];
        for b in 0..4096 {
            let o = owner(&members, b);
            assert_eq!(o, owner(&reversed, b), "the same for everyone");
            owned[members.iter().position(|m| *m == o).unwrap()] += 1;
        }
        assert!(
            owned.iter().all(|&n| (824..=1224).contains(&n)),
            "{owned:?}"
        );
        // A member that leaves hands on only its own blocks.
        for b in 0..4096 {
            let before = owner(&members, b);
            if before != id(4) {
                assert_eq!(owner(&members[..3], b), before);
            }
        }
    }
}
