//! A peer's bounded outbound queue, and the kill switch for a peer that
//! cannot keep up.
//!
//! Written for this job rather than taken from a channel crate because
//! every connected peer has one: it allocates nothing until something is
//! queued and gives its buffer back once drained after a burst (tokio's
//! mpsc allocates about 1.5 KiB up front), and the kill rides on the same
//! wake-up as the queue, so the session waits on one thing instead of two.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use super::Outbound;

/// Queue capacity kept after a burst has drained.
const KEEP: usize = 8;

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
    queue: Mutex<VecDeque<Outbound>>,
    capacity: usize,
    waker: AtomicWaker,
    killed: AtomicBool,
    inbox_gone: AtomicBool,
}

/// What happened to a frame offered to a [`Mailbox`].
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued for the writer.
    Queued,
    /// The queue was full: the frame is dropped and the peer killed, since
    /// a consumer that cannot keep up is disconnected, not buffered for.
    Overflowed,
}

/// The peer's session has ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Gone;

/// What [`Inbox::recv`] yields.
#[derive(Debug)]
pub enum Next {
    /// A frame to write.
    Frame(Outbound),
    /// The peer overflowed its queue and must go.
    Killed,
}

impl Mailbox {
    /// A mailbox holding at most `capacity` frames, and its writer's end.
    pub fn new(capacity: usize) -> (Mailbox, Inbox) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            capacity,
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

    /// Queues `out` unless the queue is full, in which case the peer is
    /// killed instead.
    pub fn try_send(&self, out: Outbound) -> Result<Sent, Gone> {
        let shared = &*self.shared;
        if shared.inbox_gone.load(Ordering::Acquire) {
            return Err(Gone);
        }
        let sent = {
            let mut queue = shared.lock();
            if queue.len() < shared.capacity {
                queue.push_back(out);
                Sent::Queued
            } else {
                shared.killed.store(true, Ordering::Release);
                Sent::Overflowed
            }
        };
        shared.waker.wake();
        Ok(sent)
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
        let out = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEEP {
            *queue = VecDeque::new();
        }
        out
    }

    /// Whether the peer was killed.
    pub fn killed(&self) -> bool {
        self.shared.killed.load(Ordering::Acquire)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.inbox_gone.store(true, Ordering::Release);
        self.shared.lock().clear();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        // A panic while holding this lock leaves a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use crate::registry::Text;

    fn text(s: &'static str) -> Outbound {
        Outbound::Text(Text::from_static(s))
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
    fn a_drained_burst_gives_its_buffer_back_and_a_gone_inbox_refuses() {
        let (mailbox, inbox) = Mailbox::new(100);
        for _ in 0..50 {
            mailbox.try_send(text("x")).unwrap();
        }
        while inbox.try_recv().is_some() {}
        assert!(mailbox.shared.lock().capacity() <= KEEP);
        drop(inbox);
        assert_eq!(mailbox.try_send(text("y")), Err(Gone));
    }
}
