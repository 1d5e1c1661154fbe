//! The in-process registry: one broker node.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};

use protocol::{ContentId, PeerId, ServerMsg};
use serde_json::value::RawValue;

use super::{encode, Mailbox, Outbound, Refused, Registry, RegistryError, Sent, Text};
use crate::admission::AddressGroup;
use crate::metrics::Metrics;

/// Default per-peer limits; see [`LocalRegistry::with_limits`].
const MAX_HOLDINGS: usize = 1024;
const MAX_WANTS: usize = 256;
/// Default holdings and wants of all the peers of one client address
/// group together; see [`LocalRegistry::with_address_budget`]. Each costs
/// the index about 325 bytes.
pub const MAX_REGISTRATIONS_PER_ADDRESS: usize = 4096;

/// In-process registry.
///
/// Topics sit behind an `RwLock` because relaying (a read) is by far the
/// most frequent operation. The content index has its own `Mutex`: its
/// operations are short, never await, and must see holders and wanters of
/// an address change together. Lock order is always index, then topics.
pub struct LocalRegistry {
    topics: RwLock<HashMap<PeerId, Topic>>,
    index: Mutex<Index>,
    metrics: Arc<Metrics>,
    max_holdings: usize,
    max_wants: usize,
    per_address: usize,
}

/// A connected peer: where its messages go and whose budget it spends.
struct Topic {
    mailbox: Mailbox,
    group: AddressGroup,
}

#[derive(Default)]
struct Index {
    by_content: HashMap<ContentId, Entry>,
    by_peer: HashMap<PeerId, PeerContent>,
    /// Increments on every introduction; holders remember when they were
    /// last introduced so the least recently introduced goes next.
    clock: u64,
    /// Addresses with at least one holder, kept up to date so the gauge
    /// costs nothing to read.
    held_addresses: u64,
    /// Each holder's ready offer, handed to the next wanter it meets.
    ready: HashMap<PeerId, Box<RawValue>>,
    /// Holdings and wants per client address group, for its budget.
    by_group: HashMap<AddressGroup, usize>,
    /// Offerer -> peers that may answer one of its offers, oldest first
    /// (a peer twice for two offers). Kept per offerer so that its offers
    /// crowd out only its own: junk offers from a third peer cannot push a
    /// real one out of the answerer's reach.
    offers: HashMap<PeerId, VecDeque<PeerId>>,
}

/// Unanswered offers remembered per offerer; its oldest is forgotten.
const MAX_OPEN_OFFERS: usize = 32;
/// Unanswered offers from one offerer to one answerer: one per lane (see
/// `protocol::download::Conn`) and one renegotiated each.
const MAX_OPEN_OFFERS_PER_PAIR: usize = 4;

impl Index {
    /// Lets `answerer` answer one more offer from `offerer`, or says how
    /// many it has not answered yet.
    fn offer(&mut self, offerer: PeerId, answerer: PeerId) -> Result<(), usize> {
        let open = self.offers.entry(offerer).or_default();
        let pending = open.iter().filter(|p| **p == answerer).count();
        if pending >= MAX_OPEN_OFFERS_PER_PAIR {
            return Err(pending);
        }
        if open.len() == MAX_OPEN_OFFERS {
            open.pop_front();
        }
        open.push_back(answerer);
        Ok(())
    }
}

#[derive(Default)]
struct Entry {
    /// Holder -> clock value of its last introduction (0 = never).
    holders: HashMap<PeerId, u64>,
    /// Wanter -> introductions it still waits for.
    wanters: HashMap<PeerId, u8>,
}

struct PeerContent {
    /// The address group whose budget these registrations spend.
    group: AddressGroup,
    holds: Vec<ContentId>,
    wants: Vec<ContentId>,
}

