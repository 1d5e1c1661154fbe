//! Asking before a big download. Content bigger than the page's threshold
//! ([`Download::set_confirm_above`]) waits, once its manifest is verified,
//! until the user says yes ([`Download::confirm`]); the status says so
//! with the verified size, name and type ([`super::Status::Confirm`]).
//! Declining is the caller's cancel.
//!
//! Meanwhile nothing is asked of any holder but what it was asked before
//! the size was known: the manifest and the leading [`super::PREFETCH`]
//! chunks that come along with it from the holder that sent it. A chunk
//! that holder fails to deliver (it leaves, stalls or sends bad data)
//! waits for the yes like every other, and no second connection is
//! opened. So before the user's yes, at most `PREFETCH` chunks are
//! received and kept per download, whatever holders come and go: 256 KiB
//! as this project shares files, and never more than `PREFETCH` × 16 MiB,
//! the largest chunk a manifest may name. Content whose leading chunks
//! are all of it completes on the yes, not before. The broker is not
//! asked for more holders either: a download the user declines costs the
//! holders nothing but one connection. Content under the threshold goes
//! on at once, without a round trip more.

use super::{Action, Download, Slot, MAX_SOURCES};

impl Download {
    /// Content bigger than `bytes` (`None`: any size) waits for
    /// [`Self::confirm`] once its manifest is verified. Applies to a
    /// manifest that arrives after this call.
    pub fn set_confirm_above(&mut self, bytes: Option<u64>) {
        self.confirm_above = bytes;
    }

    /// Whether the download waits for the user's yes.
    pub fn awaiting_confirmation(&self) -> bool {
        self.gated && !self.complete
    }

    /// The user said yes: the download goes on (drawing from more holders
    /// as usual). Before the manifest arrived, it will not wait at all.
    pub fn confirm(&mut self, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.confirm_above = None;
        if !std::mem::replace(&mut self.gated, false) || self.complete {
            return out;
        }
        for slot in &mut self.slots {
            if *slot == Slot::Gated {
                *slot = Slot::Missing;
            }
        }
        if self.slots.iter().all(|s| *s == Slot::Done) {
            // The leading chunks were all of it.
            self.schedule(now, &mut out);
            return out;
        }
        // What the manifest's arrival would have asked the broker for.
        let many = self.manifest.as_ref().is_some_and(|m| m.chunk_count() > 1);
        let holders = self.holders.peer_count();
        self.last_want = now;
        if holders == 0 {
            out.push(Action::Want(1));
        } else if many && holders < MAX_SOURCES {
            out.push(Action::Want((MAX_SOURCES - holders) as u8));
        }
        self.schedule(now, &mut out);
        out
    }

