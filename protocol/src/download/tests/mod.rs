use std::collections::HashMap;

use super::*;
use crate::availability::{Availability, Have};
use crate::ids::{ChunkHash, PeerId};
use crate::manifest::ManifestError;
use crate::transfer::{Frame, FrameError, FrameHead, FrameKind, Reply, Request, HEADER};
use uuid::Uuid;

fn peer(n: u128) -> HolderId {
    HolderId::Peer(PeerId(Uuid::from_u128(n)))
}

/// Content split in chunks.
struct Fixture {
    manifest: Manifest,
    data: Vec<u8>,
}

impl Fixture {
    fn new(len: usize, chunk_size: u32) -> Self {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = Manifest::describe_with_chunk_size(&data, "text/plain", None, chunk_size);
        Fixture { manifest, data }
    }

    fn address(&self) -> ContentId {
        self.manifest.address()
    }

    fn chunk(&self, i: u32) -> &[u8] {
        let start = i as usize * self.manifest.chunk_size as usize;
        &self.data[start..start + self.manifest.chunk_len(i)]
    }

    fn manifest_frames(&self) -> Vec<Vec<u8>> {
        Frame::encode_all(FrameKind::Manifest, 0, &self.manifest.to_bytes()).collect()
    }

    fn chunk_frames(&self, i: u32) -> Vec<Vec<u8>> {
        Frame::encode_all(FrameKind::Chunk, i, self.chunk(i)).collect()
    }
}

/// What a holder sends on its data channel.
enum Msg {
    Frame(Vec<u8>),
    Reply(Reply),
}

/// An honest holder of some of the chunks (or a dishonest one that
/// corrupts one chunk).
struct Holder {
    has: Availability,
    corrupt: Option<u32>,
    served: Vec<u32>,
    /// How many chunks each request for chunks asked for.
    requests: Vec<usize>,
}

impl Holder {
    fn full(fx: &Fixture) -> Self {
        Self::with(fx, 0..fx.manifest.chunk_count())
    }

    fn with(fx: &Fixture, chunks: impl IntoIterator<Item = u32>) -> Self {
        let mut has = Availability::none(fx.manifest.chunk_count());
        for i in chunks {
            has.insert(i);
        }
        Holder {
            has,
            corrupt: None,
            served: Vec::new(),
            requests: Vec::new(),
        }
    }

    fn answer(&mut self, fx: &Fixture, req: &Request) -> Vec<Msg> {
        let mut out = Vec::new();
        let has = Msg::Reply(Reply::Has {
            content: fx.address(),
            chunks: self.has.to_have(),
        });
        match req {
            Request::Manifest { prefetch, .. } => {
                out.extend(fx.manifest_frames().into_iter().map(Msg::Frame));
                out.push(has);
                let leading: Vec<u32> = (0..fx.manifest.chunk_count().min(*prefetch))
                    .filter(|&i| self.has.contains(i))
                    .collect();
                out.extend(self.chunks(fx, &leading));
            }
            Request::Has { .. } => out.push(has),
            Request::Chunks { indices, .. } => {
                self.requests.push(indices.len());
                out.extend(self.chunks(fx, indices));
            }
        }
        out
    }

    fn chunks(&mut self, fx: &Fixture, indices: &[u32]) -> Vec<Msg> {
        let mut out = Vec::new();
        for &i in indices {
            assert!(self.has.contains(i), "asked for chunk {i}, which it lacks");
            self.served.push(i);
            for mut frame in fx.chunk_frames(i) {
                if self.corrupt == Some(i) {
                    let last = frame.len() - 1;
                    frame[last] ^= 0xff;
                }
                out.push(Msg::Frame(frame));
            }
        }
        out
    }
}

/// Holders by peer, plus what the download kept and stored: it plays the
/// browser layer, keeping payloads and hashing chunks as told.
struct Swarm<'a> {
    fx: &'a Fixture,
    holders: HashMap<HolderId, Holder>,
    /// The chunk arriving from each holder, as kept so far.
    arriving: HashMap<Conn, Vec<u8>>,
    /// Whole chunks waiting for their hash to be compared.
    verifying: HashMap<u32, Vec<u8>>,
    stored: HashMap<u32, Vec<u8>>,
    /// Chunks asked over each connection.
    asked_over: HashMap<Conn, usize>,
    complete: bool,
}

impl<'a> Swarm<'a> {
    fn new(fx: &'a Fixture) -> Self {
        Swarm {
            fx,
            holders: HashMap::new(),
            arriving: HashMap::new(),
            verifying: HashMap::new(),
            stored: HashMap::new(),
            asked_over: HashMap::new(),
            complete: false,
        }
    }

    fn add(&mut self, p: HolderId, holder: Holder) {
        self.holders.insert(p, holder);
    }

    /// Delivers every `Send` to its holder and feeds the answers back,
    /// until nothing is left to send. Keeps stored chunks; returns the
    /// other actions seen.
    fn pump(&mut self, dl: &mut Download, actions: Vec<Action>, now: u64) -> Vec<Action> {
        self.pump_until(dl, actions, now, |_| false).0
    }

    /// As `pump`, but stops after carrying out the first action `stop`
    /// matches; also returns the actions still to do.
    fn pump_until(
        &mut self,
        dl: &mut Download,
        mut actions: Vec<Action>,
        now: u64,
        stop: impl Fn(&Action) -> bool,
    ) -> (Vec<Action>, Vec<Action>) {
        let mut seen = Vec::new();
        while let Some(action) = (!actions.is_empty()).then(|| actions.remove(0)) {
            let last = stop(&action);
            match action {
                Action::Send(conn, req) => {
                    if let Request::Chunks { indices, .. } = &req {
                        *self.asked_over.entry(conn).or_default() += indices.len();
                    }
                    let Some(holder) = self.holders.get_mut(&conn.holder) else {
                        continue;
                    };
                    let msgs = holder.answer(self.fx, &req);
                    actions.extend(self.deliver(dl, conn, msgs, now));
                }
                // Hashing happens later than keeping, as in a browser.
                Action::Verify { index, .. } => {
                    let hash = ChunkHash::of(&self.verifying[&index]);
                    actions.extend(dl.handle(Input::Hashed { index, hash }, now));
                }
                Action::Store { index } => {
                    let bytes = self.verifying.remove(&index).expect("stored unkept bytes");
                    assert!(
                        self.fx.manifest.chunk_matches(index, &bytes),
                        "stored a bad chunk {index}"
                    );
                    assert!(
                        self.stored.insert(index, bytes).is_none(),
                        "stored {index} twice"
                    );
                }
                Action::Discard { index } => {
                    assert!(self.verifying.remove(&index).is_some());
                    seen.push(Action::Discard { index });
                }
                Action::Keep { .. } => {}
                Action::Complete => {
                    self.complete = true;
                    seen.push(Action::Complete);
                }
                other => seen.push(other),
            }
            if last {
                break;
            }
        }
        (seen, actions)
    }

