//! Arbitrary text frames from a few peers, decoded as the broker decodes
//! them and applied to a `LocalRegistry` as a session applies them, so the
//! handling paths run on hostile input too. Nothing may panic, everything
//! the registry queues must be a well-formed server message, and once every
//! peer has left no state may remain.
//!
//! Input: one event per line. `#` and a byte: that peer's connection ends
//! and it comes back under a new id. Any other line: its first byte picks
//! the sender (byte % PEERS; `0`, `1`, `2` are peers 0, 1, 2), the rest is
//! the frame. Peers start as ids ...0001 to ...0003, so a seed can signal
//! `00000000-0000-0000-0000-000000000002`.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use broker::metrics::Metrics;
use broker::registry::{encode, Inbox, LocalRegistry, Mailbox, Outbound, Registry};
use broker::sites::Sites;
use libfuzzer_sys::fuzz_target;
use protocol::signaling::{decode_client, signal_kind, SignalKind, MAX_READY_OFFER_BYTES};
use protocol::{ClientMsg, PeerId, ServerMsg};
use uuid::Uuid;

const PEERS: usize = 3;
/// The last peer's queue is this small, so bursts overflow it and the
/// registry's kill path runs.
const TINY: usize = 2;
/// Limits small enough for an input to reach.
const MAX_HOLDINGS: usize = 4;
const MAX_WANTS: usize = 4;
/// Below what the peers may hold and want together, so the shared
/// budget's refusals run too.
const MAX_REGISTRATIONS: usize = 10;

struct Peer {
    id: PeerId,
    rx: Inbox,
}

/// Polls once: the in-process registry never waits.
fn now<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("LocalRegistry never waits"),
    }
}

fn connect<R: Registry>(reg: &R, slot: usize, serial: &mut u128) -> Peer {
    *serial += 1;
    let id = PeerId(Uuid::from_u128(*serial));
    let capacity = if slot == PEERS - 1 { TINY } else { 64 };
    let (mailbox, rx) = Mailbox::new(capacity);
    let home = broker::admission::AddressGroup::of(std::net::Ipv4Addr::LOCALHOST.into());
    now(reg.connect(id, mailbox, home));
    Peer { id, rx }
}

/// What a session does with one decoded message.
fn handle<R: Registry>(reg: &R, sites: &Sites, metrics: &Metrics, from: PeerId, msg: ClientMsg) {
    metrics.message(&msg);
    let result = match msg {
        ClientMsg::Signal { to, data } => {
            if to == from {
                return;
            }
            let recorded = match signal_kind(data.get()) {
                Err(_) => return,
                Ok(SignalKind::Offer) => now(reg.offered(from, to)),
                Ok(SignalKind::Answer) => match now(reg.answering(from, to)) {
                    Ok(true) => Ok(()),
                    Ok(false) => return,
                    Err(e) => Err(e),
                },
                Ok(SignalKind::Other) => Ok(()),
            };
            recorded.and_then(|()| {
                now(reg.publish(from, to, encode(&ServerMsg::Signal { from, data })))
            })
        }
        ClientMsg::Hold { content } => now(reg.hold(from, content)),
        ClientMsg::Release { content } => {
            now(reg.release(from, content));
            Ok(())
        }
        ClientMsg::Want { content, holders } => now(reg.want(from, content, holders.unwrap_or(1))),
        ClientMsg::Unwant { content } => {
            now(reg.unwant(from, content));
            Ok(())
        }
        ClientMsg::Ready { data } => {
            if data.get().len() <= MAX_READY_OFFER_BYTES {
                now(reg.ready(from, data));
            }
            Ok(())
        }
        ClientMsg::Follow { site } => {
            if let Ok(Some(record)) = sites.follow(from, site) {
                let _ = encode(&ServerMsg::SiteRelease { record });
            }
            Ok(())
        }
        ClientMsg::Announce { record } => {
            if let Ok(followers) = sites.announce(&record, 0) {
                let text = encode(&ServerMsg::SiteRelease { record });
                for follower in followers {
                    let _ = now(reg.publish(from, follower, text.clone()));
                }
            }
            Ok(())
        }
    };
    if let Err(e) = result {
        // The error reply is built from these.
        let _ = (e.code(), e.to_string());
    }
}

/// Empties a peer's queue, checking each message.
fn drain(peer: &mut Peer) {
    while let Some(out) = peer.rx.try_recv() {
        let Outbound::Text(text) = out else {
            panic!("the registry only queues text, got {out:?}");
        };
        let msg: ServerMsg = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("queued an undecodable message {text}: {e}"));
        if let ServerMsg::Introduce { holder, .. } = msg {
            assert_ne!(holder, peer.id, "a peer was introduced to itself");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let metrics = Arc::new(Metrics::default());
    let sites = Sites::default();
    let reg = LocalRegistry::with_limits(metrics.clone(), MAX_HOLDINGS, MAX_WANTS)
        .with_address_budget(MAX_REGISTRATIONS);
    let mut serial = 0;
    let mut peers: Vec<Peer> = (0..PEERS)
        .map(|slot| connect(&reg, slot, &mut serial))
        .collect();

    for line in data.split(|b| *b == b'\n') {
        let Some((&first, rest)) = line.split_first() else {
            continue;
        };
        if first == b'#' {
            let slot = usize::from(rest.first().copied().unwrap_or(0)) % PEERS;
            now(reg.disconnect(peers[slot].id));
            peers[slot] = connect(&reg, slot, &mut serial);
        } else {
            let from = peers[usize::from(first) % PEERS].id;
            // Text frames are UTF-8 by the time the session sees them.
            match decode_client(&String::from_utf8_lossy(rest)) {
                Ok(msg) => handle(&reg, &sites, &metrics, from, msg),
                Err(e) => metrics.error(e.code),
            }
        }
        for (slot, peer) in peers.iter_mut().enumerate() {
            drain(peer);
            // As its session would: the killed peer leaves, and its browser
            // reconnects.
            if peer.rx.killed() {
                now(reg.disconnect(peer.id));
                *peer = connect(&reg, slot, &mut serial);
            }
        }
    }

    for peer in &peers {
        now(reg.disconnect(peer.id));
    }
    assert!(reg.is_empty(), "state left behind after every peer left");
    assert_eq!(metrics.addresses.load(Relaxed), 0, "addresses gauge");
});