    /// After each input: closes the gate on big content whose manifest
    /// just arrived, and keeps it closed (the broker is not asked for
    /// holders; chunks a failed holder left wait too, see
    /// `Download::unowned`).
    pub(super) fn gate(&mut self, had_manifest: bool, out: &mut Vec<Action>) {
        if !had_manifest && !self.complete {
            let size = self.manifest.as_ref().map_or(0, |m| m.size);
            self.gated = self.confirm_above.is_some_and(|limit| size > limit);
        }
        if !self.gated {
            return;
        }
        for slot in &mut self.slots {
            if *slot == Slot::Missing {
                *slot = Slot::Gated;
            }
        }
        out.retain(|a| !matches!(a, Action::Want(_)));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{Conn, HolderId, Input, Status, PREFETCH};
    use super::*;
    use crate::availability::Availability;
    use crate::ids::{ChunkHash, ContentId, PeerId};
    use crate::manifest::Manifest;
    use crate::transfer::{Frame, FrameHead, FrameKind, Reply, Request, HEADER};

    fn peer(n: u128) -> HolderId {
        HolderId::Peer(PeerId(uuid::Uuid::from_u128(n)))
    }

    /// Content, the holders that have all of it, and what the download
    /// kept and stored: plays the holders and the browser layer.
    struct World {
        manifest: Manifest,
        data: Vec<u8>,
        /// Payload kept per connection, for the chunk arriving over it.
        arriving: HashMap<Conn, Vec<u8>>,
        verifying: HashMap<u32, Vec<u8>>,
        stored: HashMap<u32, Vec<u8>>,
        /// Chunk indices asked for, by `Request::Chunks`.
        asked: Vec<u32>,
        /// Bytes sent by holders (manifest and chunk payloads).
        sent: usize,
        complete: bool,
        seen: Vec<Action>,
    }

    impl World {
        fn new(len: usize, chunk_size: u32) -> Self {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            let manifest = Manifest::describe_with_chunk_size(
                &data,
                "video/mp4",
                Some("film.mp4"),
                chunk_size,
            );
            World {
                manifest,
                data,
                arriving: HashMap::new(),
                verifying: HashMap::new(),
                stored: HashMap::new(),
                asked: Vec::new(),
                sent: 0,
                complete: false,
                seen: Vec::new(),
            }
        }

        fn address(&self) -> ContentId {
            self.manifest.address()
        }

        fn chunk(&self, i: u32) -> Vec<u8> {
            let start = i as usize * self.manifest.chunk_size as usize;
            self.data[start..start + self.manifest.chunk_len(i)].to_vec()
        }

        /// What a holder of everything answers to `req`.
        fn answer(&mut self, req: &Request) -> Vec<Result<Vec<u8>, Reply>> {
            let mut out: Vec<Result<Vec<u8>, Reply>> = Vec::new();
            let chunks = |w: &Self, indices: &[u32]| -> Vec<Vec<u8>> {
                indices
                    .iter()
                    .flat_map(|&i| {
                        Frame::encode_all(FrameKind::Chunk, i, &w.chunk(i)).collect::<Vec<_>>()
                    })
                    .collect()
            };
            let has = Reply::Has {
                content: self.address(),
                chunks: Availability::all(self.manifest.chunk_count()).to_have(),
            };
            match req {
                Request::Manifest { prefetch, .. } => {
                    let bytes = self.manifest.to_bytes();
                    out.extend(Frame::encode_all(FrameKind::Manifest, 0, &bytes).map(Ok));
                    out.push(Err(has));
                    let leading: Vec<u32> =
                        (0..self.manifest.chunk_count().min(*prefetch)).collect();
                    out.extend(chunks(self, &leading).into_iter().map(Ok));
                }
                Request::Has { .. } => out.push(Err(has)),
                Request::Chunks { indices, .. } => {
                    self.asked.extend(indices);
                    out.extend(chunks(self, indices).into_iter().map(Ok));
                }
            }
            out
        }

        /// Carries out `actions` (and what follows from them) until
        /// nothing is left.
        fn pump(&mut self, dl: &mut Download, mut actions: Vec<Action>, now: u64) {
            while !actions.is_empty() {
                match actions.remove(0) {
                    Action::Send(conn, req) => {
                        for msg in self.answer(&req) {
                            actions.extend(self.deliver(dl, conn, msg, now));
                        }
                    }
                    Action::Verify { index, .. } => {
                        let hash = ChunkHash::of(&self.verifying[&index]);
                        actions.extend(dl.handle(Input::Hashed { index, hash }, now));
                    }
                    Action::Store { index } => {
                        let bytes = self.verifying.remove(&index).unwrap();
                        assert!(self.manifest.chunk_matches(index, &bytes));
                        self.stored.insert(index, bytes);
                    }
                    Action::Complete => self.complete = true,
                    other => self.seen.push(other),
                }
            }
        }

        fn deliver(
            &mut self,
            dl: &mut Download,
            conn: Conn,
            msg: Result<Vec<u8>, Reply>,
            now: u64,
        ) -> Vec<Action> {
            let f = match msg {
                Err(reply) => return dl.handle(Input::Reply(conn, reply), now),
                Ok(f) => f,
            };
            self.sent += f.len() - HEADER;
            let head = FrameHead::decode(&f[..HEADER], f.len()).unwrap();
            let actions = match head.kind {
                FrameKind::Chunk => dl.handle(Input::ChunkFrame(conn, head), now),
                FrameKind::Manifest => dl.handle(Input::Frame(conn, &f), now),
            };
            for a in &actions {
                match *a {
                    Action::Keep { offset, .. } => {
                        let buf = self.arriving.entry(conn).or_default();
                        if offset == 0 {
                            buf.clear();
                        }
                        buf.extend_from_slice(&f[HEADER..]);
                    }
                    Action::Verify { conn, index } => {
                        let whole = self.arriving.remove(&conn).unwrap();
                        self.verifying.insert(index, whole);
                    }
                    _ => {}
                }
            }
            actions
        }

        fn kept_bytes(&self) -> usize {
            let parts = self.arriving.values().chain(self.verifying.values());
            parts.chain(self.stored.values()).map(Vec::len).sum()
        }
    }

    /// A download with `limit`, joined by one full holder whose channel
    /// opened; everything it sends delivered.
    fn start(w: &mut World, limit: Option<u64>) -> Download {
        let mut dl = Download::new(w.address(), 0, 3);
        dl.set_confirm_above(limit);
        dl.handle(Input::Holders(1), 0);
        let p = peer(1);
        assert_eq!(
            dl.handle(Input::Introduced(p), 0),
            vec![Action::Connect(Conn::first(p))]
        );
        let actions = dl.handle(Input::Opened(Conn::first(p)), 1);
        w.pump(&mut dl, actions, 2);
        dl
    }

    #[test]
    fn big_content_waits_for_a_yes_with_only_the_leading_chunk_received() {
        let chunk = 16 * 1024;
        let mut w = World::new(40 * chunk as usize, chunk);
        let mut dl = start(&mut w, Some(100_000));
        assert!(dl.awaiting_confirmation());
        assert_eq!(
            dl.status(),
            Status::Confirm {
                total: w.manifest.size,
                name: Some("film.mp4".into()),
                media_type: "video/mp4".into(),
            }
        );
        // Only the chunk that came with the manifest, and nothing asked.
        assert!(w.asked.is_empty(), "asked for {:?}", w.asked);
        let bound = PREFETCH as usize * chunk as usize;
        assert!(w.sent <= w.manifest.to_bytes().len() + bound, "{}", w.sent);
        assert!(w.kept_bytes() <= bound, "kept {}", w.kept_bytes());
        // Nor more holders asked for, however long the user takes.
        assert!(!w.seen.iter().any(|a| matches!(a, Action::Want(_))));
        for t in [3_000, 10_000, 60_000] {
            let actions = dl.handle(Input::Tick, t);
            assert!(
                actions
                    .iter()
                    .all(|a| !matches!(a, Action::Want(_) | Action::Send(..))),
                "{actions:?}"
            );
        }
        // A holder introduced meanwhile is connected and asked what it
        // has, but not for chunks.
        let q = peer(2);
        dl.handle(Input::Introduced(q), 60_000);
        let actions = dl.handle(Input::Opened(Conn::first(q)), 60_001);
        w.pump(&mut dl, actions, 60_002);
        assert!(w.asked.is_empty(), "asked for {:?}", w.asked);
        assert!(dl.awaiting_confirmation());

        let actions = dl.confirm(60_010);
        // More holders are looked for now, as for any big content.
        assert!(actions.contains(&Action::Want(2)), "{actions:?}");
        w.pump(&mut dl, actions, 60_010);
        assert!(w.complete);
        assert_eq!(dl.status(), Status::Verified);
        let mut got = Vec::new();
        for i in 0..w.manifest.chunk_count() {
            got.extend_from_slice(&w.stored[&i]);
        }
        assert_eq!(got, w.data);
        // Confirming again is harmless.
        assert!(dl.confirm(60_020).is_empty());
    }

    #[test]
    fn content_up_to_the_limit_goes_on_without_asking() {
        let mut w = World::new(100_000, 16 * 1024);
        let dl = start(&mut w, Some(100_000));
        assert!(w.complete);
        assert!(!dl.awaiting_confirmation());
        assert_eq!(dl.status(), Status::Verified);
        // And without a limit, anything does.
        let mut w = World::new(1 << 20, 16 * 1024);
        start(&mut w, None);
        assert!(w.complete);
    }

    #[test]
    fn a_yes_before_the_manifest_means_no_question() {
        let mut w = World::new(1 << 20, 16 * 1024);
        let mut dl = Download::new(w.address(), 0, 3);
        dl.set_confirm_above(Some(1000));
        assert!(dl.confirm(0).is_empty());
        dl.handle(Input::Introduced(peer(1)), 0);
        let actions = dl.handle(Input::Opened(Conn::first(peer(1))), 1);
        w.pump(&mut dl, actions, 2);
        assert!(w.complete);
    }

    #[test]
    fn a_failed_holder_during_the_wait_costs_no_more_than_the_leading_chunk() {
        let chunk = 16 * 1024;
        let mut w = World::new(40 * chunk as usize, chunk);
        let mut dl = start(&mut w, Some(0));
        assert!(dl.awaiting_confirmation());
        // It leaves; with nobody left, the broker is still not asked.
        let actions = dl.handle(Input::Lost(Conn::first(peer(1))), 10);
        assert!(actions.is_empty(), "{actions:?}");
        assert!(dl.awaiting_confirmation());
        // A yes with nobody connected looks for a holder.
        let actions = dl.confirm(20);
        assert_eq!(actions, vec![Action::Want(1)]);
        w.arriving.clear();
        let q = peer(2);
        dl.handle(Input::Introduced(q), 30);
        let actions = dl.handle(Input::Opened(Conn::first(q)), 31);
        w.pump(&mut dl, actions, 32);
        assert!(w.complete);
    }

    #[test]
    fn content_of_one_chunk_over_the_limit_waits_for_a_yes_too() {
        let mut w = World::new(100_000, 256 * 1024);
        let mut dl = start(&mut w, Some(1000));
        // The leading chunk is all of it, and it came with the manifest:
        // it is verified and kept, but the download is not complete.
        assert!(w.stored.contains_key(&0));
        assert!(!w.complete);
        assert!(dl.awaiting_confirmation());
        assert!(matches!(dl.status(), Status::Confirm { .. }));
        assert_eq!(dl.next_deadline(), None);
        // The yes completes it at once, asking nobody for anything.
        let actions = dl.confirm(10);
        assert_eq!(actions.last(), Some(&Action::Complete), "{actions:?}");
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Want(_) | Action::Send(..))));
        w.pump(&mut dl, actions, 10);
        assert!(w.complete);
        assert_eq!(dl.status(), Status::Verified);
    }

    #[test]
    fn the_leading_chunk_of_a_holder_lost_during_the_wait_is_not_asked_of_another() {
        let chunk = 16 * 1024;
        let mut w = World::new(40 * chunk as usize, chunk);
        let mut dl = Download::new(w.address(), 0, 3);
        dl.set_confirm_above(Some(0));
        dl.handle(Input::Holders(3), 0);
        let (p, q) = (peer(1), peer(2));
        dl.handle(Input::Introduced(p), 0);
        let actions = dl.handle(Input::Opened(Conn::first(p)), 1);
        let Some(Action::Send(_, request)) = actions.first() else {
            panic!("{actions:?}")
        };
        // The manifest and what it has arrive; the leading chunk does not.
        for msg in w.answer(request) {
            let chunk = msg.as_ref().is_ok_and(|f| {
                FrameHead::decode(&f[..HEADER], f.len()).unwrap().kind == FrameKind::Chunk
            });
            if !chunk {
                w.deliver(&mut dl, Conn::first(p), msg, 2);
            }
        }
        assert!(dl.awaiting_confirmation());
        // Another holder says what it has, then the first one leaves.
        dl.handle(Input::Introduced(q), 10);
        let actions = dl.handle(Input::Opened(Conn::first(q)), 11);
        w.pump(&mut dl, actions, 12);
        let actions = dl.handle(Input::Lost(Conn::first(p)), 20);
        w.pump(&mut dl, actions, 20);
        // The leading chunk waits for the yes like every other.
        assert!(w.asked.is_empty(), "asked for {:?}", w.asked);
        assert!(dl.awaiting_confirmation());
        // Nor is it asked again when the other fails the same way.
        let actions = dl.handle(Input::Lost(Conn::first(q)), 30);
        assert!(actions.is_empty(), "{actions:?}");
        dl.handle(Input::Introduced(peer(3)), 40);
        let actions = dl.handle(Input::Opened(Conn::first(peer(3))), 41);
        w.pump(&mut dl, actions, 42);
        assert!(w.asked.is_empty(), "asked for {:?}", w.asked);
        let actions = dl.confirm(50);
        w.pump(&mut dl, actions, 50);
        assert!(w.complete);
    }

    #[test]
    fn no_second_connection_is_opened_during_the_wait() {
        let chunk = 4 << 20;
        let mut w = World::new(17 << 20, chunk);
        let mut dl = Download::new(w.address(), 0, 3);
        dl.set_confirm_above(Some(0));
        // A lone holder of big content, whose leading chunk alone is more
        // than a second connection waits for.
        dl.handle(Input::Holders(2), 0);
        let p = peer(1);
        dl.handle(Input::Introduced(p), 0);
        let actions = dl.handle(Input::Opened(Conn::first(p)), 1);
        w.pump(&mut dl, actions, 2);
        assert!(w.stored.contains_key(&0));
        assert!(dl.awaiting_confirmation());
        let lane = Conn { holder: p, lane: 1 };
        assert!(!w.seen.contains(&Action::Connect(lane)), "{:?}", w.seen);
        for t in [3_000, 10_000] {
            assert!(!dl.handle(Input::Tick, t).contains(&Action::Connect(lane)));
        }
        // After the yes, it is.
        assert!(dl.confirm(20_000).contains(&Action::Connect(lane)));
    }
}
