//! How each server under test names peers and relays a signal.
//!
//! Every server relays the same payload, `{"kind":"candidate","t":"<send
//! time>","pad":"…"}`, shaped and sized like a trickled ICE candidate (our
//! broker reads the kind). The send time is a string because matchbox
//! re-serializes JSON numbers.

use clap::ValueEnum;

/// A signaling server the generator can load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Server {
    /// This repository's broker.
    Ours,
    /// PeerJS's server (npm package `peer`).
    Peerjs,
    /// matchbox_server (crates.io).
    Matchbox,
}

/// Digits of the send time in nanoseconds.
pub const STAMP_DIGITS: usize = 20;

/// What precedes the send time in every relayed payload.
pub const STAMP_KEY: &[u8] = b"\"t\":\"";

impl Server {
    /// Every server, in report order.
    pub const ALL: [Server; 3] = [Server::Ours, Server::Peerjs, Server::Matchbox];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Server::Ours => "ours",
            Server::Peerjs => "peerjs",
            Server::Matchbox => "matchbox",
        }
    }

    /// Upgrade path for peer number `index`. Peers `2k` and `2k+1` form a
    /// pair; matchbox gets a room per pair so joins do not fan out to all.
    pub fn path(self, index: usize) -> String {
        match self {
            Server::Ours => "/ws".into(),
            Server::Peerjs => format!("/peerjs?key=peerjs&id=p{index}&token=t{index}"),
            Server::Matchbox => format!("/pair{}", index / 2),
        }
    }

    /// The peer's id, from the first text frame the server sends it.
    pub fn own_id(self, index: usize, first: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(first).ok()?;
        match self {
            Server::Ours => quoted_after(text, "\"id\":\""),
            Server::Peerjs => text.contains("\"OPEN\"").then(|| format!("p{index}")),
            Server::Matchbox => quoted_after(text, "{\"IdAssigned\":\""),
        }
    }

    /// A signal to `to` as `(before the stamp, after the stamp)`.
    pub fn signal(self, to: &str, pad: usize) -> (Vec<u8>, Vec<u8>) {
        let (head, tail) = match self {
            Server::Ours => (format!("{{\"signal\":{{\"to\":\"{to}\",\"data\":"), "}}"),
            Server::Peerjs => (
                format!("{{\"type\":\"CANDIDATE\",\"dst\":\"{to}\",\"payload\":"),
                "}",
            ),
            Server::Matchbox => (
                format!("{{\"Signal\":{{\"receiver\":\"{to}\",\"data\":"),
                "}}",
            ),
        };
        let before = format!(
            "{head}{{\"kind\":\"candidate\",{}",
            std::str::from_utf8(STAMP_KEY).unwrap()
        );
        let after = format!("\",\"pad\":\"{}\"}}{tail}", "x".repeat(pad));
        (before.into_bytes(), after.into_bytes())
    }
}

fn quoted_after(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The send time in a relayed payload, if it is one of ours.
pub fn stamp(payload: &[u8]) -> Option<u64> {
    let at = payload
        .windows(STAMP_KEY.len())
        .position(|w| w == STAMP_KEY)?
        + STAMP_KEY.len();
    let digits = payload.get(at..at + STAMP_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn signals_carry_a_readable_stamp() {
        for server in Server::ALL {
            let (before, after) = server.signal("peer-2", 10);
            let stamp_text = format!("{:0width$}", 1234567, width = STAMP_DIGITS);
            let frame = [before, stamp_text.into_bytes(), after].concat();
            let text = std::str::from_utf8(&frame).unwrap();
            assert!(text.contains("peer-2"), "{text}");
            assert_eq!(stamp(&frame), Some(1234567), "{text}");
        }
    }

    #[test]
    fn ids_come_from_the_first_frame() {
        let welcome = br#"{"type":"welcome","id":"0f6c","ice_servers":[]}"#;
        assert_eq!(Server::Ours.own_id(0, welcome).as_deref(), Some("0f6c"));
        assert_eq!(
            Server::Peerjs.own_id(3, br#"{"type":"OPEN"}"#).as_deref(),
            Some("p3")
        );
        let assigned = br#"{"IdAssigned":"9a"}"#;
        assert_eq!(Server::Matchbox.own_id(0, assigned).as_deref(), Some("9a"));
        assert_eq!(Server::Matchbox.own_id(0, br#"{"NewPeer":"9a"}"#), None);
    }
}
