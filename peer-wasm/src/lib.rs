//! The browser peer, compiled to WebAssembly.
//!
//! * [`api`]: the exported JavaScript API (`Peer`).
//! * `peer`: state and reactions to the broker, other peers and the clock,
//!   in parts (signaling, ready offers, links, serving, fetching, clock);
//!   the decisions themselves are `protocol::download` and
//!   `protocol::serve`, tested natively.
//! * `broker`, `rtc`: thin wrappers over `WebSocket` and
//!   `RTCPeerConnection`/`RTCDataChannel` that own their listeners.
//! * `arrivals`: chunks in transit, kept in JavaScript memory.
//! * `store`: content held and served, and where its bytes live.
//! * `site`: `fetchUrl`, a site's listed files from peers and the origin.
//! * `signature`: Ed25519 signatures of sites' releases, with WebCrypto.
//! * `follow`: `followSite`, a site's signed releases checked and applied.
//! * `disk`: the disk store for big content (origin private file system,
//!   written and read by the worker in `disk_worker.js`).
//! * `hashing`: SHA-256 with WebCrypto or in wasm, and describing a shared
//!   file a chunk at a time.
//! * `events`: events for the page.
//! * `error`: the one error type for browser calls.
//! * `warm_up`: a dry run of the receive path, so its code is compiled
//!   before content arrives.
//! * `browser_tests`: wasm-bindgen tests, run in headless Chromium.

pub mod api;
mod arrivals;
mod broker;
mod disk;
mod error;
mod events;
mod follow;
mod hashing;
mod peer;
mod rtc;
mod signature;
mod site;
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
