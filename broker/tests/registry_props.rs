//! Property tests for `LocalRegistry`: arbitrary sequences of operations
//! from a small pool of peers over a few addresses, with repeats, operations
//! from peers that are not connected, and peers whose queue is too small
//! (killed) or already closed.
//!
//! The registry under test is the real one with real bounded queues. A
//! shadow of who is connected and who holds and wants what is kept beside
//! it, only to check what the registry delivers after each operation:
//! holder counts, introductions, ready offers, relayed messages. Once every
//! peer has left, nothing may be left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use broker::metrics::Metrics;
use broker::registry::{
    encode, Inbox, LocalRegistry, Mailbox, Outbound, Registry, RegistryError, Text,
};
use proptest::prelude::*;
use protocol::signaling::MAX_INTRODUCTIONS;
use protocol::{ContentId, PeerId, ServerMsg};
use serde_json::value::RawValue;
use tokio::runtime::Runtime;
use uuid::Uuid;

const PEERS: usize = 5;
/// The client address group of every peer here.
fn home() -> broker::admission::AddressGroup {
    broker::admission::AddressGroup::of(std::net::Ipv4Addr::LOCALHOST.into())
}
const CONTENTS: usize = 3;
/// Larger than anything one operation sends to one peer.
const ROOMY: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Queue {
    /// Drained after every operation; never overflows.
    Roomy,
    /// Room for one message: an operation that sends two (a count and an
    /// introduction) overflows it, and the registry must kill the peer.
    Tiny,
    /// The receiving end is gone, as when a session's writer has ended.
    Closed,
}

#[derive(Clone, Debug)]
enum Op {
    Connect(usize, Queue),
    Disconnect(usize),
    Hold(usize, usize),
    Release(usize, usize),
    /// Peer, content, holders asked for (0 is clamped to 1).
    Want(usize, usize, u8),
    Unwant(usize, usize),
    Ready(usize),
    /// A relayed signal to this peer.
    Publish(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let peer = || 0..PEERS;
    let content = || 0..CONTENTS;
    let queue = prop_oneof![
        6 => Just(Queue::Roomy),
        2 => Just(Queue::Tiny),
        1 => Just(Queue::Closed),
    ];
    prop_oneof![
        3 => (peer(), queue).prop_map(|(p, q)| Op::Connect(p, q)),
        1 => peer().prop_map(Op::Disconnect),
        4 => (peer(), content()).prop_map(|(p, c)| Op::Hold(p, c)),
        2 => (peer(), content()).prop_map(|(p, c)| Op::Release(p, c)),
        4 => (peer(), content(), 0..=4u8).prop_map(|(p, c, n)| Op::Want(p, c, n)),
        1 => (peer(), content()).prop_map(|(p, c)| Op::Unwant(p, c)),
        2 => peer().prop_map(Op::Ready),
        1 => peer().prop_map(Op::Publish),
    ]
}

fn peer_id(p: usize) -> PeerId {
    PeerId(Uuid::from_u128(p as u128 + 1))
}

fn content_id(c: usize) -> ContentId {
    ContentId::of_manifest_bytes(&[c as u8])
}

fn peer_index(id: PeerId) -> Option<usize> {
    (0..PEERS).find(|&p| peer_id(p) == id)
}

fn content_index(id: ContentId) -> Option<usize> {
    (0..CONTENTS).find(|&c| content_id(c) == id)
}

fn mailbox(capacity: usize) -> (Mailbox, Inbox) {
    Mailbox::new(capacity)
}

struct Conn {
    /// `None` for a closed queue.
    rx: Option<Inbox>,
    queue: Queue,
}

/// What a peer has registered, as far as the test knows.
#[derive(Default)]
struct Shadow {
    conn: Option<Conn>,
    holds: BTreeSet<usize>,
    /// Content -> introductions still owed to this wanter.
    wants: BTreeMap<usize, u8>,
    /// The last ready offer, unless it was seen handed out.
    ready: Option<String>,
}

/// What one operation must deliver. Only a killed peer may miss some.
#[derive(Default)]
struct Expected {
    /// (recipient, content) pairs that get a holder count.
    counts: BTreeSet<(usize, usize)>,
    /// Wanter -> how many introductions it gets.
    intros: BTreeMap<usize, usize>,
    /// Recipient and text of a relayed message.
    published: Option<(usize, Text)>,
}

struct Harness {
    rt: Runtime,
    reg: LocalRegistry,
    metrics: Arc<Metrics>,
    peers: Vec<Shadow>,
    max_holdings: usize,
    max_wants: usize,
    /// Makes every ready offer and relayed payload unique.
    serial: u64,
}

impl Harness {
    fn new(max_holdings: usize, max_wants: usize) -> Self {
        let metrics = Arc::new(Metrics::default());
        Harness {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            reg: LocalRegistry::with_limits(metrics.clone(), max_holdings, max_wants),
            metrics,
            peers: (0..PEERS).map(|_| Shadow::default()).collect(),
            max_holdings,
            max_wants,
            serial: 0,
        }
    }