    /// Hands a holder's messages to the download as the browser layer
    /// does: chunk frames by their header, keeping the payload where the
    /// download says at once (the next frame may start another chunk).
    fn deliver(&mut self, dl: &mut Download, conn: Conn, msgs: Vec<Msg>, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        for msg in msgs {
            let f = match msg {
                Msg::Reply(r) => {
                    out.extend(dl.handle(Input::Reply(conn, r), now));
                    continue;
                }
                Msg::Frame(f) => f,
            };
            let head = FrameHead::decode(&f[..HEADER], f.len()).unwrap();
            let actions = match head.kind {
                FrameKind::Chunk => dl.handle(Input::ChunkFrame(conn, head), now),
                FrameKind::Manifest => dl.handle(Input::Frame(conn, &f), now),
            };
            for a in &actions {
                match *a {
                    Action::Keep {
                        conn: to,
                        index,
                        offset,
                    } => {
                        assert_eq!((to, index), (conn, head.index));
                        let buf = self.arriving.entry(conn).or_default();
                        if offset == 0 {
                            buf.clear();
                        }
                        assert_eq!(buf.len(), offset as usize);
                        buf.extend_from_slice(&f[HEADER..]);
                    }
                    Action::Verify { conn, index } => {
                        let whole = self.arriving.remove(&conn).unwrap();
                        assert!(self.verifying.insert(index, whole).is_none());
                    }
                    Action::Abandon { conn } => {
                        self.arriving.remove(&conn);
                    }
                    _ => {}
                }
            }
            out.extend(actions);
        }
        out
    }

    /// The content rebuilt from stored chunks, once complete.
    fn data(&self) -> Option<Vec<u8>> {
        if !self.complete {
            return None;
        }
        let mut data = Vec::new();
        for i in 0..self.fx.manifest.chunk_count() {
            data.extend_from_slice(&self.stored[&i]);
        }
        Some(data)
    }

    fn served_by(&self, p: HolderId) -> &[u32] {
        &self.holders[&p].served
    }
}

/// Introduces and opens `p`; returns the actions.
fn join(dl: &mut Download, p: HolderId, now: u64) -> Vec<Action> {
    assert_eq!(
        dl.handle(Input::Introduced(p), now),
        vec![Action::Connect(Conn::first(p))]
    );
    dl.handle(Input::Opened(Conn::first(p)), now)
}

/// Whether `p` was dropped for a reason `why` accepts.
fn dropped_for(seen: &[Action], p: HolderId, why: impl Fn(&DropReason) -> bool) -> bool {
    seen.iter().any(
        |a| matches!(a, Action::Disconnect { conn, reason: Some(r) } if conn.holder == p && why(r)),
    )
}

#[test]
fn single_holder_happy_path() {
    let fx = Fixture::new(40_000, 256 * 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 7);
    assert_eq!(dl.status(), Status::Looking);
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 0),
        vec![Action::Connect(Conn::first(peer(1)))]
    );
    assert_eq!(dl.status(), Status::Connecting);
    let actions = dl.handle(Input::Opened(Conn::first(peer(1))), 5);
    assert_eq!(
        actions,
        vec![Action::Send(
            Conn::first(peer(1)),
            Request::Manifest {
                content: fx.address(),
                prefetch: PREFETCH
            }
        )]
    );
    let seen = swarm.pump(&mut dl, actions, 6);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(matches!(&seen[0], Action::Manifest { manifest, .. } if *manifest == fx.manifest));
    assert!(seen.contains(&Action::Disconnect {
        conn: Conn::first(peer(1)),
        reason: None
    }));
    assert_eq!(dl.status(), Status::Verified);
}

#[test]
fn a_holder_is_asked_for_chunks_a_few_at_a_time() {
    let fx = Fixture::new(40 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 7);
    let actions = join(&mut dl, peer(1), 0);
    swarm.pump(&mut dl, actions, 1);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    let requests = &swarm.holders[&peer(1)].requests;
    // Only the last request may ask for fewer, when fewer are left.
    let small = requests.iter().filter(|&&n| n < REFILL).count();
    assert!(small <= 1, "requests of sizes {requests:?}");
}

#[test]
fn manifest_of_other_content_bans_the_holder() {
    let fx = Fixture::new(1000, 256 * 1024);
    let other = Fixture::new(1001, 256 * 1024);
    let mut liar = Swarm::new(&other);
    liar.add(peer(1), Holder::full(&other));
    let mut dl = Download::new(fx.address(), 0, 0);
    let actions = join(&mut dl, peer(1), 0);
    let seen = liar.pump(&mut dl, actions, 0);
    assert!(dl.is_banned(&peer(1)));
    assert!(dropped_for(&seen, peer(1), |r| matches!(
        r,
        DropReason::BadManifest(ManifestError::AddressMismatch)
    )));
    assert!(seen.contains(&Action::Want(1)));
    // Introduced again, the bad holder is ignored.
    assert!(dl.handle(Input::Introduced(peer(1)), 1).is_empty());
    // An honest one completes the download.
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(2), Holder::full(&fx));
    let actions = join(&mut dl, peer(2), 1);
    swarm.pump(&mut dl, actions, 2);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

#[test]
fn a_corrupted_chunk_is_never_stored_and_its_holder_is_dropped_for_good() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    let mut bad = Holder::full(&fx);
    // Chunk 0 comes from the first holder, with the manifest.
    bad.corrupt = Some(0);
    swarm.add(peer(1), bad);
    swarm.add(peer(2), Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 0);
    let mut actions = join(&mut dl, peer(1), 0);
    actions.extend(join(&mut dl, peer(2), 0));
    let seen = swarm.pump(&mut dl, actions, 1);
    assert!(dl.is_banned(&peer(1)));
    assert!(dropped_for(&seen, peer(1), |r| *r == DropReason::FailedVerification(0)));
    // The honest holder filled in, chunk 0 included.
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.served_by(peer(2)).contains(&0));
}

#[test]
fn several_holders_share_the_chunks() {
    let fx = Fixture::new(32 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    for p in 1..=3 {
        swarm.add(peer(p), Holder::full(&fx));
    }
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    let first = dl.handle(Input::Opened(Conn::first(peer(1))), 0);
    // Only the manifest and the availability: the rest is owed.
    let mut after_manifest = Vec::new();
    for frame in fx.manifest_frames() {
        after_manifest.extend(dl.handle(Input::Frame(Conn::first(peer(1)), &frame), 0));
    }
    assert!(matches!(&after_manifest[0], Action::Manifest { .. }));
    assert_eq!(after_manifest[1], Action::Want(3));
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::All,
    };
    let more = dl.handle(Input::Reply(Conn::first(peer(1)), has), 0);
    // The prefetched chunk 0 is owed; the pipeline fills up behind it.
    assert_eq!(
        more,
        vec![Action::Send(
            Conn::first(peer(1)),
            Request::Chunks {
                content: fx.address(),
                indices: vec![1, 2, 3]
            }
        )]
    );
    let mut actions = join(&mut dl, peer(2), 0);
    assert_eq!(
        actions,
        vec![Action::Send(
            Conn::first(peer(2)),
            Request::Has {
                content: fx.address()
            }
        )]
    );
    actions.extend(join(&mut dl, peer(3), 0));
    actions.extend(more);
    let Action::Send(_, Request::Manifest { .. }) = &first[0] else {
        panic!("{first:?}")
    };
    // Peer 1 sends its leading chunk first, as the manifest request said.
    let mut leading = Vec::new();
    for i in 0..PREFETCH {
        leading.extend(swarm.holders.get_mut(&peer(1)).unwrap().chunks(&fx, &[i]));
    }
    actions.extend(swarm.deliver(&mut dl, Conn::first(peer(1)), leading, 1));
    swarm.pump(&mut dl, actions, 1);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    for p in 1..=3 {
        assert!(
            swarm.served_by(peer(p)).len() >= 4,
            "holder {p} served only {:?}",
            swarm.served_by(peer(p))
        );
    }
}

