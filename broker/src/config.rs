//! Broker settings. `main.rs` fills them from flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use protocol::{IceServer, PeerId};

use crate::turn::Turn;

/// Settings for one broker.
#[derive(Clone, Debug)]
pub struct Config {
    /// Folder with `index.html`, the scripts and the built wasm package.
    pub www: PathBuf,
    /// ICE servers handed to every peer in its welcome.
    pub ice_servers: Vec<IceServer>,
    /// TURN servers whose credentials are minted per peer.
    pub turn: Option<Turn>,
    /// Page origins (e.g. `https://example.org`) allowed to open a broker
    /// WebSocket besides the broker's own; `*` allows any. Requests without
    /// an `Origin` header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// The origin browsers load the app from (e.g. `https://share.example`
    /// behind a TLS proxy). When set, it alone is the broker's own origin
    /// and `Host` is not trusted; see [`crate::origin`].
    pub public_origin: Option<crate::origin::Origin>,
    /// Longest time from a request's first byte to the end of its headers.
    pub http_header_timeout: Duration,
    /// Longest time an HTTP connection may wait for its next request.
    pub http_idle_timeout: Duration,
    /// Most plain HTTP connections open at once from one address group
    /// ([`crate::admission::AddressGroup`]).
    pub max_http_connections_per_address: usize,
    /// Most WebSocket connections open at once.
    pub max_connections: usize,
    /// Most WebSocket connections open at once from one client address.
    pub max_connections_per_address: usize,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers name the
    /// client; such headers from anyone else are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Most addresses one peer may hold at once.
    pub max_holdings: usize,
    /// Most addresses one peer may want at once.
    pub max_wants: usize,
    /// A peer's own messages (replies, introductions) queued before it
    /// counts as too slow and is disconnected. Signals relayed to it from
    /// other peers have a pool of the same size; past it they are refused
    /// to their senders.
    pub outbox_capacity: usize,
    /// The same in bytes.
    pub outbox_bytes: usize,
    /// Signals from one sender queued for one recipient before more are
    /// refused to the sender (`peer_busy`): what others send costs them,
    /// never the recipient.
    pub sender_share: usize,
    /// The same in bytes.
    pub sender_share_bytes: usize,
    /// Holdings and wants of all the peers of one client address group
    /// together (each costs the broker about 325 bytes).
    pub max_registrations_per_address: usize,
    /// How often the broker pings each peer. Also keeps proxies in front
    /// of the broker (e.g. nginx's 60 s `proxy_read_timeout`) from closing
    /// idle connections.
    pub ping_interval: Duration,
    /// A peer that sends nothing (not even a pong) for this long is
    /// dropped: its connection is dead or half-open.
    pub idle_timeout: Duration,
    /// Messages per second one connection may send, on average...
    pub message_rate: u32,
    /// ...and in a burst (e.g. re-announcing everything after a reconnect).
    /// A peer that keeps sending past the limit is disconnected.
    pub message_burst: u32,
}

impl Config {
    /// What one peer's outbound queue may hold.
    pub fn outbox_limits(&self) -> crate::registry::Limits {
        crate::registry::Limits {
            messages: self.outbox_capacity,
            bytes: self.outbox_bytes,
            sender_messages: self.sender_share,
            sender_bytes: self.sender_share_bytes,
        }
    }

    /// The ICE servers for `peer`'s welcome: the configured ones, plus TURN
    /// with credentials minted for this peer.
    pub fn ice_servers_for(&self, peer: PeerId) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        servers.extend(self.turn.as_ref().map(|t| t.ice_server(peer)));
        servers
    }

    /// Whether a browser page from `origin` may open a WebSocket on a
    /// broker reached as `reached` (see [`crate::origin`]).
    pub fn origin_allowed(
        &self,
        origin: &str,
        reached: &crate::origin::Reached,
    ) -> Result<(), crate::origin::Refusal> {
        crate::origin::check(
            origin,
            reached,
            self.public_origin.as_ref(),
            &self.allowed_origins,
        )
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            www: PathBuf::from("www"),
            ice_servers: Vec::new(),
            turn: None,
            allowed_origins: Vec::new(),
            public_origin: None,
            http_header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
            max_http_connections_per_address: 64,
            max_connections: 10_000,
            max_connections_per_address: 256,
            trusted_proxies: Vec::new(),
            max_holdings: 1024,
            max_wants: 256,
            outbox_capacity: 256,
            outbox_bytes: 1 << 20,
            sender_share: 32,
            sender_share_bytes: 64 << 10,
            max_registrations_per_address: crate::registry::MAX_REGISTRATIONS_PER_ADDRESS,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(45),
            message_rate: 100,
            message_burst: 2_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        use crate::origin::Reached;
        let at = |scheme, host: &str| Reached {
            scheme,
            host: Some(host.to_owned()),
        };
        let mut c = Config::default();
        let local = at("http", "127.0.0.1:8080");
        assert!(c.origin_allowed("http://127.0.0.1:8080", &local).is_ok());
        assert!(c.origin_allowed("https://127.0.0.1:8080", &local).is_err());
        // Without a public origin a domain-name Host is not trusted.
        let named = at("https", "share.example");
        assert!(c.origin_allowed("https://share.example", &named).is_err());
        assert!(c.origin_allowed("null", &named).is_err());
        c.public_origin = Some("https://share.example".parse().unwrap());
        assert!(c.origin_allowed("https://Share.Example", &named).is_ok());
        assert!(c.origin_allowed("http://share.example", &named).is_err());
        assert!(c.origin_allowed("https://evil.example", &named).is_err());
        c.allowed_origins = vec!["https://app.example/".into()];
        assert!(c.origin_allowed("https://app.example", &named).is_ok());
        assert!(c.origin_allowed("http://app.example", &named).is_err());
        c.allowed_origins = vec!["*".into()];
        assert!(c.origin_allowed("https://evil.example", &named).is_ok());
    }
}