impl PeerContent {
    fn new(group: AddressGroup) -> Self {
        PeerContent {
            group,
            holds: Vec::new(),
            wants: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.holds.is_empty() && self.wants.is_empty()
    }
}

/// Messages decided under the index lock. Delivery never blocks (a full
/// queue kills the slow peer instead), so it happens before unlocking.
type Deliveries = Vec<(PeerId, Delivery)>;

/// One message the registry decided for a peer.
enum Delivery {
    /// Part of the peer's own traffic (an introduction, `offer_taken`).
    Own(Text),
    /// The holder count of an address: a newer one replaces it if queued.
    Count(ContentId, Text),
}

impl LocalRegistry {
    /// An empty registry with default limits.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_limits(metrics, MAX_HOLDINGS, MAX_WANTS)
    }

    /// An empty registry with explicit per-peer limits.
    pub fn with_limits(metrics: Arc<Metrics>, max_holdings: usize, max_wants: usize) -> Self {
        LocalRegistry {
            topics: RwLock::default(),
            index: Mutex::default(),
            metrics,
            max_holdings,
            max_wants,
            per_address: MAX_REGISTRATIONS_PER_ADDRESS,
        }
    }

    /// The same with at most `per_address` holdings and wants for all the
    /// peers of one client address group together.
    pub fn with_address_budget(mut self, per_address: usize) -> Self {
        self.per_address = per_address;
        self
    }

    /// The address group of connected `peer`, if it is connected.
    fn group_of(&self, peer: &PeerId) -> Option<AddressGroup> {
        self.topics
            .read()
            .expect("topics lock")
            .get(peer)
            .map(|t| t.group)
    }

    fn deliver_all(&self, deliveries: Deliveries) {
        let topics = self.topics.read().expect("topics lock");
        for (to, delivery) in deliveries {
            // A recipient that left meanwhile has nothing to learn.
            let Some(Topic { mailbox, .. }) = topics.get(&to) else {
                continue;
            };
            match delivery {
                Delivery::Own(text) => {
                    if let Ok(Sent::Overflowed) = mailbox.try_send(Outbound::Text(text)) {
                        // A peer that does not read its own traffic is
                        // dropped rather than buffered without bound; its
                        // session sees the kill and closes.
                        self.metrics.queue_drops.fetch_add(1, Relaxed);
                    }
                }
                Delivery::Count(content, text) => {
                    let _ = mailbox.count(content, text);
                }
            }
        }
    }

    /// Number of peers holding `content` (for tests and metrics).
    pub fn holder_count(&self, content: &ContentId) -> usize {
        let index = self.index.lock().expect("index lock");
        index.by_content.get(content).map_or(0, |e| e.holders.len())
    }

    /// Whether the registry holds no state at all (for tests).
    pub fn is_empty(&self) -> bool {
        let index = self.index.lock().expect("index lock");
        index.by_content.is_empty()
            && index.by_peer.is_empty()
            && index.ready.is_empty()
            && index.offers.is_empty()
            && index.by_group.is_empty()
            && self.topics.read().expect("topics lock").is_empty()
    }
}

impl Index {
    /// Introduces up to `n` holders (least recently introduced first) to
    /// `wanter`; returns how many were introduced.
    fn introduce(
        &mut self,
        content: ContentId,
        wanter: PeerId,
        n: u8,
        metrics: &Metrics,
        out: &mut Deliveries,
    ) -> u8 {
        let Some(entry) = self.by_content.get(&content) else {
            return 0;
        };
        let mut candidates: Vec<(u64, PeerId)> = entry
            .holders
            .iter()
            .filter(|(h, _)| **h != wanter)
            .map(|(h, t)| (*t, *h))
            .collect();
        candidates.sort_unstable();
        candidates.truncate(n as usize);
        for (_, holder) in &candidates {
            self.introduce_one(content, *holder, wanter, metrics, out);
        }
        candidates.len() as u8
    }

