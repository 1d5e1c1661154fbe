//! A peer's bounded outbound queue, and the kill switch for a peer that
//! cannot keep up with its own traffic.
//!
//! What is queued for a peer comes in three kinds, each bounded so that
//! what others send costs them, never the recipient:
//! - its **own** traffic (replies, introductions, pings): bounded in
//!   messages and bytes; a peer that lets it pile up is not reading and is
//!   disconnected;
//! - signals **relayed** from other peers: each sender has a share of the
//!   queue (messages and bytes) and the relays together a pool of their
//!   own, with a reserve for senders that have only a few queued; past
//!   either the signal is refused to its sender, and the recipient loses
//!   nothing;
//! - holder **counts**: one per address at most, a newer count replacing
//!   the queued one, so toggling holdings cannot fan counts out without
//!   bound.
//!
//! Written for this job rather than taken from a channel crate because
//! every connected peer has one: it allocates nothing until something is
//! queued and gives its buffers back once drained after a burst, and the
//! kill rides on the same wake-up as the queue, so the session waits on
//! one thing instead of two.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use protocol::{ContentId, PeerId};

use super::{Outbound, Text};

/// Queue capacity kept after a burst has drained.
const KEEP: usize = 8;
/// A sender with fewer relayed signals queued than this is light: it may
/// use the reserve past the pool.
const LIGHT: usize = 4;

/// How much one mailbox may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Own messages queued; one more disconnects the peer. Relayed
    /// signals have a pool of the same size.
    pub messages: usize,
    /// Bytes of own messages queued; more disconnects the peer. Relayed
    /// signals have a pool of the same size.
    pub bytes: usize,
    /// Relayed signals queued from one sender; more are refused to it.
    /// Senders with only a few queued may go past the pool, into a reserve
    /// as big again.
    pub sender_messages: usize,
    /// Bytes of relayed signals queued from one sender.
    pub sender_bytes: usize,
}

impl Limits {
    /// `messages` as given, the rest in proportion to the defaults.
    pub fn with_capacity(messages: usize) -> Limits {
        Limits {
            messages,
            bytes: 1 << 20,
            sender_messages: (messages / 8).max(1),
            sender_bytes: 64 << 10,
        }
    }
}

/// The registry's and the session's handle: queues frames for the peer.
#[derive(Clone, Debug)]
pub struct Mailbox {
    shared: Arc<Shared>,
}

/// The session's end: the frames to write, or the news that the peer must go.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    limits: Limits,
    waker: AtomicWaker,
    killed: AtomicBool,
    inbox_gone: AtomicBool,
}

/// What waits to be written, in order, with its accounting.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    own: Usage,
    /// Made with the first relayed signal or count, gone once drained:
    /// most idle peers have none.
    others: Option<Box<Others>>,
}

/// The accounting of relayed signals and counts.
#[derive(Debug, Default)]
struct Others {
    relayed: Usage,
    /// Relayed signals queued per sender; a handful of senders at a time,
    /// so a list beats a map.
    senders: Vec<(PeerId, Usage)>,
    /// The newest count of each address with a [`Item::Count`] queued.
    counts: HashMap<ContentId, Text>,
}

#[derive(Debug)]
enum Item {
    Own(Outbound),
    Relayed(PeerId, Text),
    Count(ContentId),
}

#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    messages: usize,
    bytes: usize,
}

impl Usage {
    fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes;
    }

    fn sub(&mut self, bytes: usize) {
        self.messages -= 1;
        self.bytes -= bytes;
    }

    fn has_room(&self, messages: usize, bytes: usize, more: usize) -> bool {
        self.messages < messages && self.bytes + more <= bytes
    }
}

fn len(out: &Outbound) -> usize {
    match out {
        Outbound::Text(text) => text.len(),
        Outbound::Ping => 0,
    }
}

/// What happened to a frame offered to a [`Mailbox`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the writer.
    Queued,
    /// The peer's own traffic overflowed: the frame is dropped and the
    /// peer killed, since a peer that does not read is disconnected, not
    /// buffered for.
    Overflowed,
}

/// The peer's session has ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Gone;

/// Why a relayed signal was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The recipient's session has ended.
    Gone,
    /// The recipient has not yet read this many of the sender's signals
    /// (or of everyone's, when `from_sender` is false).
    Busy {
        /// Signals queued that the recipient has not read yet.
        queued: usize,
        /// Whether it is this sender's share that is used up, or the pool
        /// all senders share.
        from_sender: bool,
    },
}

