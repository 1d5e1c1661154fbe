//! Messages between a peer and the broker, as JSON text frames.
//!
//! Enums are externally tagged (`{"hold":{"content":"…"}}`) so that the
//! opaque WebRTC payload can stay a borrowed raw JSON value: the broker never
//! parses SDP or ICE, it only stamps the sender and forwards. No message type
//! can carry content.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{ContentId, PeerId};
use crate::links::Side;
use crate::release::{SignedRelease, SiteKey};
use crate::transfer::Request;

/// Largest text frame the broker accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most holders one `want` may ask to be introduced to.
pub const MAX_INTRODUCTIONS: u8 = 8;
/// Largest ready offer (`ClientMsg::Ready` payload) the broker keeps, in
/// bytes: an SDP offer with its candidates is 1-3 KB.
pub const MAX_READY_OFFER_BYTES: usize = 8 * 1024;
/// Largest `signal.data` the broker relays, in bytes: an SDP with every
/// candidate gathered stays under 8 KB; more is no handshake.
pub const MAX_SIGNAL_BYTES: usize = 16 * 1024;

/// Client -> broker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Relay an opaque WebRTC handshake payload (offer, answer, candidate)
    /// to another peer. The broker adds the sender's id.
    Signal {
        /// Recipient.
        to: PeerId,
        /// Opaque payload; only peers parse it (see [`PeerSignal`]).
        data: Box<RawValue>,
    },
    /// "I hold this content and will serve it."
    Hold {
        /// Address held.
        content: ContentId,
    },
    /// "I no longer hold this content."
    Release {
        /// Address released.
        content: ContentId,
    },
    /// "Introduce me to holders of this content", now or as soon as one
    /// appears. Also subscribes to its holder count.
    Want {
        /// Address wanted.
        content: ContentId,
        /// How many distinct holders to be introduced to (default 1, at most
        /// [`MAX_INTRODUCTIONS`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holders: Option<u8>,
    },
    /// "Stop looking for this content."
    Unwant {
        /// Address no longer wanted.
        content: ContentId,
    },
    /// A holder's ready offer (ICE gathering complete), for the next wanter
    /// the broker introduces it to. It replaces any earlier one and is
    /// handed out once: the wanter answers it instead of making an offer,
    /// which saves a round trip. At most [`MAX_READY_OFFER_BYTES`].
    Ready {
        /// Opaque payload; only peers parse it (see [`PeerSignal::Ready`]).
        data: Box<RawValue>,
    },
    /// "Tell me of this site's releases": the latest the broker kept, at
    /// once, and each newer one announced.
    Follow {
        /// The site's key.
        site: SiteKey,
    },
    /// A site's new signed release, for its followers. The broker keeps
    /// it only if its signature verifies and it is newer than the one it
    /// has (see [`crate::release`]).
    Announce {
        /// The record, as `peerpage.json` holds it.
        record: SignedRelease,
    },
}

impl ClientMsg {
    /// Every message type, as named on the wire.
    pub const KINDS: [&'static str; 8] = [
        "signal", "hold", "release", "want", "unwant", "ready", "follow", "announce",
    ];

    /// This message's type, as named on the wire (one of [`Self::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Signal { .. } => "signal",
            ClientMsg::Hold { .. } => "hold",
            ClientMsg::Release { .. } => "release",
            ClientMsg::Want { .. } => "want",
            ClientMsg::Unwant { .. } => "unwant",
            ClientMsg::Ready { .. } => "ready",
            ClientMsg::Follow { .. } => "follow",
            ClientMsg::Announce { .. } => "announce",
        }
    }
}