#[test]
fn rarest_chunks_are_asked_of_the_only_holder_that_has_them() {
    let fx = Fixture::new(16 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    // Peer 2 has the first half; only peer 1 has the second.
    swarm.add(peer(1), Holder::full(&fx));
    swarm.add(peer(2), Holder::with(&fx, 0..8));
    let mut dl = Download::new(fx.address(), 0, 0);
    let actions = join(&mut dl, peer(2), 0);
    swarm.pump(&mut dl, actions, 0);
    let actions = join(&mut dl, peer(1), 1);
    let Action::Send(_, Request::Has { .. }) = &actions[0] else {
        panic!("{actions:?}")
    };
    let holder1 = swarm.holders.get_mut(&peer(1)).unwrap();
    let Msg::Reply(has) = holder1.answer(&fx, &actions[0].request()).remove(0) else {
        unreachable!()
    };
    let asked = dl.handle(Input::Reply(Conn::first(peer(1)), has), 1);
    let Some(Action::Send(Conn { holder: p, .. }, Request::Chunks { indices, .. })) = asked.first()
    else {
        panic!("{asked:?}")
    };
    assert_eq!(*p, peer(1));
    assert!(
        indices.iter().all(|&i| i >= 8),
        "asked peer 1 for {indices:?}"
    );
    swarm.pump(&mut dl, asked, 2);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

impl Action {
    fn request(&self) -> Request {
        match self {
            Action::Send(_, r) => r.clone(),
            other => panic!("not a request: {other:?}"),
        }
    }
}

#[test]
fn partial_holders_serve_what_they_have_then_the_missing_part_is_reported_and_resumes() {
    let fx = Fixture::new(8 * 1024 + 100, 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::with(&fx, [0, 1, 2, 3, 6]));
    let mut dl = Download::new(fx.address(), 0, 3);
    dl.handle(Input::Holders(2), 0);
    let actions = join(&mut dl, peer(1), 0);
    swarm.pump(&mut dl, actions, 1);
    assert_eq!(swarm.stored.len(), 5);
    let Status::Receiving {
        received,
        total,
        sending,
        missing,
        ..
    } = dl.status()
    else {
        panic!("{:?}", dl.status())
    };
    assert_eq!(
        (received, total, sending),
        (5 * 1024, fx.data.len() as u64, 0)
    );
    assert_eq!(
        missing,
        vec![(4 * 1024, 6 * 1024), (7 * 1024, 8 * 1024 + 100)]
    );
    // The holder gains chunk 4 (it is downloading too): it is asked for it.
    let got = Reply::Got {
        content: fx.address(),
        index: 4,
    };
    swarm.holders.get_mut(&peer(1)).unwrap().has.insert(4);
    let actions = dl.handle(Input::Reply(Conn::first(peer(1)), got), 2);
    assert_eq!(
        actions,
        vec![Action::Send(
            Conn::first(peer(1)),
            Request::Chunks {
                content: fx.address(),
                indices: vec![4]
            }
        )]
    );
    swarm.pump(&mut dl, actions, 2);
    // Nothing stalls while nothing is owed, however long it takes.
    assert!(dl.handle(Input::Tick, 60_000).is_empty());
    // A holder of the rest appears and the download completes.
    swarm.add(peer(2), Holder::full(&fx));
    let actions = join(&mut dl, peer(2), 60_001);
    swarm.pump(&mut dl, actions, 60_002);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert_eq!(swarm.served_by(peer(2)), &[5, 7, 8]);
}

#[test]
fn lost_holder_costs_only_its_in_flight_chunks() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(Conn::first(peer(1)), &frame), 0);
    }
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::All,
    };
    dl.handle(Input::Reply(Conn::first(peer(1)), has), 0);
    // Chunk 0 arrives, then the holder vanishes with 1..4 in flight.
    let mut swarm = Swarm::new(&fx);
    let frames = fx.chunk_frames(0).into_iter().map(Msg::Frame).collect();
    let kept = swarm.deliver(&mut dl, Conn::first(peer(1)), frames, 0);
    assert_eq!(
        kept[..2],
        [
            Action::Keep {
                conn: Conn::first(peer(1)),
                index: 0,
                offset: 0
            },
            Action::Verify {
                conn: Conn::first(peer(1)),
                index: 0
            }
        ]
    );
    // Nothing counts before the hash is compared.
    assert!(matches!(dl.status(), Status::Receiving { received: 0, .. }));
    swarm.pump(&mut dl, kept, 0);
    assert_eq!(swarm.stored.keys().collect::<Vec<_>>(), vec![&0]);
    assert!(matches!(
        dl.status(),
        Status::Receiving { received: 1024, .. }
    ));
    let after = dl.handle(Input::Lost(Conn::first(peer(1))), 1);
    assert_eq!(after, vec![Action::Want(1)]);
    assert!(!dl.is_banned(&peer(1)));
    swarm.add(peer(2), Holder::full(&fx));
    let actions = join(&mut dl, peer(2), 2);
    swarm.pump(&mut dl, actions, 3);
    let mut served = swarm.served_by(peer(2)).to_vec();
    served.sort_unstable();
    assert_eq!(served, (1..8).collect::<Vec<_>>());
    assert!(swarm.complete);
}

#[test]
fn stalled_and_unreachable_holders_are_dropped() {
    let fx = Fixture::new(1000, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(2), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Introduced(peer(2)), 0);
    dl.handle(Input::Opened(Conn::first(peer(1))), 100);
    // Peer 1 owes the manifest; peer 2 never opens.
    assert!(dl.handle(Input::Tick, 100 + STALL_TIMEOUT_MS).is_empty());
    let out = dl.handle(Input::Tick, 101 + STALL_TIMEOUT_MS);
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::Stalled));
    // The manifest request moves to no one yet: peer 2 is still connecting.
    let out = dl.handle(Input::Tick, CONNECT_TIMEOUT_MS + 1);
    assert!(dropped_for(&out, peer(2), |r| *r == DropReason::ConnectTimeout));
    assert!(out.contains(&Action::Want(1)));
    assert_eq!(dl.status(), Status::Looking);
}

#[test]
fn a_holder_asked_for_the_manifest_late_gets_its_own_stall_window() {
    let fx = Fixture::new(1000, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(2), 0);
    join(&mut dl, peer(1), 0);
    join(&mut dl, peer(2), 0);
    // Peer 1 owes the manifest and stalls; peer 2, open all along and
    // owing nothing, is asked instead.
    let out = dl.handle(Input::Tick, STALL_TIMEOUT_MS + 1);
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::Stalled));
    assert!(out.iter().any(|a| matches!(a,
        Action::Send(conn, Request::Manifest { .. }) if conn.holder == peer(2))));
    // It has a whole stall window from now, not from when it opened.
    let out = dl.handle(Input::Tick, STALL_TIMEOUT_MS + 2);
    assert!(!dropped_for(&out, peer(2), |_| true), "{out:?}");
    let out = dl.handle(Input::Tick, 2 * STALL_TIMEOUT_MS + 2);
    assert!(dropped_for(&out, peer(2), |r| *r == DropReason::Stalled));
}