/// What [`Inbox::recv`] yields.
#[derive(Debug)]
pub enum Next {
    /// A frame to write.
    Frame(Outbound),
    /// The peer overflowed its queue and must go.
    Killed,
}

impl Mailbox {
    /// A mailbox holding at most `capacity` own messages (and as many
    /// relayed), other limits at their defaults, and its writer's end.
    pub fn new(capacity: usize) -> (Mailbox, Inbox) {
        Mailbox::with_limits(Limits::with_capacity(capacity))
    }

    /// A mailbox with explicit limits, and its writer's end.
    pub fn with_limits(limits: Limits) -> (Mailbox, Inbox) {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            limits,
            waker: AtomicWaker::new(),
            killed: AtomicBool::new(false),
            inbox_gone: AtomicBool::new(false),
        });
        (
            Mailbox {
                shared: shared.clone(),
            },
            Inbox { shared },
        )
    }

    /// Queues the peer's own `out` unless its own traffic is at its limit,
    /// in which case the peer is killed instead.
    pub fn try_send(&self, out: Outbound) -> Result<Sent, Gone> {
        let shared = self.live().ok_or(Gone)?;
        let limits = &shared.limits;
        let sent = {
            let mut queue = shared.lock();
            let bytes = len(&out);
            if queue.own.has_room(limits.messages, limits.bytes, bytes) {
                queue.own.add(bytes);
                queue.items.push_back(Item::Own(out));
                Sent::Queued
            } else {
                shared.killed.store(true, Ordering::Release);
                Sent::Overflowed
            }
        };
        shared.waker.wake();
        Ok(sent)
    }

    /// Queues a signal relayed from `from`, within `from`'s share and the
    /// pool of relayed signals; otherwise refuses it, and the recipient
    /// stays.
    pub fn relay(&self, from: PeerId, text: Text) -> Result<(), Refused> {
        let shared = self.live().ok_or(Refused::Gone)?;
        let limits = &shared.limits;
        {
            let mut queue = shared.lock();
            let bytes = text.len();
            let others = queue.others.get_or_insert_with(Box::default);
            let at = others.senders.iter().position(|(p, _)| *p == from);
            let share = at.map_or_else(Usage::default, |at| others.senders[at].1);
            if !share.has_room(limits.sender_messages, limits.sender_bytes, bytes) {
                return Err(Refused::Busy {
                    queued: share.messages,
                    from_sender: true,
                });
            }
            // Senders with a few signals queued may go past the pool into
            // a reserve as big: heavy senders filling the pool cannot
            // shut out a light one, such as an honest peer's handshake.
            let reserve = if share.messages < LIGHT { 2 } else { 1 };
            if !others
                .relayed
                .has_room(limits.messages * reserve, limits.bytes * reserve, bytes)
            {
                return Err(Refused::Busy {
                    queued: others.relayed.messages,
                    from_sender: false,
                });
            }
            match at {
                Some(at) => others.senders[at].1.add(bytes),
                None => {
                    let mut share = Usage::default();
                    share.add(bytes);
                    others.senders.push((from, share));
                }
            }
            others.relayed.add(bytes);
            queue.items.push_back(Item::Relayed(from, text));
        }
        shared.waker.wake();
        Ok(())
    }

    /// Queues `text`, the holder count of `content`, replacing a count of
    /// it still queued.
    pub fn count(&self, content: ContentId, text: Text) -> Result<(), Gone> {
        let shared = self.live().ok_or(Gone)?;
        {
            let mut queue = shared.lock();
            let others = queue.others.get_or_insert_with(Box::default);
            if others.counts.insert(content, text).is_none() {
                queue.items.push_back(Item::Count(content));
            }
        }
        shared.waker.wake();
        Ok(())
    }

    fn live(&self) -> Option<&Shared> {
        let shared = &*self.shared;
        (!shared.inbox_gone.load(Ordering::Acquire)).then_some(shared)
    }
}

impl Inbox {
    /// The next frame to write, or [`Next::Killed`] once the peer must go
    /// (then always).
    pub async fn recv(&self) -> Next {
        poll_fn(|cx| {
            if let Some(next) = self.next() {
                return Poll::Ready(next);
            }
            // Register, then look again: a frame queued in between has
            // woken the new waker or is seen now.
            self.shared.waker.register(cx.waker());
            match self.next() {
                Some(next) => Poll::Ready(next),
                None => Poll::Pending,
            }
        })
        .await
    }

    fn next(&self) -> Option<Next> {
        if self.killed() {
            return Some(Next::Killed);
        }
        self.try_recv().map(Next::Frame)
    }