/// Broker -> client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        /// The id the broker assigned to this connection.
        id: PeerId,
        /// ICE servers to hand to `RTCPeerConnection`.
        ice_servers: Vec<IceServer>,
    },
    /// A relayed handshake payload, stamped with its real sender.
    Signal {
        /// Who sent it (set by the broker, never by the client).
        from: PeerId,
        /// The sender's opaque payload.
        data: Box<RawValue>,
    },
    /// A holder of content you want. With `offer`, answer the holder's
    /// ready offer; without, make the WebRTC offer yourself.
    Introduce {
        /// Address wanted.
        content: ContentId,
        /// A peer that holds it.
        holder: PeerId,
        /// The holder's ready offer (its `ClientMsg::Ready` payload), if it
        /// had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offer: Option<Box<RawValue>>,
    },
    /// Your ready offer went to this wanter: expect its answer, and send
    /// the broker a fresh ready offer for the next one.
    OfferTaken {
        /// The wanter that received it.
        by: PeerId,
    },
    /// How many peers hold this content. Sent to holders and wanters
    /// whenever it changes, and to a new wanter at once. Zero means nobody
    /// holds it now; the want stays registered.
    Holders {
        /// Address.
        content: ContentId,
        /// Number of holders.
        count: u32,
    },
    /// Fresh ICE servers (TURN credentials are short-lived), sent before
    /// the welcome's expire: use them for every connection made from now.
    IceServers {
        /// Replaces the welcome's `ice_servers`.
        ice_servers: Vec<IceServer>,
    },
    /// A request was refused. The connection stays open unless the broker
    /// closes it.
    /// A followed site's release: the latest kept, or a newer one just
    /// announced. Its signature is for the follower to check.
    SiteRelease {
        /// The record.
        record: SignedRelease,
    },
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: String,
        /// The peer the error is about, for `unknown_peer`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
    },
}

/// Machine-readable error reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not JSON.
    BadJson,
    /// The frame was JSON but no known message.
    UnknownType,
    /// A known message with missing or wrongly typed fields.
    BadMessage,
    /// A content address that is not 64 lowercase hex characters.
    BadAddress,
    /// The frame was larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// Binary frames are not part of the protocol.
    Binary,
    /// The target peer is not connected.
    UnknownPeer,
    /// A per-peer limit was reached.
    Limit,
    /// Too many messages too fast; the message was dropped.
    RateLimited,
    /// An answer to a peer that made the sender no offer.
    UnexpectedAnswer,
    /// The recipient has not yet read what the sender sent it before; the
    /// signal was dropped. Wait for its replies before sending more.
    PeerBusy,
    /// An announced release was refused (signature, expiry, not newer).
    BadRelease,
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` / `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why a client frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// Classification for the error reply.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

/// Decodes one client text frame, classifying failures so the reply says
/// precisely what was wrong.
pub fn decode_client(text: &str) -> Result<ClientMsg, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError {
            code: ErrorCode::TooLarge,
            message: format!(
                "message is {} bytes, over the {MAX_MESSAGE_BYTES}-byte limit; send smaller messages",
                text.len()
            ),
        });
    }
    serde_json::from_str(text).map_err(|e| {
        let detail = e.to_string();
        // serde reports some valid JSON that is no message (`42`, `{}`) as
        // a syntax error; a second, cheap parse tells them apart.
        let is_json = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        let keys = serde_json::from_str::<std::collections::HashMap<&str, serde::de::IgnoredAny>>(text)
            .map(|m| m.len())
            .ok();
        let (code, hint) = if !is_json {
            (ErrorCode::BadJson, "not valid JSON".to_owned())
        } else if keys.is_some_and(|n| n > 1) {
            (ErrorCode::BadMessage, "a message is a JSON object with exactly one key, its type".to_owned())
        } else if detail.contains("unknown variant") || detail.contains("expected enum") || detail.contains("expected value") {
            (ErrorCode::UnknownType, format!(
                "unknown message type; expected one of {}, e.g. {{\"want\":{{\"content\":\"<address>\"}}}}",
                ClientMsg::KINDS.join(", ")
            ))
        } else if detail.contains("malformed address") {
            (ErrorCode::BadAddress, "bad content address".to_owned())
        } else {
            (ErrorCode::BadMessage, "malformed message".to_owned())
        };
        DecodeError {
            code,
            message: format!("{hint}: {detail}"),
        }
    })
}

/// Where a signal stands in the offer/answer exchange, as far as the
/// broker cares: it relays an answer only to a peer that made an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    /// [`PeerSignal::Offer`].
    Offer,
    /// [`PeerSignal::Answer`] or [`PeerSignal::ReadyAnswer`].
    Answer,
    /// Anything else (candidates, byes, payloads of other clients).
    Other,
}

