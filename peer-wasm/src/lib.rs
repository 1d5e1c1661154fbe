//! The browser peer, compiled to WebAssembly.
//!
//! * [`api`]: the exported JavaScript API (`Peer`).
//! * `peer`: state and reactions to the broker, other peers and the clock;
//!   the transfer logic itself is `protocol::download`, tested natively.
//! * `broker`, `rtc`: thin wrappers over `WebSocket` and
//!   `RTCPeerConnection`/`RTCDataChannel` that own their listeners.
//! * `store`: content held and served, and where its bytes live.
//! * `hashing`: describing a shared file a chunk at a time.
//! * `events`: events for the page.

pub mod api;
mod arrivals;
mod broker;
mod disk;
mod error;
mod events;
mod hashing;
mod peer;
mod rtc;
mod store;
mod warm_up;

use wasm_bindgen::prelude::*;

/// Runs when the module loads: panics show up in the console with a trace.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

#[cfg(all(test, target_arch = "wasm32"))]
mod browser_tests;
