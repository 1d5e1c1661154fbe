//! The site's origin as a fallback holder (see `download::origin`).

use super::*;

const ORIGIN: HolderId = HolderId::Origin;

fn lane(l: u8) -> Conn {
    Conn {
        holder: ORIGIN,
        lane: l,
    }
}

/// 32 chunks of 64 KiB.
fn site_file() -> Fixture {
    Fixture::new(2 << 20, 64 * 1024)
}

/// A download of `fx` that knows its manifest, and its first actions.
fn started(fx: &Fixture) -> (Download, Vec<Action>) {
    let (mut dl, actions) =
        Download::with_manifest(fx.address(), fx.manifest.to_bytes(), 0, 0).unwrap();
    assert!(matches!(&actions[0], Action::Manifest { manifest, .. } if *manifest == fx.manifest));
    assert!(actions.contains(&Action::Want(MAX_SOURCES as u8)));
    dl.set_sequential(true);
    (dl, actions)
}

/// Adds the origin; the broker then counts this peer and one more,
/// `peer(1)`, and introduces it. The actions so far.
fn with_one_peer(dl: &mut Download) -> Vec<Action> {
    let mut actions = dl.add_origin(0);
    actions.extend(dl.handle(Input::Holders(2), 1));
    actions.extend(join(dl, peer(1), 2));
    actions
}

fn origin_swarm(fx: &Fixture) -> Swarm<'_> {
    let mut swarm = Swarm::new(fx);
    swarm.add(ORIGIN, Holder::full(fx));
    swarm
}

#[test]
fn a_manifest_that_does_not_match_is_refused() {
    let fx = site_file();
    let other = Fixture::new(1000, 64 * 1024);
    let refused = Download::with_manifest(fx.address(), other.manifest.to_bytes(), 0, 0);
    assert_eq!(refused.err(), Some(ManifestError::AddressMismatch));
}

#[test]
fn a_lone_visitor_takes_everything_from_the_origin_in_long_runs() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    // Before the broker has counted holders: one chunk per lane, at once.
    let first = dl.add_origin(0);
    let chunks = |indices: Vec<u32>| Request::Chunks {
        content: fx.address(),
        indices,
    };
    assert_eq!(
        first,
        vec![
            Action::Send(lane(0), chunks(vec![0])),
            Action::Send(lane(1), chunks(vec![1])),
        ]
    );
    // Nobody else holds it: the rest comes in long runs.
    let mut actions = first;
    actions.extend(dl.handle(Input::Holders(1), 1));
    let mut swarm = origin_swarm(&fx);
    let seen = swarm.pump(&mut dl, actions, 2);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    let requests = &swarm.holders[&ORIGIN].requests;
    assert!(requests.len() <= 4, "{requests:?}");
    assert_eq!(requests.iter().sum::<usize>(), 32, "each chunk once");
    assert!(!seen.iter().any(|a| matches!(
        a,
        Action::Disconnect {
            reason: Some(_),
            ..
        }
    )));
}

#[test]
fn with_a_full_holder_online_the_origin_gives_only_the_first_chunks() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = origin_swarm(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    swarm.pump(&mut dl, actions, 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    let from_origin = swarm.served_by(ORIGIN).len();
    assert!(from_origin <= 4, "{:?}", swarm.served_by(ORIGIN));
    assert_eq!(swarm.served_by(peer(1)).len() + from_origin, 32);
}

#[test]
fn the_origin_fills_in_what_connected_holders_lack_in_runs() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = origin_swarm(&fx);
    swarm.add(peer(1), Holder::with(&fx, 0..16));
    swarm.pump(&mut dl, actions, 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    let from_origin = swarm.served_by(ORIGIN);
    assert!(
        (16..32).all(|i| from_origin.contains(&i)),
        "{from_origin:?}"
    );
    assert!(from_origin.len() <= 16 + 4, "{from_origin:?}");
    let longest = swarm.holders[&ORIGIN].requests.iter().max().copied();
    assert!(
        longest >= Some(8),
        "runs, not chunk by chunk: {:?}",
        swarm.holders[&ORIGIN].requests
    );
}

#[test]
fn a_holder_leaving_mid_fetch_leaves_the_rest_to_the_origin() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = origin_swarm(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    // Some chunks in, the holder goes.
    let stored = std::cell::Cell::new(0);
    let (_, rest) = swarm.pump_until(&mut dl, actions, 3, |a| {
        stored.set(stored.get() + usize::from(matches!(a, Action::Store { .. })));
        stored.get() == 10
    });
    swarm.holders.remove(&peer(1));
    let mut actions = rest;
    actions.extend(dl.handle(Input::Lost(Conn::first(peer(1))), 4));
    swarm.pump(&mut dl, actions, 5);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.served_by(ORIGIN).len() >= 32 - 10 - PIPELINE);
}