#[test]
fn a_holder_that_never_says_what_it_has_is_dropped() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    // The manifest, but no `Has` after it.
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(Conn::first(peer(1)), &frame), 0);
    }
    let out = dl.handle(Input::Tick, STALL_TIMEOUT_MS + 1);
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::Stalled));
}

#[test]
fn bad_availability_bans_the_holder() {
    let fx = Fixture::new(4 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    // Before the manifest.
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::All,
    };
    let out = dl.handle(Input::Reply(Conn::first(peer(1)), has), 0);
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::HasBeforeManifest));
    // A bitfield of the wrong size.
    join(&mut dl, peer(2), 0);
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(Conn::first(peer(2)), &frame), 0);
    }
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::Some("ffff".into()),
    };
    let out = dl.handle(Input::Reply(Conn::first(peer(2)), has), 0);
    assert!(dropped_for(&out, peer(2), |r| matches!(
        r,
        DropReason::BadAvailability(_)
    )));
    assert!(dl.is_banned(&peer(2)));
}

#[test]
fn gone_until_a_holder_appears_then_retries_wants() {
    let fx = Fixture::new(10, 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(9), Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(0), 0);
    assert_eq!(dl.status(), Status::Gone);
    // No holders: no point asking again.
    assert!(dl.handle(Input::Tick, 60_000).is_empty());
    dl.handle(Input::Holders(1), 60_000);
    assert_eq!(dl.handle(Input::Tick, 60_001), vec![Action::Want(1)]);
    assert!(dl.handle(Input::Tick, 60_002).is_empty());
    let actions = join(&mut dl, peer(9), 60_003);
    swarm.pump(&mut dl, actions, 60_005);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

#[test]
fn asks_for_holders_it_is_not_connected_to() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::with(&fx, 0..2));
    let mut dl = Download::new(fx.address(), 0, 0);
    let actions = join(&mut dl, peer(1), 0);
    let seen = swarm.pump(&mut dl, actions, 0);
    assert!(seen.contains(&Action::Want(3)));
    // Three holders online: ourselves, peer 1 and one we do not know.
    dl.handle(Input::Holders(3), 0);
    assert_eq!(dl.handle(Input::Tick, WANT_RETRY_MS), vec![Action::Want(1)]);
    // Not again right away.
    assert!(dl.handle(Input::Tick, WANT_RETRY_MS + 1).is_empty());
    // Once connected to everyone online, no more asking.
    join(&mut dl, peer(2), WANT_RETRY_MS + 2);
    assert!(dl.handle(Input::Tick, 3 * WANT_RETRY_MS).is_empty());
}

#[test]
fn missing_reply_moves_on_without_banning() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    let out = dl.handle(
        Input::Reply(
            Conn::first(peer(1)),
            Reply::Missing {
                content: fx.address(),
            },
        ),
        1,
    );
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::NoLongerHolds));
    assert!(out.contains(&Action::Want(1)));
    assert!(!dl.is_banned(&peer(1)));
}

#[test]
fn unsolicited_frames_ban_the_sender() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    let chunk = fx.chunk_frames(0).remove(0);
    let out = dl.handle(Input::Frame(Conn::first(peer(1)), &chunk), 0);
    assert!(dl.is_banned(&peer(1)));
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::ChunkBeforeManifest));
}

#[test]
fn an_unreadable_message_bans_its_sender() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    // A stream message longer than its chunk, as the channel's reader
    // finds it.
    let mut reader = crate::transfer::Reader::default();
    reader
        .read(&Frame::stream_header(0, 10), HEADER)
        .expect("a stream header");
    let why = reader.read(&[0; HEADER], 11).expect_err("too long");
    let out = dl.handle(Input::BadFrame(Conn::first(peer(1)), why), 0);
    assert!(dl.is_banned(&peer(1)));
    assert!(dropped_for(&out, peer(1), |r| matches!(
        r,
        DropReason::BadFrame(FrameError::Overrun { .. })
    )));
}

#[test]
fn request_ahead_rides_on_the_answer_and_is_not_repeated_on_open() {
    let fx = Fixture::new(40_000, 256 * 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 0);
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 0),
        vec![Action::Connect(Conn::first(peer(1)))]
    );
    let first = dl.request_ahead(peer(1), 0).expect("asks for the manifest");
    assert_eq!(
        first,
        Request::Manifest {
            content: fx.address(),
            prefetch: PREFETCH
        }
    );
    // A second holder answering ahead gets nothing: the manifest is asked.
    dl.handle(Input::Introduced(peer(2)), 0);
    assert_eq!(dl.request_ahead(peer(2), 0), None);
    // Opening sends nothing more; the holder pushes what was asked.
    assert!(dl.handle(Input::Opened(Conn::first(peer(1))), 1).is_empty());
    swarm.pump(&mut dl, vec![Action::Send(Conn::first(peer(1)), first)], 2);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

#[test]
fn request_ahead_after_the_manifest_asks_what_the_holder_has() {
    let fx = Fixture::new(10 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, peer(1), 0);
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(Conn::first(peer(1)), &frame), 1);
    }
    dl.handle(Input::Introduced(peer(2)), 1);
    assert_eq!(
        dl.request_ahead(peer(2), 1),
        Some(Request::Has {
            content: fx.address()
        })
    );
    // Asked once; nothing for an open holder or an unknown one.
    assert_eq!(dl.request_ahead(peer(2), 1), None);
    assert_eq!(dl.request_ahead(peer(1), 1), None);
    assert_eq!(dl.request_ahead(peer(3), 1), None);
    // Opening does not ask again.
    assert!(dl.handle(Input::Opened(Conn::first(peer(2))), 2).is_empty());
}

#[test]
fn a_chunk_hashed_after_its_holder_left_is_judged_all_the_same() {
    let fx = Fixture::new(4 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    let mut liar = Holder::full(&fx);
    liar.corrupt = Some(0);
    swarm.add(peer(1), liar);
    let mut dl = Download::new(fx.address(), 0, 0);
    let first = join(&mut dl, peer(1), 0);
    let Action::Send(_, request) = &first[0] else {
        panic!("{first:?}")
    };
    // The manifest, what it has, and its corrupted leading chunk 0.
    let msgs = swarm
        .holders
        .get_mut(&peer(1))
        .unwrap()
        .answer(&fx, request);
    let actions = swarm.deliver(&mut dl, Conn::first(peer(1)), msgs, 0);
    assert!(actions.contains(&Action::Verify {
        conn: Conn::first(peer(1)),
        index: 0
    }));
    // It leaves while chunk 0 is being hashed.
    dl.handle(Input::Lost(Conn::first(peer(1))), 1);
    let hash = ChunkHash::of(&swarm.verifying[&0]);
    let out = dl.handle(Input::Hashed { index: 0, hash }, 2);
    assert_eq!(out, vec![Action::Discard { index: 0 }]);
    assert!(dl.is_banned(&peer(1)));
    // Not asked again if the broker introduces it anew; chunk 0 goes to
    // an honest holder.
    assert!(dl.handle(Input::Introduced(peer(1)), 3).is_empty());
    swarm.verifying.clear();
    swarm.add(peer(2), Holder::full(&fx));
    let actions = join(&mut dl, peer(2), 3);
    swarm.pump(&mut dl, actions, 4);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.served_by(peer(2)).contains(&0));
    // A hash for a chunk nobody asked to verify changes nothing.
    let stray = ChunkHash::of(fx.chunk(1));
    assert!(dl
        .handle(
            Input::Hashed {
                index: 1,
                hash: stray
            },
            5
        )
        .is_empty());
}