    fn holders(&self, c: usize) -> BTreeSet<usize> {
        (0..PEERS)
            .filter(|&p| self.peers[p].holds.contains(&c))
            .collect()
    }

    /// Holders and wanters of `c`: who hears when its count changes.
    fn interested(&self, c: usize) -> impl Iterator<Item = usize> + '_ {
        (0..PEERS).filter(move |&p| {
            self.peers[p].holds.contains(&c) || self.peers[p].wants.contains_key(&c)
        })
    }

    fn connected(&self, p: usize) -> bool {
        self.peers[p].conn.is_some()
    }

    /// Applies `op` to the registry and the shadow, then checks what was
    /// delivered and the registry's bookkeeping. A peer the registry killed
    /// is then disconnected, as its session would.
    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let expected = self.apply(op)?;
        let mut killed = self.check_deliveries(op, expected)?;
        self.check_state(op)?;
        // Disconnecting one may overflow, and so kill, another.
        while let Some(p) = killed.pop() {
            let op = Op::Disconnect(p);
            let expected = self.apply(&op)?;
            killed.extend(self.check_deliveries(&op, expected)?);
            self.check_state(&op)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Expected, TestCaseError> {
        let mut expected = Expected::default();
        match *op {
            Op::Connect(p, queue) => {
                let (mailbox, rx) = mailbox(if queue == Queue::Tiny { 1 } else { ROOMY });
                self.rt
                    .block_on(self.reg.connect(peer_id(p), mailbox, home()));
                let rx = (queue != Queue::Closed).then_some(rx);
                self.peers[p].conn = Some(Conn { rx, queue });
            }
            Op::Disconnect(p) => {
                self.rt.block_on(self.reg.disconnect(peer_id(p)));
                let gone = std::mem::take(&mut self.peers[p]);
                for c in gone.holds {
                    expected.counts.extend(self.interested(c).map(|r| (r, c)));
                }
            }
            Op::Hold(p, c) => {
                let result = self.rt.block_on(self.reg.hold(peer_id(p), content_id(c)));
                let peer = &self.peers[p];
                if !self.connected(p) || peer.holds.contains(&c) {
                    prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                } else if peer.holds.len() >= self.max_holdings {
                    prop_assert!(
                        matches!(result, Err(RegistryError::Limit(_))),
                        "{op:?} past the holdings limit: {result:?}"
                    );
                } else {
                    prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                    // Holding replaces wanting.
                    self.peers[p].holds.insert(c);
                    self.peers[p].wants.remove(&c);
                    // Every wanter still owed an introduction meets the new holder.
                    for (w, peer) in self.peers.iter_mut().enumerate() {
                        if let Some(owed) = peer.wants.get_mut(&c).filter(|n| **n > 0) {
                            *owed -= 1;
                            expected.intros.insert(w, 1);
                        }
                    }
                    expected.counts.extend(self.interested(c).map(|r| (r, c)));
                }
            }
            Op::Release(p, c) => {
                self.rt
                    .block_on(self.reg.release(peer_id(p), content_id(c)));
                if self.peers[p].holds.remove(&c) {
                    expected.counts.extend(self.interested(c).map(|r| (r, c)));
                }
            }
            Op::Want(p, c, n) => {
                let result = self
                    .rt
                    .block_on(self.reg.want(peer_id(p), content_id(c), n));
                let peer = &self.peers[p];
                if !self.connected(p) {
                    prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                } else if !peer.wants.contains_key(&c) && peer.wants.len() >= self.max_wants {
                    prop_assert!(
                        matches!(result, Err(RegistryError::Limit(_))),
                        "{op:?} past the wants limit: {result:?}"
                    );
                } else {
                    prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                    let n = n.clamp(1, MAX_INTRODUCTIONS);
                    let mut others = self.holders(c);
                    others.remove(&p);
                    let now = (n as usize).min(others.len());
                    self.peers[p].wants.insert(c, n - now as u8);
                    expected.intros.insert(p, now);
                    expected.counts.insert((p, c));
                }
            }
            Op::Unwant(p, c) => {
                self.rt.block_on(self.reg.unwant(peer_id(p), content_id(c)));
                self.peers[p].wants.remove(&c);
            }
            Op::Ready(p) => {
                self.serial += 1;
                let offer = format!(r#"{{"kind":"ready","sdp":"offer {}"}}"#, self.serial);
                let raw = RawValue::from_string(offer.clone()).expect("valid JSON");
                self.rt.block_on(self.reg.ready(peer_id(p), raw));
                if self.connected(p) {
                    self.peers[p].ready = Some(offer);
                }
            }
            Op::Publish(p) => {
                self.serial += 1;
                let data = RawValue::from_string(format!(r#"{{"n":{}}}"#, self.serial))
                    .expect("valid JSON");
                let text = encode(&ServerMsg::Signal {
                    from: peer_id((p + 1) % PEERS),
                    data,
                });
                let result = self.rt.block_on(self.reg.publish(
                    peer_id((p + 1) % PEERS),
                    peer_id(p),
                    text.clone(),
                ));
                match &self.peers[p].conn {
                    Some(conn) if conn.queue != Queue::Closed => {
                        prop_assert!(result.is_ok(), "{op:?}: {result:?}");
                        expected.published = Some((p, text));
                    }
                    _ => prop_assert!(
                        matches!(result, Err(RegistryError::UnknownPeer(id)) if id == peer_id(p)),
                        "{op:?} to a peer that cannot receive: {result:?}"
                    ),
                }
            }
        }
        Ok(expected)
    }

    /// Drains every queue and checks each message against the shadow as it
    /// is after `op`. Returns the peers the registry killed.
    fn check_deliveries(
        &mut self,
        op: &Op,
        mut expected: Expected,
    ) -> Result<Vec<usize>, TestCaseError> {
        let mut inbox: Vec<(usize, ServerMsg, Text)> = Vec::new();
        let mut killed = Vec::new();
        for (r, peer) in self.peers.iter_mut().enumerate() {
            let Some(conn) = &mut peer.conn else { continue };
            if let Some(rx) = &mut conn.rx {
                while let Some(out) = rx.try_recv() {
                    let Outbound::Text(text) = out else {
                        return Err(TestCaseError::fail(format!(
                            "{op:?}: the registry only sends text, peer {r} got {out:?}"
                        )));
                    };
                    let msg = serde_json::from_str::<ServerMsg>(&text).map_err(|e| {
                        TestCaseError::fail(format!("{op:?}: undecodable {text}: {e}"))
                    })?;
                    inbox.push((r, msg, text));
                }
            }
            if conn.rx.as_ref().is_some_and(|rx| rx.killed()) {
                prop_assert_eq!(
                    conn.queue,
                    Queue::Tiny,
                    "{:?}: peer {} was killed though its queue never fills",
                    op,
                    r
                );
                killed.push(r);
            }
        }

        let mut introduced: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        let mut offers_taken: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut taken_notices: Vec<(usize, usize)> = Vec::new();
        for (r, msg, text) in inbox {
            match msg {
                ServerMsg::Holders { content, count } => {
                    let c = content_index(content).expect("a pool address");
                    prop_assert!(
                        expected.counts.remove(&(r, c)),
                        "{:?}: peer {} got an unexpected or repeated count for content {}",
                        op,
                        r,
                        c
                    );
                    prop_assert_eq!(
                        count as usize,
                        self.holders(c).len(),
                        "{:?}: peer {} was told the wrong holder count of content {}",
                        op,
                        r,
                        c
                    );
                }
                ServerMsg::Introduce {
                    content,
                    holder,
                    offer,
                } => {
                    let c = content_index(content).expect("a pool address");
                    let h = peer_index(holder);
                    prop_assert!(h != Some(r), "{op:?}: peer {r} was introduced to itself");
                    let h = h.expect("a pool peer");
                    prop_assert!(
                        self.connected(h) && self.peers[h].holds.contains(&c),
                        "{op:?}: peer {r} was introduced to {h}, which does not hold content {c}"
                    );
                    prop_assert!(
                        self.peers[r].wants.contains_key(&c),
                        "{op:?}: peer {r} was introduced for content {c} it does not want"
                    );
                    prop_assert!(
                        introduced.entry(r).or_default().insert(h),
                        "{op:?}: peer {r} was introduced to {h} twice at once"
                    );
                    if let Some(offer) = offer {
                        // Handed out at most once, and only the holder's latest.
                        let ready = self.peers[h].ready.take();
                        prop_assert_eq!(
                            ready.as_deref(),
                            Some(offer.get()),
                            "{:?}: peer {} got an offer that is not {}'s current ready offer",
                            op,
                            r,
                            h
                        );
                        offers_taken.insert((h, r));
                    }
                }
                ServerMsg::OfferTaken { by } => {
                    let w = peer_index(by).expect("a pool peer");
                    prop_assert!(w != r, "{op:?}: peer {r} took its own offer");
                    taken_notices.push((r, w));
                }
                ServerMsg::Signal { .. } => {
                    prop_assert_eq!(
                        expected.published.take(),
                        Some((r, text)),
                        "{:?}: unexpected relay",
                        op
                    );
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "{op:?}: the registry never sends {other:?}"
                    )))
                }
            }
        }

        // Anything missing went to a peer the registry had to kill, or to a
        // queue that is closed.
        let deaf = |r: &usize| {
            killed.contains(r)
                || self.peers[*r]
                    .conn
                    .as_ref()
                    .is_none_or(|c| c.queue == Queue::Closed)
        };
        // The holder hears who took its offer; only a wanter that could not
        // receive the introduction may leave the test unaware of it.
        for (h, w) in &taken_notices {
            let unseen = self.peers[*w]
                .conn
                .as_ref()
                .is_none_or(|c| c.queue != Queue::Roomy);
            prop_assert!(
                offers_taken.contains(&(*h, *w)) || unseen,
                "{op:?}: peer {h} was told {w} took its offer, but {w} got no such introduction"
            );
        }
        for (h, w) in &offers_taken {
            prop_assert!(
                taken_notices.contains(&(*h, *w)) || deaf(h),
                "{op:?}: peer {h} was not told that {w} took its ready offer"
            );
        }

        for (r, c) in &expected.counts {
            prop_assert!(
                deaf(r),
                "{op:?}: peer {r} was not told the holder count of content {c}"
            );
        }
        for (w, n) in &expected.intros {
            let got = introduced.get(w).map_or(0, BTreeSet::len);
            prop_assert!(
                got == *n || (got < *n && deaf(w)),
                "{op:?}: peer {w} got {got} introductions, expected {n}"
            );
        }
        if let Some((r, _)) = &expected.published {
            prop_assert!(deaf(r), "{op:?}: peer {r} did not get the relayed message");
        }
        Ok(killed)
    }

    /// The registry's own bookkeeping agrees with the shadow.
    fn check_state(&self, op: &Op) -> Result<(), TestCaseError> {
        let mut held = 0;
        for c in 0..CONTENTS {
            let holders = self.holders(c).len();
            held += usize::from(holders > 0);
            prop_assert_eq!(
                self.reg.holder_count(&content_id(c)),
                holders,
                "{:?}: holder count of content {}",
                op,
                c
            );
        }
        prop_assert_eq!(
            self.metrics.addresses.load(Relaxed),
            held as u64,
            "{:?}: the addresses gauge",
            op
        );
        let anyone = (0..PEERS).any(|p| self.connected(p));
        prop_assert_eq!(
            self.reg.is_empty(),
            !anyone,
            "{:?}: the registry must hold state exactly while someone is connected",
            op
        );
        Ok(())
    }
}

fn run(ops: &[Op], max_holdings: usize, max_wants: usize) -> Result<(), TestCaseError> {
    let mut h = Harness::new(max_holdings, max_wants);
    for op in ops {
        h.step(op)?;
    }
    for p in 0..PEERS {
        h.step(&Op::Disconnect(p))?;
    }
    prop_assert!(h.reg.is_empty(), "state left behind after everyone left");
    prop_assert_eq!(h.metrics.addresses.load(Relaxed), 0, "addresses gauge");
    Ok(())
}

/// Found by the property below: a want (or hold) from a peer with no
/// connection registered it, leaving a wanter (or a holder, introduced to
/// others) that no disconnect would ever remove.
#[test]
fn a_peer_that_is_not_connected_registers_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let reg = LocalRegistry::new(Arc::new(Metrics::default()));
    let (stranger, x) = (peer_id(0), content_id(0));
    rt.block_on(async {
        reg.want(stranger, x, 1).await.expect("nothing to refuse");
        reg.hold(stranger, x).await.expect("nothing to refuse");
    });
    assert!(
        reg.is_empty(),
        "a peer with no connection left state behind"
    );
    assert_eq!(reg.holder_count(&x), 0, "a holder nobody can reach");
}