    /// Queues the introduction of `holder` to `wanter` and stamps the
    /// holder as the most recently introduced.
    fn introduce_one(
        &mut self,
        content: ContentId,
        holder: PeerId,
        wanter: PeerId,
        metrics: &Metrics,
        out: &mut Deliveries,
    ) {
        metrics.introductions.fetch_add(1, Relaxed);
        self.clock += 1;
        if let Some(entry) = self.by_content.get_mut(&content) {
            entry.holders.insert(holder, self.clock);
        }
        let offer = self.ready.remove(&holder);
        if offer.is_some() {
            metrics.ready_offers.fetch_add(1, Relaxed);
            // A wanter with as many unanswered offers from this holder
            // cannot answer this one; it asked for more than it answers.
            let _ = self.offer(holder, wanter);
            out.push((
                holder,
                Delivery::Own(encode(&ServerMsg::OfferTaken { by: wanter })),
            ));
        }
        out.push((
            wanter,
            Delivery::Own(encode(&ServerMsg::Introduce {
                content,
                holder,
                offer,
            })),
        ));
    }

    /// Queues the holder count of `content` for everyone holding or wanting it.
    fn announce_count(&self, content: ContentId, out: &mut Deliveries) {
        let Some(entry) = self.by_content.get(&content) else {
            return;
        };
        let text = encode(&ServerMsg::Holders {
            content,
            count: entry.holders.len() as u32,
        });
        // A holder may also want it; it hears once.
        let wanters = entry
            .wanters
            .keys()
            .filter(|w| !entry.holders.contains_key(w));
        for peer in entry.holders.keys().chain(wanters) {
            out.push((*peer, Delivery::Count(content, text.clone())));
        }
    }

    fn drop_entry_if_empty(&mut self, content: &ContentId) {
        if self
            .by_content
            .get(content)
            .is_some_and(|e| e.holders.is_empty() && e.wanters.is_empty())
        {
            self.by_content.remove(content);
        }
    }

    /// Spends one registration of `group`'s budget, unless it is spent.
    fn charge(&mut self, group: AddressGroup, budget: usize) -> Result<(), RegistryError> {
        let used = self.by_group.entry(group).or_default();
        if *used >= budget {
            let used = *used;
            if used == 0 {
                self.by_group.remove(&group);
            }
            return Err(RegistryError::Limit(format!(
                "the pages at your address ({group}) already hold and want {used} addresses together, \
                 the most one address may; release or close some first"
            )));
        }
        *used += 1;
        Ok(())
    }

    /// Gives back `n` registrations to `group`'s budget.
    fn refund(&mut self, group: AddressGroup, n: usize) {
        if let Some(used) = self.by_group.get_mut(&group) {
            *used = used.saturating_sub(n);
            if *used == 0 {
                self.by_group.remove(&group);
            }
        }
    }

    fn drop_peer_if_empty(&mut self, peer: &PeerId) {
        if self.by_peer.get(peer).is_some_and(PeerContent::is_empty) {
            self.by_peer.remove(peer);
        }
    }

    fn remove_holder(&mut self, peer: PeerId, content: ContentId, out: &mut Deliveries) {
        let Some(entry) = self.by_content.get_mut(&content) else {
            return;
        };
        if entry.holders.remove(&peer).is_some() {
            if entry.holders.is_empty() {
                self.held_addresses -= 1;
            }
            self.announce_count(content, out);
            self.drop_entry_if_empty(&content);
        }
    }

    fn remove_wanter(&mut self, peer: PeerId, content: ContentId) {
        if let Some(e) = self.by_content.get_mut(&content) {
            e.wanters.remove(&peer);
        }
        self.drop_entry_if_empty(&content);
    }
}

impl Registry for LocalRegistry {
    async fn connect(&self, peer: PeerId, mailbox: Mailbox, group: AddressGroup) {
        self.topics
            .write()
            .expect("topics lock")
            .insert(peer, Topic { mailbox, group });
    }