#[test]
fn the_full_holder_is_left_what_no_partial_holder_has() {
    let fx = Fixture::new(32 * 1024, 1024);
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    swarm.add(peer(2), Holder::with(&fx, 0..24));
    let mut dl = Download::new(fx.address(), 0, 0);
    let mut actions = join(&mut dl, peer(1), 0);
    actions.extend(join(&mut dl, peer(2), 0));
    swarm.pump(&mut dl, actions, 1);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    // The seeder served the part only it has, plus what it was asked
    // before the partial holder said what it has.
    let seeder = swarm.served_by(peer(1));
    assert!(
        seeder.len() <= 8 + PIPELINE + PREFETCH as usize,
        "the seeder served {seeder:?}"
    );
    assert!((24..32).all(|i| seeder.contains(&i)));
}

/// Content big enough for a second connection.
fn big() -> Fixture {
    Fixture::new(SECOND_LANE_BYTES as usize + 100_000, 256 * 1024)
}

/// A lone holder of `fx`: it and the download's peer (once it has the
/// manifest) are the two holders online.
fn lone_holder(fx: &Fixture) -> (Swarm<'_>, Download) {
    let mut swarm = Swarm::new(fx);
    swarm.add(peer(1), Holder::full(fx));
    let mut dl = Download::new(fx.address(), 0, 7);
    dl.handle(Input::Holders(2), 0);
    (swarm, dl)
}

fn second_lane(p: HolderId) -> Conn {
    Conn { holder: p, lane: 1 }
}

/// Joins holder 1 and delivers until the download opens a second
/// connection to it; returns that connection and the actions still to do.
fn until_second_lane(swarm: &mut Swarm<'_>, dl: &mut Download) -> (Conn, Vec<Action>) {
    let actions = join(dl, peer(1), 0);
    let lane = second_lane(peer(1));
    let (seen, rest) = swarm.pump_until(dl, actions, 1, |a| *a == Action::Connect(lane));
    assert_eq!(seen.last(), Some(&Action::Connect(lane)));
    (lane, rest)
}

#[test]
fn big_content_from_a_lone_holder_comes_over_two_connections() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, mut rest) = until_second_lane(&mut swarm, &mut dl);
    assert!(
        matches!(dl.status(), Status::Receiving { received, .. } if received >= SECOND_LANE_AFTER_BYTES)
    );
    // Asks nothing of it: it shares what the first connection was told.
    rest.extend(dl.handle(Input::Opened(lane), 2));
    assert!(rest.contains(&Action::Send(
        lane,
        Request::Chunks {
            content: fx.address(),
            indices: match rest.iter().find_map(|a| match a {
                Action::Send(c, Request::Chunks { indices, .. }) if *c == lane =>
                    Some(indices.clone()),
                _ => None,
            }) {
                Some(i) => i,
                None => panic!("nothing asked over the second connection: {rest:?}"),
            },
        }
    )));
    assert!(!rest
        .iter()
        .any(|a| matches!(a, Action::Send(c, Request::Has { .. }) if *c == lane)));
    let seen = swarm.pump(&mut dl, rest, 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.asked_over[&lane] > 4, "{:?}", swarm.asked_over);
    assert!(swarm.asked_over[&Conn::first(peer(1))] > 4);
    // Both close at the end; one holder counts once.
    for conn in [Conn::first(peer(1)), lane] {
        assert!(seen.contains(&Action::Disconnect { conn, reason: None }));
    }
    assert_eq!(dl.status(), Status::Verified);
}

#[test]
fn no_second_connection_while_other_holders_are_online_or_for_small_content() {
    // Downloads `fx` from a lone holder with `online` holders counted;
    // whether it opened a second connection.
    let laned = |fx: &Fixture, online: u32| {
        let (mut swarm, mut dl) = lone_holder(fx);
        dl.handle(Input::Holders(online), 0);
        let actions = join(&mut dl, peer(1), 0);
        let seen = swarm.pump(&mut dl, actions, 1);
        assert!(swarm.complete);
        seen.iter()
            .any(|a| matches!(a, Action::Connect(c) if c.lane > 0))
    };
    // Another holder online: the download spreads over holders instead.
    assert!(!laned(&big(), 3));
    let small = Fixture::new(SECOND_LANE_BYTES as usize / 2, 256 * 1024);
    assert!(!laned(&small, 2));
    // The same, alone and big: it does.
    assert!(laned(&big(), 2));
}

#[test]
fn bad_data_on_one_connection_drops_both() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, mut rest) = until_second_lane(&mut swarm, &mut dl);
    rest.extend(dl.handle(Input::Opened(lane), 2));
    // The next chunk the second connection delivers is corrupt.
    let asked = rest
        .iter()
        .find_map(|a| match a {
            Action::Send(c, Request::Chunks { indices, .. }) if *c == lane => Some(indices[0]),
            _ => None,
        })
        .expect("asked over the second connection");
    swarm.holders.get_mut(&peer(1)).unwrap().corrupt = Some(asked);
    let seen = swarm.pump(&mut dl, rest, 3);
    assert!(dropped_for(&seen, peer(1), |r| matches!(
        r,
        DropReason::FailedVerification(_)
    )));
    let dropped: Vec<Conn> = seen
        .iter()
        .filter_map(|a| match a {
            Action::Disconnect {
                conn,
                reason: Some(_),
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec![Conn::first(peer(1)), lane]);
    assert!(dl.is_banned(&peer(1)));
    assert!(!swarm.complete);
    // Nothing more goes to either connection.
    assert!(dl.handle(Input::Opened(lane), 4).is_empty());
}

#[test]
fn a_second_connection_that_never_opens_costs_nothing_else() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, rest) = until_second_lane(&mut swarm, &mut dl);
    // The first connection goes on; the second never opens.
    let stores = std::cell::Cell::new(0);
    let later = CONNECT_TIMEOUT_MS;
    let (_, rest) = swarm.pump_until(&mut dl, rest, later, |a| {
        stores.set(stores.get() + u32::from(matches!(a, Action::Store { .. })));
        stores.get() == 8
    });
    let mut actions = dl.handle(Input::Tick, later + 2);
    assert!(actions.contains(&Action::Disconnect {
        conn: lane,
        reason: Some(DropReason::ConnectTimeout)
    }));
    assert!(!dl.is_banned(&peer(1)));
    actions.extend(rest);
    let seen = swarm.pump(&mut dl, actions, later + 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    // Not retried: once per download.
    assert!(!seen
        .iter()
        .any(|a| matches!(a, Action::Connect(c) if *c == lane)));
}

#[test]
fn losing_the_second_connection_puts_its_chunks_back() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, mut rest) = until_second_lane(&mut swarm, &mut dl);
    let opened = dl.handle(Input::Opened(lane), 2);
    assert!(opened
        .iter()
        .any(|a| matches!(a, Action::Send(c, Request::Chunks { .. }) if *c == lane)));
    // Its requests never reach the holder: the connection drops first.
    rest.extend(
        opened
            .into_iter()
            .filter(|a| !matches!(a, Action::Send(c, _) if *c == lane)),
    );
    rest.extend(dl.handle(Input::Lost(lane), 3));
    swarm.pump(&mut dl, rest, 4);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(!dl.is_banned(&peer(1)));
}

