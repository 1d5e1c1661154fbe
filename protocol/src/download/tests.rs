use super::*;
use crate::transfer::Frame;
use uuid::Uuid;

fn peer(n: u128) -> PeerId {
    PeerId(Uuid::from_u128(n))
}

/// Content plus the frames an honest holder sends for each request.
struct Fixture {
    manifest: Manifest,
    data: Vec<u8>,
}

impl Fixture {
    fn new(len: usize, chunk_size: u32) -> Self {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let manifest = Manifest::describe_with_chunk_size(&data, "text/plain", None, chunk_size);
        Fixture { manifest, data }
    }

    fn address(&self) -> ContentId {
        self.manifest.address()
    }

    fn manifest_frames(&self) -> Vec<Vec<u8>> {
        Frame::encode_all(FrameKind::Manifest, 0, &self.manifest.to_bytes()).collect()
    }

    fn answer(&self, req: &Request) -> Vec<Vec<u8>> {
        match req {
            Request::Manifest { prefetch, .. } => {
                let mut frames = self.manifest_frames();
                let leading = (0..self.manifest.chunk_count().min(*prefetch)).collect();
                frames.extend(self.answer(&Request::Chunks {
                    content: self.address(),
                    indices: leading,
                }));
                frames
            }
            Request::Chunks { indices, .. } => indices
                .iter()
                .flat_map(|&i| {
                    let start = i as usize * self.manifest.chunk_size as usize;
                    let end = start + self.manifest.chunk_len(i);
                    Frame::encode_all(FrameKind::Chunk, i, &self.data[start..end])
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

/// Delivers every `Send` to the honest holder and feeds its frames back,
/// until nothing is left to send. Returns the non-`Send` actions seen.
fn pump(dl: &mut Download, fx: &Fixture, mut actions: Vec<Action>, now: u64) -> Vec<Action> {
    let mut seen = Vec::new();
    while let Some(action) = (!actions.is_empty()).then(|| actions.remove(0)) {
        match action {
            Action::Send(p, req) => {
                for frame in fx.answer(&req) {
                    actions.extend(dl.handle(Input::Frame(p, &frame), now));
                }
            }
            other => seen.push(other),
        }
    }
    seen
}

fn complete_data(actions: &[Action]) -> Option<&Vec<u8>> {
    actions.iter().find_map(|a| match a {
        Action::Complete { data, .. } => Some(data),
        _ => None,
    })
}

#[test]
fn single_holder_happy_path() {
    let fx = Fixture::new(40_000, 256 * 1024);
    let mut dl = Download::new(fx.address(), 0);
    assert_eq!(dl.status(), Status::Looking);
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 0),
        vec![Action::Connect(peer(1))]
    );
    assert_eq!(dl.status(), Status::Connecting);
    let actions = dl.handle(Input::Opened(peer(1)), 5);
    assert_eq!(
        actions,
        vec![Action::Send(
            peer(1),
            Request::Manifest {
                content: fx.address(),
                prefetch: PREFETCH
            }
        )]
    );
    let seen = pump(&mut dl, &fx, actions, 6);
    assert_eq!(complete_data(&seen), Some(&fx.data));
    assert!(seen.contains(&Action::Disconnect {
        peer: peer(1),
        reason: None
    }));
    assert_eq!(dl.status(), Status::Verified);
}

#[test]
fn manifest_of_other_content_bans_the_holder() {
    let fx = Fixture::new(1000, 256 * 1024);
    let other = Fixture::new(1001, 256 * 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    let actions = dl.handle(Input::Opened(peer(1)), 0);
    let seen = pump(&mut dl, &other, actions, 0);
    assert!(dl.is_banned(&peer(1)));
    assert!(
        matches!(&seen[0], Action::Disconnect { reason: Some(r), .. } if r.contains("does not match"))
    );
    assert!(seen.contains(&Action::Want(1)));
    // Introduced again, the bad holder is ignored.
    assert!(dl.handle(Input::Introduced(peer(1)), 1).is_empty());
    // An honest one completes the download.
    dl.handle(Input::Introduced(peer(2)), 1);
    let actions = dl.handle(Input::Opened(peer(2)), 1);
    let seen = pump(&mut dl, &fx, actions, 2);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn corrupted_chunk_is_never_delivered() {
    let fx = Fixture::new(3000, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    let actions = dl.handle(Input::Opened(peer(1)), 0);
    let mut seen = Vec::new();
    let mut queue = actions;
    while let Some(action) = (!queue.is_empty()).then(|| queue.remove(0)) {
        match action {
            Action::Send(p, req) => {
                for mut frame in fx.answer(&req) {
                    if frame[0] == 2 {
                        let last = frame.len() - 1;
                        frame[last] ^= 0xff;
                    }
                    queue.extend(dl.handle(Input::Frame(p, &frame), 0));
                }
            }
            other => seen.push(other),
        }
    }
    assert!(complete_data(&seen).is_none());
    assert!(dl.is_banned(&peer(1)));
    assert!(seen.iter().any(
        |a| matches!(a, Action::Disconnect { reason: Some(r), .. } if r.contains("failed verification"))
    ));
    // Another holder fills in, starting over at the first missing chunk.
    dl.handle(Input::Introduced(peer(2)), 1);
    let actions = dl.handle(Input::Opened(peer(2)), 1);
    let seen = pump(&mut dl, &fx, actions, 1);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn several_holders_share_the_chunks() {
    let fx = Fixture::new(16 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Opened(peer(1)), 0);
    // Deliver only the manifest: the holder owes the prefetched chunks.
    let mut after_manifest = Vec::new();
    for frame in fx.manifest_frames() {
        after_manifest.extend(dl.handle(Input::Frame(peer(1), &frame), 0));
    }
    assert_eq!(after_manifest, vec![Action::Want(3)]);
    dl.handle(Input::Introduced(peer(2)), 0);
    let second = dl.handle(Input::Opened(peer(2)), 0);
    assert_eq!(
        second,
        vec![Action::Send(
            peer(2),
            Request::Chunks {
                content: fx.address(),
                indices: vec![4, 5, 6, 7]
            }
        )]
    );
    // The prefetched chunks 0..4 arrive from peer 1 as if requested.
    let mut all = vec![Action::Send(
        peer(1),
        Request::Chunks {
            content: fx.address(),
            indices: vec![0, 1, 2, 3],
        },
    )];
    all.extend(second);
    let seen = pump(&mut dl, &fx, all, 1);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn lost_holder_costs_only_its_in_flight_chunks() {
    let fx = Fixture::new(8 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Opened(peer(1)), 0);
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(peer(1), &frame), 0);
    }
    // Deliver chunk 0 only, then the holder vanishes.
    let frame = Frame::encode_all(FrameKind::Chunk, 0, &fx.data[..1024])
        .next()
        .unwrap();
    dl.handle(Input::Frame(peer(1), &frame), 0);
    assert!(matches!(
        dl.status(),
        Status::Receiving { received: 1024, .. }
    ));
    let after = dl.handle(Input::Lost(peer(1), "closed".into()), 1);
    assert_eq!(after, vec![Action::Want(1)]);
    assert!(!dl.is_banned(&peer(1)));
    dl.handle(Input::Introduced(peer(2)), 2);
    let actions = dl.handle(Input::Opened(peer(2)), 2);
    let Action::Send(_, Request::Chunks { indices, .. }) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(indices, &vec![1, 2, 3, 4]);
    let seen = pump(&mut dl, &fx, actions, 3);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn stalled_and_unreachable_holders_are_dropped() {
    let fx = Fixture::new(1000, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Holders(2), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Introduced(peer(2)), 0);
    dl.handle(Input::Opened(peer(1)), 100);
    // Peer 1 owes the manifest; peer 2 never opens.
    assert!(dl.handle(Input::Tick, 100 + STALL_TIMEOUT_MS).is_empty());
    let out = dl.handle(Input::Tick, 101 + STALL_TIMEOUT_MS);
    assert!(
        matches!(&out[0], Action::Disconnect { peer: p, reason: Some(r) } if *p == peer(1) && r.contains("stalled"))
    );
    // The manifest request moves to no one yet: peer 2 is still connecting.
    let out = dl.handle(Input::Tick, CONNECT_TIMEOUT_MS + 1);
    assert!(
        matches!(&out[0], Action::Disconnect { peer: p, reason: Some(r) } if *p == peer(2) && r.contains("connect"))
    );
    assert!(out.contains(&Action::Want(1)));
    assert_eq!(dl.status(), Status::Looking);
}

#[test]
fn gone_until_a_holder_appears_then_retries_wants() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Holders(0), 0);
    assert_eq!(dl.status(), Status::Gone);
    // No holders: no point asking again.
    assert!(dl.handle(Input::Tick, 60_000).is_empty());
    dl.handle(Input::Holders(1), 60_000);
    assert_eq!(dl.handle(Input::Tick, 60_001), vec![Action::Want(1)]);
    assert!(dl.handle(Input::Tick, 60_002).is_empty());
    assert_eq!(
        dl.handle(Input::Introduced(peer(9)), 60_003),
        vec![Action::Connect(peer(9))]
    );
    let actions = dl.handle(Input::Opened(peer(9)), 60_004);
    let seen = pump(&mut dl, &fx, actions, 60_005);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn missing_reply_moves_on_without_banning() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Opened(peer(1)), 0);
    let out = dl.handle(
        Input::Reply(
            peer(1),
            Reply::Missing {
                content: fx.address(),
            },
        ),
        1,
    );
    assert!(matches!(
        &out[0],
        Action::Disconnect {
            reason: Some(_),
            ..
        }
    ));
    assert!(out.contains(&Action::Want(1)));
    assert!(!dl.is_banned(&peer(1)));
}

#[test]
fn unsolicited_frames_ban_the_sender() {
    let fx = Fixture::new(10, 1024);
    let mut dl = Download::new(fx.address(), 0);
    dl.handle(Input::Introduced(peer(1)), 0);
    dl.handle(Input::Opened(peer(1)), 0);
    let chunk = Frame::encode_all(FrameKind::Chunk, 0, &fx.data)
        .next()
        .unwrap();
    let out = dl.handle(Input::Frame(peer(1), &chunk), 0);
    assert!(dl.is_banned(&peer(1)));
    assert!(
        matches!(&out[0], Action::Disconnect { reason: Some(r), .. } if r.contains("before the manifest"))
    );
}

#[test]
fn request_ahead_rides_on_the_answer_and_is_not_repeated_on_open() {
    let fx = Fixture::new(40_000, 256 * 1024);
    let mut dl = Download::new(fx.address(), 0);
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 0),
        vec![Action::Connect(peer(1))]
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
    assert!(dl.handle(Input::Opened(peer(1)), 1).is_empty());
    let mut actions = Vec::new();
    for frame in fx.answer(&first) {
        actions.extend(dl.handle(Input::Frame(peer(1), &frame), 2));
    }
    let seen = pump(&mut dl, &fx, actions, 2);
    assert_eq!(complete_data(&seen), Some(&fx.data));
}

#[test]
fn request_ahead_after_the_manifest_claims_missing_chunks() {
    let fx = Fixture::new(10 * 1024, 1024);
    let mut dl = Download::new(fx.address(), 0);
    let actions = dl.handle(Input::Introduced(peer(1)), 0);
    assert_eq!(actions, vec![Action::Connect(peer(1))]);
    let mut actions = dl.handle(Input::Opened(peer(1)), 0);
    let Some(Action::Send(_, manifest_req)) = actions.pop() else {
        panic!("manifest request expected")
    };
    // Only the manifest arrives; its prefetched chunks are still owed.
    for frame in fx.manifest_frames() {
        dl.handle(Input::Frame(peer(1), &frame), 1);
    }
    assert!(matches!(manifest_req, Request::Manifest { .. }));
    dl.handle(Input::Introduced(peer(2)), 1);
    let ahead = dl.request_ahead(peer(2), 1).expect("chunks to ask for");
    let Request::Chunks { indices, .. } = &ahead else {
        panic!("{ahead:?}")
    };
    // Chunks 0..4 are owed by the first holder; the next ones go here.
    assert_eq!(indices, &[4, 5, 6, 7]);
    // Nothing for an open holder or an unknown one.
    assert_eq!(dl.request_ahead(peer(1), 1), None);
    assert_eq!(dl.request_ahead(peer(3), 1), None);
}