/// The [`SignalKind`] of a `signal.data` payload, read from its `kind` tag
/// alone; the rest stays opaque to the broker. The payload must be a JSON
/// object with exactly one string `kind`: a second `kind` could make the
/// broker and the recipient read different kinds (e.g. the broker a
/// candidate, the peer an answer), around the answer-once rule.
pub fn signal_kind(data: &str) -> Result<SignalKind, String> {
    use serde::de::{Deserializer, Error, IgnoredAny, MapAccess, Visitor};

    // Relaying is the broker's hottest path: keys and the kind are read
    // in place (escaped ones from serde_json's scratch buffer), never
    // copied into Strings.
    struct IsKind(bool);
    impl<'de> Deserialize<'de> for IsKind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_identifier(Read(|key: &str| IsKind(key == "kind")))
        }
    }
    struct Kind(SignalKind);
    impl<'de> Deserialize<'de> for Kind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Read(|kind: &str| {
                Kind(match kind {
                    "offer" => SignalKind::Offer,
                    "answer" | "ready_answer" => SignalKind::Answer,
                    _ => SignalKind::Other,
                })
            }))
        }
    }
    /// Reads one string, whether borrowed from the input or not.
    struct Read<F>(F);
    impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for Read<F> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<T, E> {
            Ok((self.0)(v))
        }
    }
    struct Tag;
    impl<'de> Visitor<'de> for Tag {
        type Value = SignalKind;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object with a string `kind`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SignalKind, A::Error> {
            let mut kind = None;
            while let Some(IsKind(is_kind)) = map.next_key()? {
                if !is_kind {
                    map.next_value::<IgnoredAny>()?;
                } else if kind.is_some() {
                    return Err(Error::custom("`kind` appears more than once"));
                } else {
                    kind = Some(map.next_value::<Kind>()?.0);
                }
            }
            kind.ok_or_else(|| Error::missing_field("kind"))
        }
    }
    serde_json::Deserializer::from_str(data)
        .deserialize_map(Tag)
        .map_err(|e| {
            format!(
                "signal data must be a JSON object with exactly one string `kind` \
                 (e.g. {{\"kind\":\"candidate\",…}}): {e}"
            )
        })
}

/// The payload peers put in `signal.data` (and in a ready offer). Only
/// peers parse it; the broker reads its kind (see [`signal_kind`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerSignal {
    /// SDP offer; the wanter sends it for `content` when the holder had no
    /// ready offer.
    Offer {
        /// The session description.
        sdp: String,
        /// Which content the offerer wants from the holder.
        content: ContentId,
        /// Which connection between the two peers this is about: 0, or 1
        /// for a second one to the same holder (see
        /// [`crate::download::Conn`]). Absent means 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        lane: u8,
    },
    /// SDP answer to an [`PeerSignal::Offer`].
    Answer {
        /// The session description.
        sdp: String,
        /// Which connection between the two peers this is about: 0, or 1
        /// for a second one to the same holder (see
        /// [`crate::download::Conn`]). Absent means 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        lane: u8,
    },
    /// A holder's ready offer, sent to the broker in `ClientMsg::Ready`
    /// before any wanter exists. ICE gathering is complete, so the SDP
    /// carries the holder's candidates.
    Ready {
        /// The session description.
        sdp: String,
    },
    /// The wanter's answer to a ready offer, with its first request: the
    /// holder sends it as soon as the channel opens, without waiting for the
    /// request to cross the channel.
    ReadyAnswer {
        /// The session description.
        sdp: String,
        /// What to send first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Request>,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The sender's side of this connection. Two peers may have a
        /// connection each way (each fetching from the other); this says
        /// which one the candidate belongs to.
        side: Side,
        /// `RTCIceCandidate.candidate`.
        candidate: String,
        /// `sdpMid`.
        #[serde(default)]
        sdp_mid: Option<String>,
        /// `sdpMLineIndex`.
        #[serde(default)]
        sdp_m_line_index: Option<u16>,
        /// Which connection between the two peers this is about: 0, or 1
        /// for a second one to the same holder (see
        /// [`crate::download::Conn`]). Absent means 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        lane: u8,
    },
    /// The sender gives up on this connection (e.g. it no longer holds the
    /// content), so the other side can move on at once.
    Bye {
        /// The sender's side of this connection.
        side: Side,
        /// Why.
        reason: String,
        /// Which connection between the two peers this is about: 0, or 1
        /// for a second one to the same holder (see
        /// [`crate::download::Conn`]). Absent means 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        lane: u8,
    },
}