/// Found by the property below: a peer that held and wanted the same
/// content heard each change of its holder count twice.
#[test]
fn a_holder_that_also_wants_hears_each_count_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let reg = LocalRegistry::new(Arc::new(Metrics::default()));
    let (a, b, x) = (peer_id(0), peer_id(1), content_id(0));
    let (mailbox_a, rx) = mailbox(ROOMY);
    let (mailbox_b, _rx_b) = mailbox(ROOMY);
    rt.block_on(async {
        reg.connect(a, mailbox_a, home()).await;
        reg.connect(b, mailbox_b, home()).await;
        reg.hold(a, x).await.unwrap();
        reg.want(a, x, 1).await.unwrap();
        while rx.try_recv().is_some() {}
        reg.hold(b, x).await.unwrap();
    });
    let mut counts = 0;
    while let Some(Outbound::Text(text)) = rx.try_recv() {
        counts += usize::from(text.contains("\"holders\""));
    }
    assert_eq!(counts, 1, "one change of the count, one message");
}

proptest! {
    // Each case is a few hundred microseconds; this runs in about a second.
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn registry_keeps_its_invariants_and_forgets_everyone_who_leaves(
        ops in prop::collection::vec(op(), 1..80),
        // Tight limits make refusals common; the defaults make them rare.
        (max_holdings, max_wants) in prop_oneof![Just((2, 2)), Just((1024, 256))],
    ) {
        run(&ops, max_holdings, max_wants)?;
    }
}
