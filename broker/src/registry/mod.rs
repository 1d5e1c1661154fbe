//! Peer topics and the content index, behind one interface so that a
//! shared registry (e.g. on Redis, for several broker nodes) can replace the
//! in-process one without touching the handlers.
//!
//! The registry delivers what it decides (introductions, holder counts)
//! straight to the peers' outboxes; callers only learn of refusals.

mod local;
mod mailbox;

use std::future::Future;
use std::sync::Arc;

use protocol::{ContentId, ErrorCode, PeerId, ServerMsg};

use crate::admission::AddressGroup;
use serde_json::value::RawValue;

pub use local::{LocalRegistry, MAX_REGISTRATIONS_PER_ADDRESS};
pub use mailbox::{Gone, Inbox, Limits, Mailbox, Next, Refused, Sent};

/// A serialized `ServerMsg`: the WebSocket's own text type, so that it
/// goes out without a copy and is shared, not copied, when fanned out.
pub type Text = tokio_tungstenite::tungstenite::Utf8Bytes;

/// A frame queued for one peer's WebSocket writer.
#[derive(Clone, Debug)]
pub enum Outbound {
    /// A serialized `ServerMsg`.
    Text(Text),
    /// A WebSocket ping (liveness check).
    Ping,
}

/// A server message as the text frame every outbox carries.
pub fn encode(msg: &ServerMsg) -> Text {
    // Most messages are relayed signals a few hundred bytes long; starting
    // there saves the reallocations of growing from empty.
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, msg).expect("server messages serialize");
    String::from_utf8(out)
        .expect("serde_json writes UTF-8")
        .into()
}

/// A relayed signal, `{"signal":{"from":…,"data":…}}`, exactly as
/// [`encode`] writes it, built directly: relaying is the broker's hottest
/// path.
pub fn encode_signal(from: PeerId, data: &RawValue) -> Text {
    const HEAD: &str = r#"{"signal":{"from":""#;
    const MIDDLE: &str = r#"","data":"#;
    let data = data.get();
    let mut out = String::with_capacity(HEAD.len() + 36 + MIDDLE.len() + data.len() + 2);
    out.push_str(HEAD);
    out.push_str(
        from.0
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    out.push_str(MIDDLE);
    out.push_str(data);
    out.push_str("}}");
    out.into()
}

/// Why the registry refused a request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Nobody is registered under that peer's topic.
    #[error("peer {0} is not connected (it may have left); ask the broker for another holder")]
    UnknownPeer(PeerId),
    /// A per-peer limit.
    #[error("{0}")]
    Limit(String),
    /// The recipient has not read what was sent to it before; the signal
    /// was dropped and the recipient keeps its connection.
    #[error("{0}")]
    Busy(String),
}

impl RegistryError {
    /// The wire error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::UnknownPeer(_) => ErrorCode::UnknownPeer,
            RegistryError::Limit(_) => ErrorCode::Limit,
            RegistryError::Busy(_) => ErrorCode::PeerBusy,
        }
    }
}

/// Peer topics (`peer:<uuid>`) and the content index.
pub trait Registry: Send + Sync + 'static {
    /// Registers a new connection under its topic. Its holdings and wants
    /// spend the budget of `group`, its client's address group.
    fn connect(
        &self,
        peer: PeerId,
        mailbox: Mailbox,
        group: AddressGroup,
    ) -> impl Future<Output = ()> + Send;

    /// Removes everything `peer` registered, updating holder counts.
    fn disconnect(&self, peer: PeerId) -> impl Future<Output = ()> + Send;

    /// Relays `from`'s serialized signal to `to`, within `from`'s share of
    /// `to`'s queue (see [`Mailbox::relay`]).
    fn publish(
        &self,
        from: PeerId,
        to: PeerId,
        text: Text,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Records that `peer` holds `content`; introduces it to waiting wanters.
    fn hold(
        &self,
        peer: PeerId,
        content: ContentId,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Records that `peer` no longer holds `content`.
    fn release(&self, peer: PeerId, content: ContentId) -> impl Future<Output = ()> + Send;

    /// Records that `peer` wants `content`: sends it the holder count and
    /// introduces up to `holders` holders now or as they appear.
    fn want(
        &self,
        peer: PeerId,
        content: ContentId,
        holders: u8,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Records that `peer` stopped wanting `content`.
    fn unwant(&self, peer: PeerId, content: ContentId) -> impl Future<Output = ()> + Send;

    /// Records that `offerer` sent `answerer` an offer (or that `answerer`
    /// was handed `offerer`'s ready offer), so `answerer` may answer it once.
    /// Refused while `offerer` has as many unanswered offers to `answerer`
    /// as two peers need.
    fn offered(
        &self,
        offerer: PeerId,
        answerer: PeerId,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;

    /// Uses up `answerer`'s right to answer an offer from `offerer`:
    /// `Ok(false)` if it has none, an error if `offerer` is not connected.
    fn answering(
        &self,
        answerer: PeerId,
        offerer: PeerId,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send;

    /// Keeps `offer` (replacing any earlier one) for the next wanter
    /// `peer` is introduced to; the introduction carries it, and `peer` is
    /// told who took it.
    fn ready(&self, peer: PeerId, offer: Box<RawValue>) -> impl Future<Output = ()> + Send;
}

/// A registry shared with its owner, e.g. a test that inspects it while a
/// broker runs on it.
impl<R: Registry> Registry for Arc<R> {
    fn connect(
        &self,
        peer: PeerId,
        mailbox: Mailbox,
        group: AddressGroup,
    ) -> impl Future<Output = ()> + Send {
        R::connect(self, peer, mailbox, group)
    }

    fn disconnect(&self, peer: PeerId) -> impl Future<Output = ()> + Send {
        R::disconnect(self, peer)
    }

    fn publish(
        &self,
        from: PeerId,
        to: PeerId,
        text: Text,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        R::publish(self, from, to, text)
    }

    fn hold(
        &self,
        peer: PeerId,
        content: ContentId,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        R::hold(self, peer, content)
    }

    fn release(&self, peer: PeerId, content: ContentId) -> impl Future<Output = ()> + Send {
        R::release(self, peer, content)
    }

    fn want(
        &self,
        peer: PeerId,
        content: ContentId,
        holders: u8,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        R::want(self, peer, content, holders)
    }

    fn unwant(&self, peer: PeerId, content: ContentId) -> impl Future<Output = ()> + Send {
        R::unwant(self, peer, content)
    }

    fn offered(
        &self,
        offerer: PeerId,
        answerer: PeerId,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send {
        R::offered(self, offerer, answerer)
    }

    fn answering(
        &self,
        answerer: PeerId,
        offerer: PeerId,
    ) -> impl Future<Output = Result<bool, RegistryError>> + Send {
        R::answering(self, answerer, offerer)
    }

    fn ready(&self, peer: PeerId, offer: Box<RawValue>) -> impl Future<Output = ()> + Send {
        R::ready(self, peer, offer)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn a_signal_is_encoded_as_serde_would() {
        let from = PeerId(uuid::Uuid::from_u128(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ));
        for data in [
            r#"{"kind":"answer","sdp":"v=0\r\n"}"#,
            "null",
            r#" [1, "\u00e9"] "#,
        ] {
            let data = RawValue::from_string(data.to_owned()).unwrap();
            let expected = encode(&ServerMsg::Signal {
                from,
                data: data.clone(),
            });
            assert_eq!(encode_signal(from, &data), expected);
        }
    }
}