#[test]
fn a_lying_holder_is_dropped_and_the_origin_fills_in() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = origin_swarm(&fx);
    let mut liar = Holder::full(&fx);
    liar.corrupt = Some(5);
    swarm.add(peer(1), liar);
    let seen = swarm.pump(&mut dl, actions, 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(dl.is_banned(&peer(1)));
    assert!(dropped_for(&seen, peer(1), |r| *r == DropReason::FailedVerification(5)));
    assert!(swarm.served_by(ORIGIN).contains(&5));
}

#[test]
fn a_tampered_origin_is_banned_and_peers_finish() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = Swarm::new(&fx);
    let mut origin = Holder::full(&fx);
    origin.corrupt = Some(0);
    swarm.add(ORIGIN, origin);
    swarm.add(peer(1), Holder::full(&fx));
    let seen = swarm.pump(&mut dl, actions, 3);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(dl.is_banned(&ORIGIN) && !dl.has_origin());
    assert!(dropped_for(&seen, ORIGIN, |r| *r == DropReason::FailedVerification(0)));
    // Not asked again in this download.
    assert!(dl.add_origin(4).is_empty());
}

#[test]
fn chunks_late_at_a_holder_are_asked_of_the_origin() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let actions = with_one_peer(&mut dl);
    let mut swarm = origin_swarm(&fx);
    swarm.add(peer(1), Holder::full(&fx));
    // The holder says what it has, then sends nothing more.
    let (_, rest) = swarm.pump_until(
        &mut dl,
        actions,
        3,
        |a| matches!(a, Action::Send(c, Request::Has { .. }) if c.holder == peer(1)),
    );
    swarm.holders.remove(&peer(1));
    swarm.pump(&mut dl, rest, 3);
    let asked_late = swarm.served_by(ORIGIN).len();
    // Late: the origin takes the holder's chunks over, and, once the
    // holder stalls out, everything else.
    let mut t = 3;
    while swarm.data().is_none() && t < 60_000 {
        t += 500;
        let actions = dl.handle(Input::Tick, t);
        swarm.pump(&mut dl, actions, t);
    }
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.served_by(ORIGIN).len() > asked_late);
    assert!(
        t <= ENDGAME_LATE_MS + STALL_TIMEOUT_MS + 1_000,
        "done at {t} ms"
    );
}

#[test]
fn peers_not_known_yet_hold_the_origin_back_for_a_while_only() {
    let fx = site_file();
    let (mut dl, _) = started(&fx);
    let mut swarm = origin_swarm(&fx);
    let mut actions = dl.add_origin(0);
    // A holder is counted, introduced, and never connects.
    actions.extend(dl.handle(Input::Holders(2), 1));
    assert_eq!(
        dl.handle(Input::Introduced(peer(1)), 1),
        vec![Action::Connect(Conn::first(peer(1)))]
    );
    swarm.pump(&mut dl, actions, 2);
    // However fast the origin, it gave only the first few chunks.
    assert_eq!(swarm.served_by(ORIGIN).len(), ORIGIN_EARLY_CHUNKS);
    assert_eq!(dl.next_deadline(), Some(ORIGIN_WAIT_MS));
    // Then it is not waited for.
    let actions = dl.handle(Input::Tick, ORIGIN_WAIT_MS);
    swarm.pump(&mut dl, actions, ORIGIN_WAIT_MS);
    assert_eq!(swarm.data(), Some(fx.data.clone()));
    assert!(swarm.holders[&ORIGIN].requests.iter().any(|&n| n > 1));
}

#[test]
fn visitors_arriving_together_ask_the_origin_for_different_runs() {
    // 256 chunks of 64 KiB: four runs of 4 MiB.
    let fx = Fixture::new(16 << 20, 64 * 1024);
    let first_runs: Vec<u32> = (0..4u32)
        .map(|seed| {
            let (mut dl, _) =
                Download::with_manifest(fx.address(), fx.manifest.to_bytes(), 0, seed * 64)
                    .unwrap();
            dl.set_sequential(true);
            let mut swarm = origin_swarm(&fx);
            // Another visitor, connected, that has nothing yet.
            swarm.add(peer(1), Holder::with(&fx, std::iter::empty()));
            let mut actions = dl.add_origin(0);
            actions.extend(dl.handle(Input::Holders(2), 1));
            actions.extend(join(&mut dl, peer(1), 1));
            let found = std::cell::Cell::new(u32::MAX);
            swarm.pump_until(&mut dl, actions, 2, |a| match a {
                Action::Send(c, Request::Chunks { indices, .. })
                    if c.holder == ORIGIN && indices.len() > 1 =>
                {
                    found.set(indices[0]);
                    true
                }
                _ => false,
            });
            found.get()
        })
        .collect();
    let mut distinct = first_runs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{first_runs:?}");
    assert!(!first_runs.contains(&u32::MAX), "{first_runs:?}");
}
