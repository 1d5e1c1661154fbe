//! Real-browser end-to-end harness for the page-sharing app.
//!
//! Every simulated visitor is its own headless Chromium process, driven over
//! WebDriver (one `chromedriver`, one session per [`Visitor`]), talking to a
//! real `broker` process ([`Broker`]). Content must travel browser to browser
//! over an RTCDataChannel; the broker only relays the handshake.
//!
//! * [`netns`]: every browser test (and the benchmark) re-executes itself in
//!   a fresh network namespace, see there for why.
//! * [`broker`], [`chromedriver`]: child-process guards, killed on drop.
//! * [`visitor`]: one browser with polling helpers that panic with the
//!   page's `#status` when a wait times out.
//! * [`text`]: unique random text to share.
//! * [`files`]: files made alike natively and in pages, and page-side
//!   checks of file transfers.
//! * [`hostile`]: a page's connection counts, and an attacker flooding a
//!   holder with offers.
//! * [`nginx`]: nginx terminating TLS in front of the broker, with the
//!   operators' `deploy/nginx/peerpage.conf`.
//! * [`turn`]: coturn as a child process, for the relay-only test.
//!
//! Run: `just build-wasm` (for `www/pkg`) and `cargo build -p broker` (or
//! `just test`, which builds both), then `cargo test -p tests`. Needs root
//! (for `unshare`), `/usr/bin/chromedriver` and Chromium. The benchmarks:
//! `just bench`, i.e. `cargo run --release -p tests --bin bench_open` and
//! `--bin bench_files`.
//!
//! Environment: `BROKER_BIN`, `CHROMEDRIVER`, `CHROME_BIN` override the
//! binaries; `CHROMEDRIVER_LOG=<file>` keeps chromedriver's verbose log;
//! `P2P_IN_NETNS=1` skips the namespace; `NGINX` overrides nginx's binary.

use std::path::PathBuf;
use std::time::Duration;

pub mod broker;
pub mod chromedriver;
pub mod files;
pub mod hostile;
pub mod http;
pub mod netns;
pub mod nginx;
pub mod run;
pub mod site_fetch;
pub mod site_origin;
pub mod text;
pub mod turn;
pub mod visitor;

pub use broker::Broker;
pub use chromedriver::ChromeDriver;
pub use nginx::Nginx;
pub use turn::TurnServer;
pub use visitor::Visitor;

/// Timeout for anything a page should do by itself (connect, receive,
/// verify, react to other visitors). Generous on purpose: a loaded 2-core
/// machine running several Chromium processes is slow, and the tests check
/// behaviour, never speed.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Polling interval of every wait.
pub const POLL: Duration = Duration::from_millis(25);

/// The app's static directory (`/work/main/www`), checked to contain the
/// built wasm package.
pub fn www_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www");
    let dir = dir.canonicalize().unwrap_or(dir);
    anyhow::ensure!(
        dir.join("index.html").is_file(),
        "{} has no index.html",
        dir.display()
    );
    anyhow::ensure!(
        dir.join("pkg").is_dir(),
        "{} has no pkg/: build the wasm peer first (`just build`)",
        dir.display()
    );
    Ok(dir)
}

/// The app with the peer built with its test hooks
/// (`just build-wasm-test-hooks`), for tests that need a dishonest holder.
pub fn test_www_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-www");
    anyhow::ensure!(
        dir.join("pkg").is_dir() && dir.join("index.html").is_file(),
        "{} is missing: build it with `just build-wasm-test-hooks`",
        dir.display()
    );
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// The plain-JS baseline pages of the benchmark (`tests/floor`).
pub fn floor_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("floor")
}

/// Whether `path` is a share link path: `/` followed by 64 lowercase hex.
pub fn is_content_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn content_paths() {
        assert!(is_content_path(&format!("/{}", "a1".repeat(32))));
        assert!(!is_content_path(&format!("/{}", "A1".repeat(32))));
        assert!(!is_content_path(&format!("/{}", "a".repeat(63))));
        assert!(!is_content_path("/"));
        assert!(!is_content_path(&"a".repeat(65)));
    }
}