fn is_zero(lane: &u8) -> bool {
    *lane == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        decode_client(text).unwrap_err().code
    }

    #[test]
    fn signal_kinds_come_from_the_tag_alone() {
        let offer = serde_json::to_string(&PeerSignal::Answer {
            sdp: "v=0".into(),
            lane: 0,
        })
        .unwrap();
        assert_eq!(signal_kind(&offer), Ok(SignalKind::Answer));
        assert_eq!(
            signal_kind(r#"{"sdp":"x","kind":"offer","content":"y"}"#),
            Ok(SignalKind::Offer)
        );
        assert_eq!(
            signal_kind(r#"{"kind":"ready_answer","sdp":"x"}"#),
            Ok(SignalKind::Answer)
        );
        assert_eq!(
            signal_kind(r#"{"kind":"candidate"}"#),
            Ok(SignalKind::Other)
        );
    }

    #[test]
    fn ambiguous_or_untagged_signals_are_refused() {
        for data in [
            r#"{"kind":"candidate","kind":"answer","sdp":"x"}"#,
            r#"{"kind":"answer","sdp":"x","kind":"candidate"}"#,
            r#"{"kind":"candidate","\u006bind":"answer"}"#,
            r#"{"t":"1"}"#,
            r#"{"kind":7}"#,
            r#"["answer"]"#,
            "[1,2]",
            "null",
            "true",
        ] {
            let err = signal_kind(data).expect_err(data);
            assert!(err.contains("exactly one string `kind`"), "{data}: {err}");
        }
    }

    #[test]
    fn decodes_every_client_message() {
        let addr = ContentId([0xab; 32]).to_string();
        let peer = uuid::Uuid::nil();
        for text in [
            format!(r#"{{"signal":{{"to":"{peer}","data":{{"kind":"answer","sdp":"x"}}}}}}"#),
            format!(r#"{{"hold":{{"content":"{addr}"}}}}"#),
            format!(r#"{{"release":{{"content":"{addr}"}}}}"#),
            format!(r#"{{"want":{{"content":"{addr}"}}}}"#),
            format!(r#"{{"want":{{"content":"{addr}","holders":3}}}}"#),
            format!(r#"{{"unwant":{{"content":"{addr}"}}}}"#),
            r#"{"ready":{"data":{"kind":"ready","sdp":"v=0"}}}"#.to_owned(),
        ] {
            let msg = decode_client(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(text.starts_with(&format!("{{\"{}\"", msg.kind())), "{text}");
        }
    }

    #[test]
    fn signal_payload_is_forwarded_verbatim() {
        let text =
            r#"{"signal":{"to":"00000000-0000-0000-0000-000000000000","data":{"b":1, "a":[2]}}}"#;
        let ClientMsg::Signal { data, .. } = decode_client(text).unwrap() else {
            panic!()
        };
        assert_eq!(data.get(), r#"{"b":1, "a":[2]}"#);
    }

    #[test]
    fn classifies_bad_input() {
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code(""), ErrorCode::BadJson);
        assert_eq!(code(r#"{"teleport":{}}"#), ErrorCode::UnknownType);
        for valid_json_but_no_message in ["42", "{}", "[]", "null"] {
            assert_eq!(
                code(valid_json_but_no_message),
                ErrorCode::UnknownType,
                "{valid_json_but_no_message}"
            );
        }
        assert_eq!(code(r#"{"hold":{"content":"XYZ"}}"#), ErrorCode::BadAddress);
        assert_eq!(code(r#"{"hold":{}}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"hold":{},"want":{}}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"signal":{"to":"nope","data":1}}"#),
            ErrorCode::BadMessage
        );
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(code(&big), ErrorCode::TooLarge);
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = decode_client(r#"{"teleport":{}}"#).unwrap_err();
        assert!(
            e.message.contains(
                "expected one of signal, hold, release, want, unwant, ready, follow, announce, e.g. {\"want\""
            ),
            "{}",
            e.message
        );
        let e = decode_client(r#"{"want":{"content":"abc"}}"#).unwrap_err();
        assert!(e.message.contains("64 lowercase hex"), "{}", e.message);
    }

    #[test]
    fn a_first_connection_is_not_named_and_a_second_one_is() {
        let first = PeerSignal::Bye {
            side: Side::Fetch,
            reason: "done".into(),
            lane: 0,
        };
        let text = serde_json::to_string(&first).unwrap();
        assert!(!text.contains("lane"), "{text}");
        // What peers without lanes send reads as the first connection.
        let old: PeerSignal = serde_json::from_str(r#"{"kind":"answer","sdp":"v=0"}"#).unwrap();
        assert!(matches!(old, PeerSignal::Answer { lane: 0, .. }));
        let second = PeerSignal::Candidate {
            side: Side::Serve,
            candidate: "candidate:1".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
            lane: 1,
        };
        let text = serde_json::to_string(&second).unwrap();
        assert!(text.contains(r#""lane":1"#), "{text}");
        let back: PeerSignal = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, PeerSignal::Candidate { lane: 1, .. }));
    }
}
