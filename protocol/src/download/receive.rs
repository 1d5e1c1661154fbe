//! What holders send: the manifest, what they have, chunk frames; and
//! the verdict on each chunk once the caller hashed it.

use crate::availability::Availability;
use crate::ids::ChunkHash;
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::transfer::{Assembly, Cursor, Frame, FrameHead, FrameKind, Reply};

use super::{Action, Conn, Download, DropReason, HolderId, Slot, MAX_SOURCES, PREFETCH};

impl Download {
    pub(super) fn on_reply(&mut self, conn: Conn, reply: Reply, now: u64, out: &mut Vec<Action>) {
        let holder = conn.holder;
        let why = match reply {
            Reply::Has { content, chunks } if content == self.content => {
                let Some(m) = &self.manifest else {
                    return self.ban(holder, DropReason::HasBeforeManifest, now, out);
                };
                // Once per holder: each `Has` costs a pass over every
                // chunk, so a flood of them must not pin this peer.
                if self
                    .holders
                    .map
                    .get(&holder)
                    .is_some_and(|h| h.has.is_some())
                {
                    return self.ban(holder, DropReason::RepeatedHas, now, out);
                }
                let has = match Availability::from_have(&chunks, m.chunk_count()) {
                    Ok(has) => has,
                    Err(e) => return self.ban(holder, DropReason::BadAvailability(e), now, out),
                };
                let leading = m.chunk_count().min(PREFETCH);
                let Some(h) = self.holders.map.get_mut(&holder) else {
                    return;
                };
                let c = h.conns.get_mut(&conn.lane).expect("checked by caller");
                // The first `Has` of the holder that sent the manifest: the
                // leading chunks it has follow, unasked.
                if self.manifest_from == Some(conn) {
                    c.in_flight = (0..leading).filter(|&i| has.contains(i)).collect();
                    for &i in &c.in_flight {
                        self.slots[i as usize] = Slot::Requested;
                    }
                    c.owes_next(now);
                }
                c.progressed(now);
                h.has = Some(has);
                return self.schedule(now, out);
            }
            Reply::Got { content, index } if content == self.content => {
                // Told on the connection that asked what it has; true of
                // the holder, whichever connection it came over.
                let Some(has) = self
                    .holders
                    .map
                    .get_mut(&holder)
                    .and_then(|h| h.has.as_mut())
                else {
                    // Not asked: ignored.
                    return;
                };
                if has.contains(index) {
                    // No news: nothing to decide again.
                    return;
                }
                if !has.insert(index) {
                    return self.ban(holder, DropReason::GainedUnknownChunk(index), now, out);
                }
                return self.schedule(now, out);
            }
            Reply::Has { .. } | Reply::Got { .. } => return,
            Reply::Missing { .. } => DropReason::NoLongerHolds,
            Reply::Refused { message } => DropReason::Refused(message),
        };
        self.drop_holder(holder, Some(why), now, out);
    }

    pub(super) fn on_frame(
        &mut self,
        conn: Conn,
        bytes: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let frame = Frame::decode(bytes).map_err(DropReason::BadFrame)?;
        if frame.kind == FrameKind::Chunk {
            return self.on_chunk_frame(conn, frame.head(), now, out);
        }
        if self.manifest.is_some() || self.manifest_from != Some(conn) {
            return Err(DropReason::UnaskedManifest);
        }
        if frame.bytes.is_empty() {
            return Err(DropReason::EmptyFrame);
        }
        let c = self.holders.conn_mut(&conn).expect("checked by caller");
        c.delivered(frame.bytes.len() as u32, now);
        let asm = match &mut c.manifest_asm {
            Some(asm) => asm,
            slot => slot.insert(
                Assembly::new(frame.total, MAX_MANIFEST_BYTES).map_err(DropReason::BadFrame)?,
            ),
        };
        let Some(bytes) = asm.push(&frame).map_err(DropReason::BadFrame)? else {
            return Ok(());
        };
        c.manifest_asm = None;
        c.progressed(now);
        let manifest = Manifest::verify(&self.content, &bytes).map_err(DropReason::BadManifest)?;
        // Its `Has` comes next, then the leading chunks it has.
        if let Some(h) = self.holders.map.get_mut(&conn.holder) {
            h.asked_has = true;
        }
        self.slots = vec![Slot::Missing; manifest.chunk_count() as usize];
        let many = manifest.chunk_count() > 1;
        self.manifest = Some(manifest.clone());
        out.push(Action::Manifest {
            manifest,
            manifest_bytes: bytes,
        });
        let holders = self.holders.peer_count();
        if many && holders < MAX_SOURCES {
            // Big content: draw from several holders at once.
            self.last_want = now;
            out.push(Action::Want((MAX_SOURCES - holders) as u8));
        }
        self.schedule(now, out);
        Ok(())
    }

