//! Our ready offer: a connection offered in advance, with its ICE
//! candidates gathered, left with the broker for the next wanter it
//! introduces to us (see `ClientMsg::Ready`). The wanter answers it at once
//! instead of making its own offer.

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::Timeout;
use protocol::links::{LinkKey, LinkRef, Side};
use protocol::signaling::PeerSignal;
use protocol::{ClientMsg, PeerId};

use crate::error::log_error;
use crate::rtc::{Link, LinkEvent};

use super::clock::now;
use super::links::{Peering, Role};
use super::serve::Serving;
use super::{with_inner, Inner};

/// Longest wait for ICE gathering before a ready offer goes out as is.
const GATHER_MS: u32 = 3_000;
/// After failing to make a ready offer, wait this long before trying again.
const RETRY_MS: f64 = 5_000.0;
/// A ready offer is made this long after the need arises: creating a
/// connection costs the main thread a few milliseconds, which should not
/// delay showing fetched content or serving the wanter that just took the
/// previous offer.
const DELAY_MS: u32 = 50;

/// The ready offer's state.
pub struct Ready {
    offer: Option<ReadyOffer>,
    timer: Option<Timeout>,
    failed_at: f64,
    /// Numbers offers, so a late gathering result finds its own.
    made: u64,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            offer: None,
            timer: None,
            failed_at: f64::NEG_INFINITY,
            made: 0,
        }
    }
}

/// A connection offered in advance, until a wanter takes it.
struct ReadyOffer {
    link: Link,
    number: u64,
    /// The gathered offer, once made; sent to the broker.
    sdp: Option<String>,
    /// Where the link's events go once a wanter took the offer.
    target: Rc<Cell<Option<LinkRef>>>,
    /// Candidates found after the offer went out, for whoever takes it.
    late: Vec<PeerSignal>,
}

impl Ready {
    /// Whether an offer could be made now, as far as this part knows: none
    /// is out and the last attempt did not just fail.
    fn may_make(&self) -> bool {
        self.offer.is_none() && now() - self.failed_at >= RETRY_MS
    }

    /// When a failed attempt may be retried, while that is still to come.
    fn retry_at(&self) -> Option<f64> {
        let at = self.failed_at + RETRY_MS;
        (self.offer.is_none() && self.timer.is_none() && now() < at).then_some(at)
    }

    /// Drops the offer and any pending attempt.
    pub fn clear(&mut self) {
        self.offer = None;
        self.timer = None;
    }
}

impl Inner {
    /// Whether a ready offer should be made now: we hold something, are
    /// connected, have none, did not just fail to make one, and the serving
    /// caps leave room (see `protocol::links::ServeGate`).
    fn needs_ready_offer(&self) -> bool {
        !self.closed
            && !self.held.is_empty()
            && self.signaling.id.is_some()
            && self.ready.may_make()
            && self.gate.ready_reopens_at(now() as u64).is_none()
    }

    /// When to try again to make a ready offer, after a failure or while
    /// the serving caps leave no room, if one would be needed then.
    pub(super) fn ready_retry_at(&self) -> Option<f64> {
        let wanted = !self.closed && !self.held.is_empty() && self.signaling.id.is_some();
        let gate = self.gate.ready_reopens_at(now() as u64).map(|at| at as f64);
        let at = self
            .ready
            .retry_at()
            .into_iter()
            .chain(gate)
            .reduce(f64::max);
        at.filter(|_| wanted)
    }

    /// Makes a ready offer soon if one is needed.
    pub(super) fn schedule_ready_offer(&mut self) {
        if self.ready.timer.is_none() && self.needs_ready_offer() {
            let weak = self.me.clone();
            self.ready.timer = Some(Timeout::new(DELAY_MS, move || {
                with_inner(&weak, |i| {
                    i.ready.timer = None;
                    i.prepare_ready_offer();
                })
            }));
        }
    }

    fn ready_failed(&mut self, e: &crate::error::PeerError) {
        self.ready.offer = None;
        self.ready.failed_at = now();
        log_error("cannot prepare a ready offer", e);
    }

