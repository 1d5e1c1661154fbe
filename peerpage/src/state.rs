//! What the last run hashed (`.peerpage/state.json`): a file whose size
//! and modification time are as they were keeps its address unhashed.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::path::Path;
use std::time::UNIX_EPOCH;

use protocol::ContentId;
use serde::{Deserialize, Serialize};

/// The state file's name in the manifest folder.
pub const STATE_FILE: &str = "state.json";

/// One file as last hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub size: u64,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
    pub media_type: String,
    pub address: ContentId,
}

impl Seen {
    /// Whether `meta` is still the file this was made of.
    pub fn matches(&self, meta: &Metadata) -> bool {
        self.size == meta.len() && Some(self.mtime_ns) == mtime_ns(meta)
    }
}

/// By path under the folder (`/`-separated).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub files: BTreeMap<String, Seen>,
}

impl State {
    /// The state in `manifests`, or none if missing or unreadable (then
    /// everything is hashed again: it is only a cache).
    pub fn load(manifests: &Path) -> State {
        std::fs::read(manifests.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, manifests: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("the state always serializes");
        crate::index_dir::write_atomically(&manifests.join(STATE_FILE), &bytes)
    }
}

/// A file's modification time, if the platform has one.
pub fn mtime_ns(meta: &Metadata) -> Option<u128> {
    let t = meta.modified().ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_nanos())
}