#[test]
fn the_second_connection_closes_once_other_holders_come_online() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, mut rest) = until_second_lane(&mut swarm, &mut dl);
    rest.extend(dl.handle(Input::Opened(lane), 2));
    let stores = std::cell::Cell::new(0);
    let (_, mut rest) = swarm.pump_until(&mut dl, rest, 3, |a| {
        stores.set(stores.get() + u32::from(matches!(a, Action::Store { .. })));
        stores.get() == 4
    });
    let asked = swarm.asked_over[&lane];
    assert!(asked > 0);
    // A downloader that arrived meanwhile holds some of it now.
    dl.handle(Input::Holders(3), 4);
    rest.extend(dl.handle(Input::Tick, 5));
    let seen = swarm.pump(&mut dl, rest, 6);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    // What it owed arrived; nothing more was asked over it, and it closed
    // before the end without a reason (the holder is not to blame).
    assert!(swarm.asked_over[&lane] <= asked + PIPELINE);
    let closed = seen
        .iter()
        .position(|a| {
            *a == Action::Disconnect {
                conn: lane,
                reason: None,
            }
        })
        .expect("the second connection closed");
    assert!(closed < seen.iter().position(|a| *a == Action::Complete).unwrap());
    assert!(!dl.is_banned(&peer(1)));
}

#[test]
fn what_a_holder_gains_is_known_on_all_its_connections() {
    let fx = big();
    let count = fx.manifest.chunk_count();
    let mut swarm = Swarm::new(&fx);
    // Holder 1 lacks the last chunk until it says it gained it.
    swarm.add(peer(1), Holder::with(&fx, 0..count - 1));
    let mut dl = Download::new(fx.address(), 0, 7);
    dl.handle(Input::Holders(2), 0);
    let (lane, mut rest) = until_second_lane(&mut swarm, &mut dl);
    rest.extend(dl.handle(Input::Opened(lane), 2));
    swarm.pump(&mut dl, rest, 3);
    assert!(!swarm.complete);
    assert_eq!(
        dl.status(),
        Status::Receiving {
            received: fx.manifest.size - fx.manifest.chunk_len(count - 1) as u64,
            total: fx.manifest.size,
            sources: 1,
            sending: 0,
            missing: vec![(
                (count - 1) as u64 * fx.manifest.chunk_size as u64,
                fx.manifest.size
            )],
        }
    );
    // Told over the second connection: the holder has it, whichever
    // connection then asks for it.
    swarm
        .holders
        .get_mut(&peer(1))
        .unwrap()
        .has
        .insert(count - 1);
    let got = Reply::Got {
        content: fx.address(),
        index: count - 1,
    };
    let actions = dl.handle(Input::Reply(lane, got), 4);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send(c, Request::Chunks { .. }) if c.holder == peer(1))));
    swarm.pump(&mut dl, actions, 5);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

#[test]
fn the_machine_names_its_next_deadline() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0, 0);
    // Nothing can time out, and nobody is online to ask for.
    assert_eq!(dl.next_deadline(), None);
    dl.handle(Input::Holders(1), 0);
    assert_eq!(dl.next_deadline(), Some(WANT_RETRY_MS));
    dl.handle(Input::Introduced(peer(1)), 10);
    assert_eq!(dl.next_deadline(), Some(10 + CONNECT_TIMEOUT_MS + 1));
    // Open, it owes the manifest.
    dl.handle(Input::Opened(Conn::first(peer(1))), 100);
    let deadline = dl.next_deadline().expect("owes the manifest");
    assert_eq!(deadline, 100 + STALL_TIMEOUT_MS + 1);
    // Nothing happens before it; at it, the holder is dropped.
    assert!(dl.handle(Input::Tick, deadline - 1).is_empty());
    let out = dl.handle(Input::Tick, deadline);
    assert!(dropped_for(&out, peer(1), |r| *r == DropReason::Stalled));
    // Then the broker is asked again, once per retry period.
    assert_eq!(dl.next_deadline(), Some(deadline + WANT_RETRY_MS));
    // Once complete, nothing is due.
    let mut swarm = Swarm::new(&fx);
    swarm.add(peer(2), Holder::full(&fx));
    let actions = join(&mut dl, peer(2), deadline + 1);
    swarm.pump(&mut dl, actions, deadline + 2);
    assert!(swarm.complete);
    assert_eq!(dl.next_deadline(), None);
}

#[test]
fn a_holder_left_with_its_second_connection_gets_a_first_one_when_introduced_again() {
    let fx = big();
    let (mut swarm, mut dl) = lone_holder(&fx);
    let (lane, _) = until_second_lane(&mut swarm, &mut dl);
    dl.handle(Input::Opened(lane), 2);
    dl.handle(Input::Lost(Conn::first(peer(1))), 3);
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 4),
        vec![Action::Connect(Conn::first(peer(1)))]
    );
    // Introduced once more while both are there: nothing new.
    assert!(dl.handle(Input::Introduced(peer(1)), 5).is_empty());
}

// ----- hostile and slow holders -----

/// Chunk `i` in frames of `piece` payload bytes each.
fn pieces(fx: &Fixture, i: u32, piece: usize) -> Vec<Msg> {
    let chunk = fx.chunk(i);
    let frames = chunk.chunks(piece).enumerate().map(|(k, bytes)| {
        let mut f = Frame::header(FrameKind::Chunk, i, k * piece, chunk.len()).to_vec();
        f.extend_from_slice(bytes);
        Msg::Frame(f)
    });
    frames.collect()
}

/// Joins `p` at `now` and hands it the manifest and `Has: all` from it;
/// returns the actions that follow (its requests for chunks).
fn manifest_from(dl: &mut Download, fx: &Fixture, p: HolderId, now: u64) -> Vec<Action> {
    join(dl, p, now);
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(Conn::first(p), &frame), now);
    }
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::All,
    };
    dl.handle(Input::Reply(Conn::first(p), has), now)
}

/// The chunks asked of `conn` in `actions`.
fn asked(actions: &[Action], conn: Conn) -> Vec<u32> {
    let asked = actions.iter().filter_map(|a| match a {
        Action::Send(to, Request::Chunks { indices, .. }) if *to == conn => Some(indices.clone()),
        _ => None,
    });
    asked.flatten().collect()
}

