//! Broker settings. `main.rs` fills them from flags and environment.

use std::path::PathBuf;

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
        }
    }
}
