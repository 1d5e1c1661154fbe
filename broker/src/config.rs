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
    /// Messages queued for one peer before it counts as too slow and is
    /// disconnected.
    pub outbox_capacity: usize,
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
    /// The ICE servers for `peer`'s welcome: the configured ones, plus TURN
    /// with credentials minted for this peer.
    pub fn ice_servers_for(&self, peer: PeerId) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        servers.extend(self.turn.as_ref().map(|t| t.ice_server(peer)));
        servers
    }

    /// Whether a browser page from `origin` may open a WebSocket on a
    /// broker reached as `host` (the request's `Host` header).
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        let same_site = origin
            .split_once("://")
            .is_some_and(|(_, authority)| host.is_some_and(|h| authority.eq_ignore_ascii_case(h)));
        same_site
            || self
                .allowed_origins
                .iter()
                .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            www: PathBuf::from("www"),
            ice_servers: Vec::new(),
            turn: None,
            allowed_origins: Vec::new(),
            max_connections: 10_000,
            max_connections_per_address: 256,
            trusted_proxies: Vec::new(),
            max_holdings: 1024,
            max_wants: 256,
            outbox_capacity: 256,
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
        let mut c = Config::default();
        assert!(c.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(c.origin_allowed("https://Share.Example", Some("share.example")));
        assert!(!c.origin_allowed("https://evil.example", Some("share.example")));
        assert!(!c.origin_allowed("null", Some("share.example")));
        assert!(!c.origin_allowed("https://share.example", None));
        c.allowed_origins = vec!["https://app.example/".into()];
        assert!(c.origin_allowed("https://app.example", Some("share.example")));
        assert!(!c.origin_allowed("http://app.example", Some("share.example")));
        c.allowed_origins = vec!["*".into()];
        assert!(c.origin_allowed("https://evil.example", Some("share.example")));
    }
}