#[test]
fn progress_is_counted_in_payload_bytes_so_a_trickle_of_frames_stalls_all_the_same() {
    let fx = Fixture::new(512 * 1024, 256 * 1024);
    let p = peer(1);
    let conn = Conn::first(p);
    // A trickle: 100 bytes every 100 ms, 5 KB per stall window.
    let mut dl = Download::new(fx.address(), 0, 0);
    manifest_from(&mut dl, &fx, p, 0);
    let mut swarm = Swarm::new(&fx);
    let mut t = 0;
    let mut dropped = false;
    for msg in pieces(&fx, 0, 100) {
        t += 100;
        let mut out = swarm.deliver(&mut dl, conn, vec![msg], t);
        out.extend(dl.handle(Input::Tick, t));
        if dropped_for(&out, p, |r| *r == DropReason::Stalled) {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a 1 KB/s trickle was never dropped");
    assert_eq!(t, STALL_TIMEOUT_MS + 100, "dropped at {t} ms");
    assert!(dl.is_banned(&p));
    let why = DropReason::Stalled.to_string();
    assert!(why.contains("16 KiB in 5 s"), "{why}");

    // A slow honest link, 1 Mbit/s (12.5 KB every 100 ms), is not.
    let mut dl = Download::new(fx.address(), 0, 0);
    manifest_from(&mut dl, &fx, p, 0);
    let mut swarm = Swarm::new(&fx);
    let mut t = 0;
    for msg in pieces(&fx, 0, 12_500) {
        t += 100;
        let mut out = swarm.deliver(&mut dl, conn, vec![msg], t);
        out.extend(dl.handle(Input::Tick, t));
        assert!(!dl.is_banned(&p), "dropped at {t} ms: {out:?}");
        swarm.pump(&mut dl, out, t);
    }
    assert_eq!(swarm.stored.keys().collect::<Vec<_>>(), vec![&0]);
}

#[test]
fn a_frame_without_payload_bans_its_sender_before_anything_is_kept() {
    let fx = Fixture::new(512 * 1024, 256 * 1024);
    let p = peer(1);
    let mut dl = Download::new(fx.address(), 0, 0);
    manifest_from(&mut dl, &fx, p, 0);
    // The 13-byte frame of chunk 0 at offset 0: a header and nothing else.
    let empty = Frame::header(FrameKind::Chunk, 0, 0, 256 * 1024);
    let head = FrameHead::decode(&empty, HEADER).unwrap();
    assert_eq!(head.len, 0);
    let out = dl.handle(Input::ChunkFrame(Conn::first(p), head), 1);
    assert!(dropped_for(&out, p, |r| *r == DropReason::EmptyFrame));
    assert!(!out.iter().any(|a| matches!(a, Action::Keep { .. })));
    assert!(dl.is_banned(&p));
    assert!(DropReason::EmptyFrame.to_string().contains("no payload"));
    // Nor may the manifest come in empty frames.
    let mut dl = Download::new(fx.address(), 0, 0);
    join(&mut dl, p, 0);
    let empty = Frame::header(FrameKind::Manifest, 0, 0, 100);
    let out = dl.handle(Input::Frame(Conn::first(p), &empty), 1);
    assert!(dropped_for(&out, p, |r| *r == DropReason::EmptyFrame));
}

#[test]
fn chunks_late_at_one_holder_are_asked_of_an_idle_one_and_the_first_verified_copy_wins() {
    let fx = Fixture::new(8 * 1024, 1024);
    let (slow, fast) = (peer(1), peer(2));
    let (s, f) = (Conn::first(slow), Conn::first(fast));
    let mut swarm = Swarm::new(&fx);
    swarm.add(fast, Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(3), 0);
    // The slow holder sent the manifest and owes chunk 0 (prefetched) and
    // the pipeline behind it.
    let first = manifest_from(&mut dl, &fx, slow, 0);
    assert_eq!(asked(&first, s), vec![1, 2, 3]);
    // The fast one takes what nobody owes, then has nothing left to do.
    let actions = join(&mut dl, fast, 10);
    swarm.pump(&mut dl, actions, 10);
    let mut served = swarm.served_by(fast).to_vec();
    served.sort_unstable();
    assert_eq!(served, vec![4, 5, 6, 7]);
    assert!(!swarm.complete);
    // The slow one sends half of chunk 0, and nothing more.
    let mut half = pieces(&fx, 0, 512);
    let rest = half.split_off(1);
    let out = swarm.deliver(&mut dl, s, half, 100);
    assert!(
        matches!(out[..], [Action::Keep { offset: 0, .. }]),
        "{out:?}"
    );

    // It turns late when it has owed chunk 0 for the endgame's time: the
    // machine names that moment, and then asks the idle holder.
    assert_eq!(dl.next_deadline(), Some(ENDGAME_LATE_MS));
    assert!(asked(&dl.handle(Input::Tick, ENDGAME_LATE_MS - 1), f).is_empty());
    let late = dl.handle(Input::Tick, ENDGAME_LATE_MS);
    assert_eq!(asked(&late, f), vec![0, 1, 2, 3]);
    // Named once: the next deadline is the slow one's stall timeout (512
    // bytes are no progress).
    assert_eq!(dl.next_deadline(), Some(STALL_TIMEOUT_MS + 1));

    // The fast copy of chunk 0 arrives first and is stored; the fast
    // holder is not asked to send the rest yet.
    let Some(Action::Send(_, request)) = late.into_iter().find(|a| matches!(a, Action::Send(..)))
    else {
        unreachable!()
    };
    let mut copy = swarm.holders.get_mut(&fast).unwrap().answer(&fx, &request);
    let later = copy.split_off(1);
    let out = swarm.deliver(&mut dl, f, copy, 3_100);
    swarm.pump(&mut dl, out, 3_100);
    assert!(swarm.stored.contains_key(&0));

    // The slow copy's rest is dropped, not kept, hashed or stored twice,
    // and the slow holder is not blamed: it is slow, not dishonest.
    let out = swarm.deliver(&mut dl, s, rest, 3_200);
    assert_eq!(out[0], Action::Abandon { conn: s });
    assert!(
        !out.iter()
            .any(|a| matches!(a, Action::Keep { .. } | Action::Verify { .. })),
        "{out:?}"
    );
    assert!(!swarm.arriving.contains_key(&s));
    swarm.pump(&mut dl, out, 3_200);
    assert!(!dl.is_banned(&slow));
    // The slow one's copy of chunk 1 now arrives first: it wins, and the
    // fast one's copy that follows is not kept at all.
    let out = swarm.deliver(&mut dl, s, pieces(&fx, 1, 1024), 3_300);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Verify { conn, index: 1 } if *conn == s)));
    swarm.pump(&mut dl, out, 3_300);
    let out = swarm.deliver(&mut dl, f, later, 3_400);
    assert!(
        !out.iter().any(|a| matches!(
            a,
            Action::Keep { index: 1, .. } | Action::Verify { index: 1, .. }
        )),
        "{out:?}"
    );
    // Chunks 2 and 3 came from the fast copy: complete, each stored once
    // (the swarm checks that), none from a holder that was dropped.
    swarm.pump(&mut dl, out, 3_400);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(!dl.is_banned(&slow) && !dl.is_banned(&fast));
}

#[test]
fn a_chunk_still_owed_elsewhere_is_not_asked_a_third_time_when_one_holder_goes() {
    let fx = Fixture::new(8 * 1024, 1024);
    let (slow, fast) = (peer(1), peer(2));
    let mut swarm = Swarm::new(&fx);
    swarm.add(fast, Holder::full(&fx));
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(3), 0);
    manifest_from(&mut dl, &fx, slow, 0);
    let actions = join(&mut dl, fast, 10);
    swarm.pump(&mut dl, actions, 10);
    // The fast holder is asked for the slow one's chunks, and leaves
    // before sending them: they are still owed by the slow one.
    let late = dl.handle(Input::Tick, ENDGAME_LATE_MS);
    assert_eq!(asked(&late, Conn::first(fast)), vec![0, 1, 2, 3]);
    let out = dl.handle(Input::Lost(Conn::first(fast)), 3_100);
    assert!(asked(&out, Conn::first(slow)).is_empty(), "{out:?}");
    // When the slow one goes too, they are up for grabs again.
    swarm.add(peer(3), Holder::full(&fx));
    dl.handle(Input::Lost(Conn::first(slow)), 3_200);
    let actions = join(&mut dl, peer(3), 3_300);
    swarm.pump(&mut dl, actions, 3_300);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