    async fn disconnect(&self, peer: PeerId) {
        let mut out = Deliveries::new();
        {
            let mut index = self.index.lock().expect("index lock");
            index.ready.remove(&peer);
            index.offers.remove(&peer);
            if let Some(pc) = index.by_peer.remove(&peer) {
                index.refund(pc.group, pc.holds.len() + pc.wants.len());
                for content in pc.holds {
                    index.remove_holder(peer, content, &mut out);
                }
                for content in pc.wants {
                    index.remove_wanter(peer, content);
                }
            }
            self.metrics.addresses.store(index.held_addresses, Relaxed);
            // Under the lock, as everywhere: counts arrive in order.
            self.deliver_all(out);
        }
        self.topics.write().expect("topics lock").remove(&peer);
    }

    async fn publish(&self, from: PeerId, to: PeerId, text: Text) -> Result<(), RegistryError> {
        let topics = self.topics.read().expect("topics lock");
        let topic = topics.get(&to).ok_or(RegistryError::UnknownPeer(to))?;
        match topic.mailbox.relay(from, text) {
            Ok(()) => Ok(()),
            Err(Refused::Gone) => Err(RegistryError::UnknownPeer(to)),
            Err(Refused::Busy {
                queued,
                from_sender,
            }) => {
                self.metrics.refused_relays.fetch_add(1, Relaxed);
                let whose = if from_sender {
                    "of yours"
                } else {
                    "from its peers"
                };
                Err(RegistryError::Busy(format!(
                    "peer {to} has not yet read {queued} signals {whose}; this one was dropped. \
                     Wait for its replies before sending more"
                )))
            }
        }
    }