    /// Makes an offer in advance, while we hold something, so the next
    /// wanter can answer it at once instead of making its own.
    fn prepare_ready_offer(&mut self) {
        if !self.needs_ready_offer() {
            return;
        }
        let serving = self.serving_links();
        if self.gate.admit_ready(serving, now() as u64).is_err() {
            // Serving as much as it may: the next ready offer waits for a
            // serving link to go (or the window to pass).
            return;
        }
        let target: Rc<Cell<Option<LinkRef>>> = Rc::default();
        let on: crate::rtc::OnEvent = {
            let (weak, target) = (self.me.clone(), target.clone());
            Rc::new(move |ev: LinkEvent| {
                let to = target.get();
                with_inner(&weak, move |i| match to {
                    Some(link) => i.on_link_event(link, ev),
                    None => i.on_ready_event(ev),
                })
            })
        };
        let link = match self.new_link(true, on) {
            Ok(link) => link,
            Err(e) => return self.ready_failed(&e),
        };
        let pc = link.pc.clone();
        self.ready.made += 1;
        let number = self.ready.made;
        self.ready.offer = Some(ReadyOffer {
            link,
            number,
            sdp: None,
            target,
            late: Vec::new(),
        });
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = Link::gathered_offer(pc, GATHER_MS).await;
            with_inner(&weak, move |i| {
                let Some(ready) = i.ready.offer.as_mut().filter(|r| r.number == number) else {
                    return;
                };
                match result {
                    Ok(sdp) => {
                        ready.sdp = Some(sdp);
                        i.publish_ready_offer();
                    }
                    Err(e) => i.ready_failed(&e),
                }
            });
        });
    }

    /// Leaves the gathered offer with the broker.
    pub(super) fn publish_ready_offer(&self) {
        if let Some(sdp) = self.ready.offer.as_ref().and_then(|r| r.sdp.clone()) {
            let data = serde_json::value::to_raw_value(&PeerSignal::Ready { sdp })
                .expect("signals serialize");
            self.signaling.send(&ClientMsg::Ready { data });
        }
    }

    fn on_ready_event(&mut self, ev: LinkEvent) {
        let Some(ready) = self.ready.offer.as_mut() else {
            return;
        };
        match ev {
            // Candidates found before the offer went out are in its SDP.
            LinkEvent::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } if ready.sdp.is_some() => ready.late.push(PeerSignal::Candidate {
                side: Side::Serve,
                candidate,
                sdp_mid,
                sdp_m_line_index,
                lane: 0,
            }),
            LinkEvent::Closed => {
                // Unusable now; the broker's copy fails its taker, which
                // then asks for another holder. Make a fresh one.
                self.ready.offer = None;
                self.schedule_ready_offer();
            }
            _ => {}
        }
    }

    /// The broker handed our ready offer to `by`: charged to `by`'s
    /// allowance (see `protocol::links::ServeGate::taken`), the connection
    /// becomes a serving link to it, and a fresh offer waits for the next
    /// wanter. Over its allowance, `by` is told why and the connection
    /// dropped, and the next ready offer waits.
    pub(super) fn on_offer_taken(&mut self, by: PeerId) {
        let Some(ready) = self.ready.offer.take() else {
            return;
        };
        if let Err(why) = self.gate.taken(by, now() as u64) {
            self.stats.offers_refused += 1;
            let bye = PeerSignal::Bye {
                side: Side::Serve,
                reason: why.to_string(),
                lane: 0,
            };
            self.signaling.signal(by, &bye);
            // Dropping `ready` closes its connection.
            return;
        }
        let key = LinkKey {
            peer: by,
            side: Side::Serve,
            lane: 0,
        };
        // Already serving `by` on another link: it will not answer this one.
        if !self.links.contains(&key) {
            let link = self.links.insert(
                key,
                Peering::new(ready.link, Role::Serve(Serving::default())),
            );
            ready.target.set(Some(link));
            for candidate in &ready.late {
                self.signaling.signal(by, candidate);
            }
        }
        self.schedule_ready_offer();
    }
}