    /// A frame already queued, if any.
    pub fn try_recv(&self) -> Option<Outbound> {
        let mut queue = self.shared.lock();
        let out = queue.pop();
        if queue.items.is_empty() {
            queue.shrink();
        }
        out
    }

    /// Frees the accounting of relayed signals and counts if nothing is
    /// queued: the session calls it now and then, so that a peer idle
    /// after its handshakes holds none.
    pub fn compact(&self) {
        let mut queue = self.shared.lock();
        if queue.items.is_empty() {
            queue.others = None;
        }
    }

    /// Whether the peer was killed.
    pub fn killed(&self) -> bool {
        self.shared.killed.load(Ordering::Acquire)
    }
}

impl Queue {
    fn pop(&mut self) -> Option<Outbound> {
        Some(match self.items.pop_front()? {
            Item::Own(out) => {
                self.own.sub(len(&out));
                out
            }
            Item::Relayed(from, text) => {
                let bytes = text.len();
                let others = self.others.as_mut().expect("a relayed signal is counted");
                others.relayed.sub(bytes);
                if let Some(at) = others.senders.iter().position(|(p, _)| *p == from) {
                    let share = &mut others.senders[at].1;
                    share.sub(bytes);
                    if share.messages == 0 {
                        others.senders.swap_remove(at);
                    }
                }
                Outbound::Text(text)
            }
            Item::Count(content) => Outbound::Text(
                self.others
                    .as_mut()
                    .and_then(|o| o.counts.remove(&content))
                    .expect("a queued count has its text"),
            ),
        })
    }