    async fn hold(&self, peer: PeerId, content: ContentId) -> Result<(), RegistryError> {
        let mut out = Deliveries::new();
        {
            let mut index = self.index.lock().expect("index lock");
            // Only connected peers: a late message must not outlive cleanup.
            let Some(group) = self.group_of(&peer) else {
                return Ok(());
            };
            let pc = index
                .by_peer
                .entry(peer)
                .or_insert_with(|| PeerContent::new(group));
            if pc.holds.contains(&content) {
                return Ok(());
            }
            if pc.holds.len() >= self.max_holdings {
                let held = pc.holds.len();
                index.drop_peer_if_empty(&peer);
                return Err(RegistryError::Limit(format!(
                    "you already hold {held} addresses, the most one peer may hold; release some first"
                )));
            }
            // Holding replaces wanting, at no cost.
            let wanted = pc.wants.iter().position(|c| *c == content);
            if wanted.is_none() {
                if let Err(e) = index.charge(group, self.per_address) {
                    index.drop_peer_if_empty(&peer);
                    return Err(e);
                }
            }
            let pc = index.by_peer.get_mut(&peer).expect("just made");
            pc.holds.push(content);
            if let Some(i) = wanted {
                pc.wants.swap_remove(i);
            }
            let entry = index.by_content.entry(content).or_default();
            entry.wanters.remove(&peer);
            if entry.holders.is_empty() {
                index.held_addresses += 1;
            }
            let entry = index.by_content.get_mut(&content).expect("entry exists");
            entry.holders.insert(peer, 0);
            // Wanters still waiting get this holder now.
            let waiting: Vec<PeerId> = entry
                .wanters
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(w, _)| *w)
                .collect();
            for wanter in waiting {
                index.introduce_one(content, peer, wanter, &self.metrics, &mut out);
                let entry = index.by_content.get_mut(&content).expect("entry exists");
                if let Some(n) = entry.wanters.get_mut(&wanter) {
                    *n -= 1;
                }
            }
            index.announce_count(content, &mut out);
            self.metrics.addresses.store(index.held_addresses, Relaxed);
            // Delivered under the lock so that counts for one address
            // reach every peer in the order they changed.
            self.deliver_all(out);
        }
        Ok(())
    }

    async fn release(&self, peer: PeerId, content: ContentId) {
        let mut out = Deliveries::new();
        {
            let mut index = self.index.lock().expect("index lock");
            if let Some(pc) = index.by_peer.get_mut(&peer) {
                if let Some(i) = pc.holds.iter().position(|c| *c == content) {
                    pc.holds.swap_remove(i);
                    let group = pc.group;
                    index.refund(group, 1);
                }
            }
            index.drop_peer_if_empty(&peer);
            index.remove_holder(peer, content, &mut out);
            self.metrics.addresses.store(index.held_addresses, Relaxed);
            // Delivered under the lock so that counts for one address
            // reach every peer in the order they changed.
            self.deliver_all(out);
        }
    }

    async fn want(
        &self,
        peer: PeerId,
        content: ContentId,
        holders: u8,
    ) -> Result<(), RegistryError> {
        let holders = holders.clamp(1, protocol::signaling::MAX_INTRODUCTIONS);
        let mut out = Deliveries::new();
        {
            let mut index = self.index.lock().expect("index lock");
            // Only connected peers: a late message must not outlive cleanup.
            let Some(group) = self.group_of(&peer) else {
                return Ok(());
            };
            let pc = index
                .by_peer
                .entry(peer)
                .or_insert_with(|| PeerContent::new(group));
            if !pc.wants.contains(&content) {
                if pc.wants.len() >= self.max_wants {
                    let wanted = pc.wants.len();
                    index.drop_peer_if_empty(&peer);
                    return Err(RegistryError::Limit(format!(
                        "you already want {wanted} addresses, the most one peer may want; unwant some first"
                    )));
                }
                if let Err(e) = index.charge(group, self.per_address) {
                    index.drop_peer_if_empty(&peer);
                    return Err(e);
                }
                let pc = index.by_peer.get_mut(&peer).expect("just made");
                pc.wants.push(content);
            }
            let entry = index.by_content.entry(content).or_default();
            let count = entry.holders.len() as u32;
            let text = encode(&ServerMsg::Holders { content, count });
            out.push((peer, Delivery::Count(content, text)));
            let introduced = index.introduce(content, peer, holders, &self.metrics, &mut out);
            let entry = index.by_content.get_mut(&content).expect("entry exists");
            entry.wanters.insert(peer, holders - introduced);
            // Delivered under the lock so that counts for one address
            // reach every peer in the order they changed.
            self.deliver_all(out);
        }
        Ok(())
    }

    async fn unwant(&self, peer: PeerId, content: ContentId) {
        let mut index = self.index.lock().expect("index lock");
        if let Some(pc) = index.by_peer.get_mut(&peer) {
            if let Some(i) = pc.wants.iter().position(|c| *c == content) {
                pc.wants.swap_remove(i);
                let group = pc.group;
                index.refund(group, 1);
            }
        }
        index.drop_peer_if_empty(&peer);
        index.remove_wanter(peer, content);
    }

    async fn offered(&self, offerer: PeerId, answerer: PeerId) -> Result<(), RegistryError> {
        if !self
            .topics
            .read()
            .expect("topics lock")
            .contains_key(&answerer)
        {
            // Relaying it will say so.
            return Ok(());
        }
        let mut index = self.index.lock().expect("index lock");
        index.offer(offerer, answerer).map_err(|pending| {
            RegistryError::Limit(format!(
                "peer {answerer} has not answered your last {pending} offers; \
                 wait for its answers or a bye before offering again"
            ))
        })
    }

    async fn answering(&self, answerer: PeerId, offerer: PeerId) -> Result<bool, RegistryError> {
        if !self
            .topics
            .read()
            .expect("topics lock")
            .contains_key(&offerer)
        {
            return Err(RegistryError::UnknownPeer(offerer));
        }
        let mut index = self.index.lock().expect("index lock");
        let Some(open) = index.offers.get_mut(&offerer) else {
            return Ok(false);
        };
        let Some(at) = open.iter().position(|p| *p == answerer) else {
            return Ok(false);
        };
        open.remove(at);
        if open.is_empty() {
            index.offers.remove(&offerer);
        }
        Ok(true)
    }

    async fn ready(&self, peer: PeerId, offer: Box<RawValue>) {
        // Only connected peers: a late message must not outlive cleanup.
        if self.topics.read().expect("topics lock").contains_key(&peer) {
            let mut index = self.index.lock().expect("index lock");
            index.ready.insert(peer, offer);
        }
    }
}
