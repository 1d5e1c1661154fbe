//! What to ask over which connection: the manifest first, then what each
//! holder has, then chunks into every connection's pipeline (see
//! [`super::scheduler`] for which chunks); and when to open a second
//! connection to a lone holder; and the endgame, which asks for late
//! chunks again elsewhere.

use crate::transfer::Request;

use super::{
    scheduler, Action, Conn, Connection, Download, HolderId, Slot, BLOCK_BYTES, MAX_SOURCES,
    PIPELINE, PREFETCH, REFILL, SECOND_LANE_AFTER_BYTES, SECOND_LANE_BYTES,
};

impl Download {
    /// Asks for the manifest first; then asks every open holder what it
    /// has, and hands missing chunks to connections with room in their
    /// pipeline.
    pub(super) fn schedule(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(manifest) = &self.manifest else {
            if self.manifest_from.is_none() {
                let first = self.holders.conns().find(|(_, _, c)| c.open);
                if let Some(conn) = first.map(|(conn, ..)| conn) {
                    self.manifest_from = Some(conn);
                    // It owes the manifest from now: an open connection
                    // that owed nothing has no stall to answer for.
                    if let Some(c) = self.holders.conn_mut(&conn) {
                        c.progressed(now);
                    }
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
            // Content the user was asked about completes on the yes
            // (`Download::confirm`), even if its leading chunks were all.
            if !self.gated {
                self.finish(out);
            }
            return;
        }
        let count = manifest.chunk_count() as usize;
        // How many connected holders have each chunk, and whether one of
        // them only partly holds the content.
        let mut rarity = vec![0u16; count];
        let mut partly = vec![false; count];
        for has in self.holders.map.values().filter_map(|h| h.has.as_ref()) {
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
        for (&holder, h) in self.holders.map.iter_mut() {
            if holder == HolderId::Origin {
                // A fallback, asked after the peers (see `origin`).
                continue;
            }
            for (&lane, c) in h.conns.iter_mut().filter(|(_, c)| c.open) {
                let conn = Conn { holder, lane };
                if lane > 0 && !lone {
                    if c.in_flight.is_empty() {
                        retired.push(conn);
                    }
                    continue;
                }
                let Some(has) = &h.has else {
                    if !std::mem::replace(&mut h.asked_has, true) {
                        c.progressed(now);
                        out.push(Action::Send(
                            conn,
                            Request::Has {
                                content: self.content,
                            },
                        ));
                    }
                    continue;
                };
                let room = PIPELINE.saturating_sub(c.in_flight.len());
                if room < REFILL && !c.in_flight.is_empty() {
                    continue;
                }
                let slots = &self.slots;
                // A full holder is left what no connected partial holder has.
                let full = has.is_full();
                let order = if self.sequential {
                    scheduler::Order::Sequential
                } else {
                    scheduler::Order::Shuffled(self.start)
                };
                let indices = scheduler::pick(has, &rarity, order, block, room, |i| {
                    slots[i as usize] == Slot::Missing && !(full && partly[i as usize])
                });
                if indices.is_empty() {
                    continue;
                }
                for &i in &indices {
                    self.slots[i as usize] = Slot::Requested;
                }
                request(c, conn, indices, self.content, now, out);
            }
        }
        for conn in retired {
            self.drop_conn(conn, None, out);
        }
        self.schedule_origin(&held_by_peers(&self.holders), now, out);
        self.endgame(now, out);
        self.second_lane(now, out);
    }

    /// Asks connections of other holders that have nothing else to do for
    /// the chunks of late connections (see [`super::ENDGAME_LATE_MS`]):
    /// one more copy of a chunk whenever every connection that owes it is
    /// late, so slow or stalling holders among good ones cannot hold the
    /// download up, even a helper that turns out slow in its turn. Never
    /// more than one copy per holder, nor more than [`MAX_SOURCES`] in
    /// all. The first copy that verifies is stored; the others are not
    /// kept as they arrive (there is no cancel on the wire: their holders
    /// still send them, and are asked for more after).
    fn endgame(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.gated {
            // Nothing more is asked before the user's yes.
            return;
        }
        // Chunks owed only by late connections, with who owes them.
        let mut late: Vec<(u32, Vec<HolderId>)> = Vec::new();
        for (_, _, c) in self.holders.conns() {
            if !(c.open && c.is_late(now)) {
                continue;
            }
            for &i in &c.in_flight {
                if self.slots[i as usize] != Slot::Requested || late.iter().any(|(j, _)| *j == i) {
                    continue;
                }
                let owing: Vec<(HolderId, bool)> = self
                    .holders
                    .conns()
                    .filter(|(_, _, c)| c.in_flight.contains(&i))
                    .map(|(conn, _, c)| (conn.holder, c.open && c.is_late(now)))
                    .collect();
                if owing.len() < MAX_SOURCES && owing.iter().all(|&(_, late)| late) {
                    late.push((i, owing.into_iter().map(|(h, _)| h).collect()));
                }
            }
        }
        if late.is_empty() {
            return;
        }
        let lone = self.lone_holder();
        for (&holder, h) in self.holders.map.iter_mut() {
            let Some(has) = &h.has else { continue };
            let origin = holder == HolderId::Origin;
            for (&lane, c) in h.conns.iter_mut() {
                if !c.open || !c.in_flight.is_empty() || (lane > 0 && !lone && !origin) {
                    continue;
                }
                let mut take: Vec<u32> = late
                    .iter()
                    .filter(|(i, from)| !from.contains(&holder) && has.contains(*i))
                    .map(|&(i, _)| i)
                    .take(PIPELINE)
                    .collect();
                if origin {
                    // One range request: neighbours only.
                    take.sort_unstable();
                    let run = take.windows(2).take_while(|w| w[1] == w[0] + 1).count();
                    take.truncate(run + 1);
                }
                if take.is_empty() {
                    continue;
                }
                // One more copy each per pass: the helper's own lateness
                // (its deadline starts now) decides on another.
                late.retain(|(i, _)| !take.contains(i));
                request(c, Conn { holder, lane }, take, self.content, now, out);
            }
        }
    }

    /// Chunk `index` is no longer owed over some connection: unless
    /// another still owes it (or it is whole), it is up for grabs again.
    pub(super) fn release(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        let owed = || {
            let mut conns = self.holders.conns();
            conns.any(|(_, _, c)| c.in_flight.contains(&index))
        };
        if slot == Slot::Requested && !owed() {
            self.slots[index as usize] = self.unowned();
        }
    }

    /// What a chunk nobody owes any more becomes: missing, or, before the
    /// user's yes, gated (so a holder that fails during the wait does not
    /// make another send that chunk again).
    pub(super) fn unowned(&self) -> Slot {
        if self.gated {
            Slot::Gated
        } else {
            Slot::Missing
        }
    }

    /// Opens a second connection to the only holder online, once, for big
    /// content with much still to come (see [`SECOND_LANE_BYTES`]). What
    /// the holder has is already known.
    fn second_lane(&mut self, now: u64, out: &mut Vec<Action>) {
        let Some(m) = &self.manifest else { return };
        let remaining = m.size - self.verified_bytes;
        if self.gated
            || m.size < SECOND_LANE_BYTES
            || remaining < SECOND_LANE_BYTES / 2
            || self.verified_bytes < SECOND_LANE_AFTER_BYTES
            || !self.lone_holder()
            || self.holders.peer_count() != 1
        {
            return;
        }
        let Some((&holder, h)) = self.holders.map.iter().find(|(id, _)| id.peer().is_some()) else {
            return;
        };
        let first_open = h.conns.len() == 1 && h.conns.get(&0).is_some_and(|c| c.open);
        if !first_open || h.has.is_none() || !self.holders.laned.insert(holder) {
            return;
        }
        let conn = Conn { holder, lane: 1 };
        self.holders.connect(conn, now);
        out.push(Action::Connect(conn));
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        self.complete = true;
        let conns: Vec<Conn> = self.holders.conns().map(|(conn, ..)| conn).collect();
        self.holders.map.clear();
        for conn in conns {
            out.push(Action::Disconnect { conn, reason: None });
        }
        out.push(Action::Complete);
    }
}

/// Which chunks a connected peer (not the origin) has said it has.
fn held_by_peers(holders: &super::Holders) -> Vec<bool> {
    let mut any = Vec::new();
    for (id, h) in holders.map.iter() {
        let (Some(has), Some(_)) = (&h.has, id.peer()) else {
            continue;
        };
        any.resize(has.len() as usize, false);
        for (i, a) in any.iter_mut().enumerate() {
            *a |= has.contains(i as u32);
        }
    }
    any
}

/// Asks `conn` for chunks `indices`.
pub(super) fn request(
    c: &mut Connection,
    conn: Conn,
    indices: Vec<u32>,
    content: crate::ids::ContentId,
    now: u64,
    out: &mut Vec<Action>,
) {
    let idle = c.in_flight.is_empty();
    c.in_flight.extend_from_slice(&indices);
    if idle {
        // Stall and late timing start when the connection owes us something.
        c.progressed(now);
        c.owes_next(now);
    }
    out.push(Action::Send(conn, Request::Chunks { content, indices }));
}