    /// Checks a chunk frame's header against what was asked over `conn`;
    /// its payload is kept by the caller, and hashed once the chunk is
    /// whole. A copy of a chunk that another holder's copy beat (see
    /// [`super::ENDGAME_LATE_MS`]) is followed but not kept.
    pub(super) fn on_chunk_frame(
        &mut self,
        conn: Conn,
        head: FrameHead,
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let Some(manifest) = &self.manifest else {
            return Err(DropReason::ChunkBeforeManifest);
        };
        // Every chunk has bytes (empty content has no chunks), so a frame
        // without any is never part of one: it only costs the receiver.
        if head.len == 0 {
            return Err(DropReason::EmptyFrame);
        }
        let c = self.holders.conn_mut(&conn).expect("checked by caller");
        let index = head.index;
        if head.kind != FrameKind::Chunk || c.in_flight.first() != Some(&index) {
            return Err(DropReason::UnaskedChunk(index));
        }
        if head.total as usize != manifest.chunk_len(index) {
            return Err(DropReason::WrongLength(index));
        }
        let slot = &mut self.slots[index as usize];
        let taken = matches!(slot, Slot::Verifying(_) | Slot::Done);
        let cursor = match &mut c.arriving {
            Some(cursor) => cursor,
            fresh => {
                // A new copy is kept unless another one is already whole.
                c.keeping = !taken;
                if !taken {
                    *slot = Slot::Requested;
                }
                fresh.insert(Cursor::new(head.total))
            }
        };
        let whole = cursor.advance(&head).map_err(DropReason::BadFrame)?;
        c.delivered(head.len, now);
        if c.keeping && taken {
            // Another copy is whole meanwhile: this one's bytes go.
            c.keeping = false;
            out.push(Action::Abandon { conn });
        }
        if c.keeping {
            out.push(Action::Keep {
                conn,
                index,
                offset: head.offset,
            });
        }
        if whole {
            c.arriving = None;
            c.in_flight.remove(0);
            c.progressed(now);
            c.owes_next(now);
            if std::mem::take(&mut c.keeping) {
                self.slots[index as usize] = Slot::Verifying(conn.holder);
                out.push(Action::Verify { conn, index });
            } else {
                self.release(index);
            }
            // Its connection has room for more while this one is hashed.
            self.schedule(now, out);
        }
        Ok(())
    }

    /// The caller hashed chunk `index`: store it, or drop it and ban the
    /// holder that sent it.
    pub(super) fn on_hashed(
        &mut self,
        index: u32,
        hash: ChunkHash,
        now: u64,
        out: &mut Vec<Action>,
    ) {
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
        self.slots[index as usize] = self.unowned();
        out.push(Action::Discard { index });
        self.judged_bad(from, index, now, out);
    }

    fn judged_bad(&mut self, from: HolderId, index: u32, now: u64, out: &mut Vec<Action>) {
        if self.holders.map.contains_key(&from) {
            self.ban(from, DropReason::FailedVerification(index), now, out);
        } else {
            // It left meanwhile; it is not asked again if it returns.
            self.holders.banned.insert(from);
            self.schedule(now, out);
        }
    }
}