/// `p` says it has everything; returns the actions that follow.
fn has_all(dl: &mut Download, fx: &Fixture, p: HolderId, now: u64) -> Vec<Action> {
    let has = Reply::Has {
        content: fx.address(),
        chunks: Have::All,
    };
    dl.handle(Input::Reply(Conn::first(p), has), now)
}

#[test]
fn a_late_chunk_is_asked_again_when_its_helper_is_late_too() {
    let fx = Fixture::new(1 << 20, 256 * 1024);
    let (slow, helper, third) = (peer(1), peer(2), peer(3));
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(4), 0);
    // The first holder owes every chunk; a second one has nothing to do.
    assert_eq!(
        asked(&manifest_from(&mut dl, &fx, slow, 0), Conn::first(slow)),
        vec![1, 2, 3]
    );
    join(&mut dl, helper, 10);
    assert!(asked(&has_all(&mut dl, &fx, helper, 10), Conn::first(helper)).is_empty());
    // Both trickle just over the minimum rate.
    let mut swarm = Swarm::new(&fx);
    let mut slow_pieces = pieces(&fx, 0, MIN_PROGRESS_BYTES as usize).into_iter();
    let mut trickle = |dl: &mut Download, swarm: &mut Swarm<'_>, conn: Conn, t: u64| {
        let piece = slow_pieces.next().unwrap();
        let out = swarm.deliver(dl, conn, vec![piece], t);
        assert!(!dropped_for(&out, conn.holder, |_| true), "{out:?}");
    };
    trickle(&mut dl, &mut swarm, Conn::first(slow), 2_000);
    let late = dl.handle(Input::Tick, ENDGAME_LATE_MS);
    assert_eq!(asked(&late, Conn::first(helper)), vec![0, 1, 2, 3]);
    // A third holder arrives with nothing to do.
    join(&mut dl, third, 3_010);
    assert!(asked(&has_all(&mut dl, &fx, third, 3_010), Conn::first(third)).is_empty());
    trickle(&mut dl, &mut swarm, Conn::first(slow), 4_000);
    let mut helper_pieces = pieces(&fx, 0, MIN_PROGRESS_BYTES as usize).into_iter();
    let out = swarm.deliver(
        &mut dl,
        Conn::first(helper),
        vec![helper_pieces.next().unwrap()],
        5_000,
    );
    assert!(!dropped_for(&out, helper, |_| true), "{out:?}");
    // The helper turns late in its turn: the machine names that moment,
    // and then the idle third holder is asked for the chunks both owe.
    let helper_late = ENDGAME_LATE_MS + ENDGAME_LATE_MS;
    assert_eq!(dl.next_deadline(), Some(helper_late));
    let out = dl.handle(Input::Tick, helper_late);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Disconnect { .. })),
        "{out:?}"
    );
    assert_eq!(asked(&out, Conn::first(third)), vec![0, 1, 2, 3]);
    swarm.add(third, Holder::full(&fx));
    swarm.pump(&mut dl, out, helper_late);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
}

#[test]
fn a_holder_with_nothing_useful_gives_its_place_to_a_new_one() {
    let fx = Fixture::new(8 * 1024, 1024);
    let first = peer(1);
    let mut dl = Download::new(fx.address(), 0, 0);
    manifest_from(&mut dl, &fx, first, 0);
    // Chunks 4 to 7 are missing: the first holder owes 0 to 3.
    let say = |dl: &mut Download, p: HolderId, chunks: &[u32], now: u64| {
        join(dl, p, now);
        let mut has = Availability::none(8);
        for &i in chunks {
            has.insert(i);
        }
        let has = Reply::Has {
            content: fx.address(),
            chunks: has.to_have(),
        };
        dl.handle(Input::Reply(Conn::first(p), has), now)
    };
    // One has a chunk the first holder owes (it could take it over);
    // two claim nothing at all.
    say(&mut dl, peer(2), &[1], 10);
    say(&mut dl, peer(3), &[], 10);
    say(&mut dl, peer(4), &[], 10);
    // More are online: the useless ones do not count against asking.
    dl.handle(Input::Holders(7), 20);
    let out = dl.handle(Input::Tick, WANT_RETRY_MS);
    assert!(out.contains(&Action::Want(2)), "{out:?}");
    // A holder introduced now takes a useless one's place, which is told why.
    let out = dl.handle(Input::Introduced(peer(5)), 2_010);
    assert!(
        dropped_for(&out, peer(3), |r| *r == DropReason::NothingToOffer),
        "{out:?}"
    );
    assert!(
        out.contains(&Action::Connect(Conn::first(peer(5)))),
        "{out:?}"
    );
    let out = dl.handle(Input::Introduced(peer(6)), 2_020);
    assert!(
        dropped_for(&out, peer(4), |r| *r == DropReason::NothingToOffer),
        "{out:?}"
    );
    assert!(
        out.contains(&Action::Connect(Conn::first(peer(6)))),
        "{out:?}"
    );
    // Not banned: it may gain chunks and come back.
    assert!(!dl.is_banned(&peer(3)));
    // The partial holder and those yet to say what they have stay.
    assert!(dl.handle(Input::Introduced(peer(7)), 2_030).is_empty());
    let why = DropReason::NothingToOffer.to_string();
    assert!(why.contains("none of the chunks"), "{why}");
}

#[test]
fn a_repeated_has_bans_and_a_repeated_got_changes_nothing() {
    let fx = Fixture::new(8 * 1024, 1024);
    let (slow, idle) = (peer(1), peer(2));
    let mut dl = Download::new(fx.address(), 0, 0);
    dl.handle(Input::Holders(3), 0);
    manifest_from(&mut dl, &fx, slow, 0);
    // A partial holder of chunks 1 and 2, which the first holder owes.
    join(&mut dl, idle, 10);
    let mut has = Availability::none(8);
    has.insert(1);
    let has = Reply::Has {
        content: fx.address(),
        chunks: has.to_have(),
    };
    assert!(asked(
        &dl.handle(Input::Reply(Conn::first(idle), has), 10),
        Conn::first(idle)
    )
    .is_empty());
    let got = |index| {
        Input::Reply(
            Conn::first(idle),
            Reply::Got {
                content: fx.address(),
                index,
            },
        )
    };
    assert!(asked(&dl.handle(got(2), 20), Conn::first(idle)).is_empty());
    // The first holder is late by now, yet a `Got` of a chunk the holder
    // was known to have is no news: nothing is decided on it.
    let out = dl.handle(got(2), ENDGAME_LATE_MS + 1);
    assert!(out.is_empty(), "{out:?}");
    // A second `Has` from the same holder breaks the protocol.
    let out = has_all(&mut dl, &fx, slow, ENDGAME_LATE_MS + 2);
    assert!(
        dropped_for(&out, slow, |r| *r == DropReason::RepeatedHas),
        "{out:?}"
    );
    assert!(dl.is_banned(&slow));
    let why = DropReason::RepeatedHas.to_string();
    assert!(why.contains("twice"), "{why}");
}

mod origin;