    /// Gives back what a drained burst grew; nothing is queued. The
    /// accounting of relayed signals stays (made and freed with every
    /// message, it would cost the relay path an allocation each) until
    /// [`Inbox::compact`].
    fn shrink(&mut self) {
        if self.items.capacity() > KEEP {
            self.items = VecDeque::new();
        }
        if let Some(others) = &mut self.others {
            if others.senders.capacity() > KEEP {
                others.senders = Vec::new();
            }
            if others.counts.capacity() > KEEP {
                others.counts = HashMap::new();
            }
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.inbox_gone.store(true, Ordering::Release);
        *self.shared.lock() = Queue::default();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn text(s: &'static str) -> Outbound {
        Outbound::Text(Text::from_static(s))
    }

    fn peer(n: u128) -> PeerId {
        PeerId(uuid::Uuid::from_u128(n))
    }

    fn drain(inbox: &Inbox) -> Vec<String> {
        std::iter::from_fn(|| inbox.try_recv())
            .map(|out| match out {
                Outbound::Text(t) => t.to_string(),
                Outbound::Ping => "ping".into(),
            })
            .collect()
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_a_full_queue_kills() {
        let (mailbox, inbox) = Mailbox::new(2);
        assert_eq!(mailbox.try_send(text("a")), Ok(Sent::Queued));
        assert_eq!(mailbox.try_send(text("b")), Ok(Sent::Queued));
        assert_eq!(mailbox.try_send(text("c")), Ok(Sent::Overflowed));
        assert!(inbox.killed());
        // The kill comes first: a slow peer's backlog is not worth writing.
        assert!(matches!(inbox.recv().await, Next::Killed));
        assert!(matches!(inbox.try_recv(), Some(Outbound::Text(t)) if t == "a"));
    }

    #[test]
    fn own_traffic_is_bounded_in_bytes_too() {
        let (mailbox, inbox) = Mailbox::with_limits(Limits {
            bytes: 4,
            ..Limits::with_capacity(100)
        });
        assert_eq!(mailbox.try_send(text("abc")), Ok(Sent::Queued));
        assert_eq!(mailbox.try_send(text("de")), Ok(Sent::Overflowed));
        assert!(inbox.killed());
    }

    #[tokio::test]
    async fn a_waiting_writer_wakes_for_a_frame_and_for_a_kill() {
        let (mailbox, inbox) = Mailbox::new(4);
        let sender = mailbox.clone();
        let wait = tokio::spawn(async move { matches!(inbox.recv().await, Next::Frame(_)) });
        tokio::task::yield_now().await;
        sender.try_send(text("x")).unwrap();
        assert!(wait.await.unwrap());

        let (mailbox, inbox) = Mailbox::new(1);
        mailbox.try_send(text("x")).unwrap();
        assert!(matches!(inbox.recv().await, Next::Frame(_)));
        let wait = tokio::spawn(async move { matches!(inbox.recv().await, Next::Killed) });
        tokio::task::yield_now().await;
        mailbox.try_send(text("y")).unwrap();
        mailbox.try_send(text("z")).unwrap();
        assert!(wait.await.unwrap());
    }

    #[test]
    fn a_sender_past_its_share_is_refused_and_the_recipient_stays() {
        let (mailbox, inbox) = Mailbox::with_limits(Limits {
            messages: 5,
            bytes: 1 << 20,
            sender_messages: 2,
            sender_bytes: 1 << 10,
        });
        let (flooder, honest) = (peer(1), peer(2));
        for _ in 0..2 {
            mailbox.relay(flooder, Text::from_static("f")).unwrap();
        }
        assert_eq!(
            mailbox.relay(flooder, Text::from_static("f")),
            Err(Refused::Busy {
                queued: 2,
                from_sender: true
            })
        );
        // Another sender still gets through; the recipient is not killed.
        mailbox.relay(honest, Text::from_static("h")).unwrap();
        assert!(!inbox.killed());
        // Reading frees the flooder's share.
        assert_eq!(drain(&inbox), ["f", "f", "h"]);
        mailbox.relay(flooder, Text::from_static("f")).unwrap();
        // A signal bigger than a whole share is refused outright.
        let big = Text::from("x".repeat(2 << 10));
        assert!(matches!(
            mailbox.relay(honest, big),
            Err(Refused::Busy {
                from_sender: true,
                ..
            })
        ));
    }

    #[test]
    fn relayed_signals_share_a_pool_apart_from_own_traffic() {
        let (mailbox, inbox) = Mailbox::with_limits(Limits {
            messages: LIGHT,
            bytes: 1 << 20,
            sender_messages: 2 * LIGHT,
            sender_bytes: 1 << 10,
        });
        let (heavy, light) = (peer(1), peer(2));
        for _ in 0..LIGHT {
            mailbox.relay(heavy, Text::from_static("h")).unwrap();
        }
        // A heavy sender stops at the pool.
        assert_eq!(
            mailbox.relay(heavy, Text::from_static("h")),
            Err(Refused::Busy {
                queued: LIGHT,
                from_sender: false
            })
        );
        // Light senders still have the reserve, up to twice the pool.
        for n in 0..LIGHT as u128 {
            mailbox.relay(peer(10 + n), Text::from_static("l")).unwrap();
        }
        assert_eq!(
            mailbox.relay(light, Text::from_static("l")),
            Err(Refused::Busy {
                queued: 2 * LIGHT,
                from_sender: false
            })
        );
        // The peer's own replies have their own room.
        assert_eq!(mailbox.try_send(text("own")), Ok(Sent::Queued));
        assert!(!inbox.killed());
    }

    #[test]
    fn a_newer_count_replaces_a_queued_one() {
        let (mailbox, inbox) = Mailbox::new(2);
        let (a, b) = (ContentId([1; 32]), ContentId([2; 32]));
        for n in ["a1", "a2", "a3"] {
            mailbox.count(a, Text::from_static(n)).unwrap();
        }
        mailbox.count(b, Text::from_static("b1")).unwrap();
        mailbox.try_send(text("own")).unwrap();
        mailbox.count(a, Text::from_static("a4")).unwrap();
        // Many counts do not fill the queue: the peer is not killed.
        for _ in 0..1_000 {
            mailbox.count(b, Text::from_static("b2")).unwrap();
        }
        assert!(!inbox.killed());
        assert_eq!(drain(&inbox), ["a4", "b2", "own"]);
        // Once written, a count queues afresh.
        mailbox.count(a, Text::from_static("a5")).unwrap();
        assert_eq!(drain(&inbox), ["a5"]);
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back_and_a_gone_inbox_refuses() {
        let (mailbox, inbox) = Mailbox::new(100);
        for n in 0..50 {
            mailbox.try_send(text("x")).unwrap();
            mailbox.relay(peer(n), Text::from_static("r")).unwrap();
            mailbox
                .count(ContentId([n as u8; 32]), Text::from_static("c"))
                .unwrap();
        }
        while inbox.try_recv().is_some() {}
        {
            let queue = mailbox.shared.lock();
            assert!(queue.items.capacity() <= KEEP);
            let others = queue.others.as_ref().expect("kept until compacted");
            assert!(others.senders.capacity() <= KEEP);
            assert!(others.counts.capacity() <= KEEP);
        }
        inbox.compact();
        assert!(mailbox.shared.lock().others.is_none());
        drop(inbox);
        assert_eq!(mailbox.try_send(text("y")), Err(Gone));
        assert_eq!(
            mailbox.relay(peer(1), Text::from_static("r")),
            Err(Refused::Gone)
        );
    }
}
