//! Broker settings. `main.rs` fills them from flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use protocol::IceServer;

/// Settings for one broker.
#[derive(Clone, Debug)]
pub struct Config {
    /// Folder with `index.html`, the scripts and the built wasm package.
    pub www: PathBuf,
    /// ICE servers handed to every peer in its welcome.
    pub ice_servers: Vec<IceServer>,
    /// Most WebSocket connections open at once.
    pub max_connections: usize,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            www: PathBuf::from("www"),
            ice_servers: Vec::new(),
            max_connections: 10_000,
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
