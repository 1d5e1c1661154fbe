//! Counters exposed at `/metrics` in Prometheus text format.
//!
//! Plain atomics: a handful of counters do not need a metrics framework,
//! and relaxed increments cost nothing on the relay path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use protocol::{ClientMsg, ErrorCode};

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections.
    pub peers: AtomicU64,
    /// Addresses with at least one holder.
    pub addresses: AtomicU64,
    /// Bytes of WebSocket text frames received from peers.
    pub ws_bytes_in: AtomicU64,
    /// Bytes of WebSocket text frames sent to peers.
    pub ws_bytes_out: AtomicU64,
    /// Handshake payloads relayed.
    pub relayed: AtomicU64,
    /// Holders introduced to wanters.
    pub introductions: AtomicU64,
    /// Introductions that carried the holder's ready offer.
    pub ready_offers: AtomicU64,
    /// Peers disconnected because their outbound queue was full.
    pub queue_drops: AtomicU64,
    /// Relayed signals refused because the recipient had not read the
    /// sender's share (or all senders') of its queue yet.
    pub refused_relays: AtomicU64,
    /// WebSocket upgrades refused for an origin not on the allowlist.
    pub refused_origin: AtomicU64,
    /// WebSocket upgrades refused at the connection limit.
    pub refused_capacity: AtomicU64,
    /// WebSocket upgrades refused at the per-address connection limit.
    pub refused_per_address: AtomicU64,
    /// Plain HTTP connections (or forwarded requests) refused at the
    /// per-address cap.
    pub refused_http: AtomicU64,
    /// HTTP connections whose request headers took too long (408).
    pub http_header_timeouts: AtomicU64,
    /// HTTP connections closed for idling between requests or not reading
    /// a response.
    pub http_idle_closes: AtomicU64,
    /// Peers disconnected because they answered no ping in time.
    pub idle_drops: AtomicU64,
    /// Peers disconnected for flooding past the message rate limit.
    pub flood_drops: AtomicU64,
    /// Messages handled, by type (index into [`ClientMsg::KINDS`]).
    messages: [AtomicU64; ClientMsg::KINDS.len()],
    /// Error replies, by [`ErrorCode`] (index from [`code_index`]).
    errors: [AtomicU64; CODES.len()],
}

const CODES: [ErrorCode; 12] = [
    ErrorCode::BadJson,
    ErrorCode::UnknownType,
    ErrorCode::BadMessage,
    ErrorCode::BadAddress,
    ErrorCode::TooLarge,
    ErrorCode::Binary,
    ErrorCode::UnknownPeer,
    ErrorCode::Limit,
    ErrorCode::RateLimited,
    ErrorCode::UnexpectedAnswer,
    ErrorCode::PeerBusy,
    ErrorCode::BadRelease,
];

fn code_index(code: ErrorCode) -> usize {
    CODES
        .iter()
        .position(|c| *c == code)
        .expect("every code is listed")
}

impl Metrics {
    /// Counts one well-formed client message.
    pub fn message(&self, msg: &ClientMsg) {
        if let Some(i) = ClientMsg::KINDS.iter().position(|k| *k == msg.kind()) {
            self.messages[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts one error reply.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code_index(code)].fetch_add(1, Relaxed);
    }

    /// Renders every counter in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "broker_peers",
            "gauge",
            "Connected peers.",
            self.peers.load(Relaxed),
        );
        one(
            "broker_addresses",
            "gauge",
            "Addresses with at least one holder.",
            self.addresses.load(Relaxed),
        );
        one(
            "broker_ws_bytes_in_total",
            "counter",
            "Bytes of WebSocket text frames received.",
            self.ws_bytes_in.load(Relaxed),
        );
        one(
            "broker_ws_bytes_out_total",
            "counter",
            "Bytes of WebSocket text frames sent.",
            self.ws_bytes_out.load(Relaxed),
        );
        one(
            "broker_relayed_total",
            "counter",
            "Handshake payloads relayed between peers.",
            self.relayed.load(Relaxed),
        );
        one(
            "broker_introductions_total",
            "counter",
            "Holders introduced to wanters.",
            self.introductions.load(Relaxed),
        );
        one(
            "broker_ready_offers_total",
            "counter",
            "Introductions that carried the holder's ready offer.",
            self.ready_offers.load(Relaxed),
        );
        one(
            "broker_queue_drops_total",
            "counter",
            "Peers disconnected for a full outbound queue.",
            self.queue_drops.load(Relaxed),
        );
        one(
            "broker_refused_http_total",
            "counter",
            "Plain HTTP connections or requests refused at the per-address cap.",
            self.refused_http.load(Relaxed),
        );
        one(
            "broker_http_header_timeouts_total",
            "counter",
            "HTTP connections whose request headers took too long (408).",
            self.http_header_timeouts.load(Relaxed),
        );
        one(
            "broker_http_idle_closes_total",
            "counter",
            "HTTP connections closed idle between requests or not reading a response.",
            self.http_idle_closes.load(Relaxed),
        );
        one(
            "broker_refused_relays_total",
            "counter",
            "Relayed signals refused: the recipient had not read the sender's share of its queue.",
            self.refused_relays.load(Relaxed),
        );
        one(
            "broker_idle_drops_total",
            "counter",
            "Peers disconnected for answering no ping in time (dead or half-open).",
            self.idle_drops.load(Relaxed),
        );
        one(
            "broker_flood_drops_total",
            "counter",
            "Peers disconnected for flooding past the message rate limit.",
            self.flood_drops.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP broker_refused_upgrades_total WebSocket upgrades refused, by reason.\n\
             # TYPE broker_refused_upgrades_total counter\n\
             broker_refused_upgrades_total{{reason=\"origin\"}} {}\n\
             broker_refused_upgrades_total{{reason=\"capacity\"}} {}\n\
             broker_refused_upgrades_total{{reason=\"per_address\"}} {}",
            self.refused_origin.load(Relaxed),
            self.refused_capacity.load(Relaxed),
            self.refused_per_address.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP broker_messages_total Client messages handled, by type.\n\
             # TYPE broker_messages_total counter"
        );
        for (kind, n) in ClientMsg::KINDS.iter().zip(&self.messages) {
            let _ = writeln!(
                out,
                "broker_messages_total{{type=\"{kind}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP broker_errors_total Error replies by reason.\n# TYPE broker_errors_total counter");
        for code in CODES {
            let name = serde_json::to_value(code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "broker_errors_total{{code=\"{name}\"}} {}",
                self.errors[code_index(code)].load(Relaxed)
            );
        }
        out
    }
}
