//! Files for the file-sharing tests and benches: the same pseudo-random
//! bytes made natively (to know their SHA-256 independently of any page)
//! and in a page (to share them through the app's file picker or by
//! dropping them), plus the page-side checks.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::Visitor;

/// Longest wait for anything that moves a whole file between pages on a
/// loaded 2-core machine.
pub const FILE_TIMEOUT: Duration = Duration::from_secs(300);

/// `len` bytes (a multiple of 4) from xorshift32 seeded with `seed`: the
/// bytes [`MAKE_FILE`] makes in a page.
pub fn content(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len / 4 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Page script: `window.makeFile(seed, len, name, type)` returns a `File`
/// with the bytes of [`content`], made in 16 MiB parts so that the page
/// never needs one buffer as big as the file.
pub const MAKE_FILE: &str = r#"
window.makeFile = (seed, len, name, type) => {
  const PART = 16 << 20;
  const parts = [];
  let x = (seed | 1) >>> 0;
  for (let at = 0; at < len; at += PART) {
    const words = new Uint32Array(Math.min(PART, len - at) / 4);
    for (let i = 0; i < words.length; i++) {
      x = (x ^ (x << 13)) >>> 0;
      x = (x ^ (x >>> 17)) >>> 0;
      x = (x ^ (x << 5)) >>> 0;
      words[i] = x;
    }
    parts.push(new Blob([words]));
  }
  return new File(parts, name, { type });
};
"#;

/// A file of [`content`] as the tests share it.
#[derive(Clone, Copy, Debug)]
pub struct TestFile {
    /// Seed of its bytes.
    pub seed: u32,
    /// Length in bytes (a multiple of 4).
    pub len: usize,
    /// File name.
    pub name: &'static str,
}

impl TestFile {
    /// SHA-256 (hex) of its bytes, made natively.
    pub fn sha256(&self) -> String {
        sha256_hex(&content(self.seed, self.len))
    }

    /// Shares it from `v`, which shows `/` (see [`share`]); returns the
    /// link path.
    pub async fn share(&self, v: &Visitor, via: Via) -> String {
        share(
            v,
            self.seed,
            self.len,
            self.name,
            "application/octet-stream",
            via,
        )
        .await
    }
}

/// How a test hands a file to the page.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// Through `#file-input`, as if chosen in the file picker.
    Picker,
    /// Dropped onto `#drop-zone`.
    Drop,
}

/// On `/`: makes the file of [`content`] in the page, shares it through the
/// UI, waits until the page holds it and returns its link path.
pub async fn share(v: &Visitor, seed: u32, len: usize, name: &str, ty: &str, via: Via) -> String {
    v.wait_visible("#file-input").await;
    v.js(MAKE_FILE, vec![]).await;
    let script = match via {
        Via::Picker => {
            "const [seed, len, name, type] = arguments;
             const dt = new DataTransfer();
             dt.items.add(window.makeFile(seed, len, name, type));
             const input = document.querySelector('#file-input');
             input.files = dt.files;
             input.dispatchEvent(new Event('change', { bubbles: true }));"
        }
        Via::Drop => {
            "const [seed, len, name, type] = arguments;
             const dt = new DataTransfer();
             dt.items.add(window.makeFile(seed, len, name, type));
             const zone = document.querySelector('#drop-zone');
             for (const kind of ['dragenter', 'dragover', 'drop']) {
               zone.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true }));
             }"
        }
    };
    v.js(
        script,
        vec![json!(seed), json!(len), json!(name), json!(ty)],
    )
    .await;
    wait_shared(v).await
}

/// Waits until the page holds the file it was given and returns its link
/// path, `/<address>`.
pub async fn wait_shared(v: &Visitor) -> String {
    wait_held(v).await;
    let path = v.path().await;
    assert!(
        crate::is_content_path(&path),
        "{}: after sharing a file the path should be /<address>, got {path:?}",
        v.name()
    );
    path
}

/// Waits until the page holds its content (downloaded and verified, or
/// shared).
pub async fn wait_held(v: &Visitor) {
    v.wait_attr_in_within("#status", "data-state", &["holding"], FILE_TIMEOUT)
        .await;
}

/// Page script: `#progress` as a fraction (0 while hidden).
const PROGRESS: &str =
    "const p = document.querySelector('#progress'); return p.hidden ? 0 : p.value;";

/// `#progress` as a fraction (0 while hidden or unknown).
pub async fn progress(v: &Visitor) -> f64 {
    v.js(PROGRESS, vec![]).await.as_f64().unwrap_or(0.0)
}

/// Waits until `#progress` reaches `fraction`.
pub async fn wait_progress(v: &Visitor, fraction: f64) {
    v.poll(
        &format!("#progress >= {fraction}"),
        FILE_TIMEOUT,
        PROGRESS,
        vec![],
        |p| p.as_f64().filter(|p| *p >= fraction).map(|_| ()),
    )
    .await;
}

/// SHA-256 (hex) of what the page's `#download` link saves, read back in
/// the page.
pub async fn saved_sha256(v: &Visitor) -> String {
    let script = "const done = arguments[arguments.length - 1];
        const a = document.querySelector('#download');
        fetch(a.href).then((r) => r.arrayBuffer()).then((b) => crypto.subtle.digest('SHA-256', b))
          .then((d) => done([...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, '0')).join('')),
                (e) => done('error: ' + e));";
    match v.client().execute_async(script, vec![]).await {
        Ok(Value::String(hex)) => hex,
        other => panic!("{}: cannot hash the download: {other:?}", v.name()),
    }
}

/// Bytes in the page's disk store (every file under `peerpage/` in the
/// origin private file system).
pub async fn bytes_on_disk(v: &Visitor) -> u64 {
    let script = "const done = arguments[arguments.length - 1];
        const walk = async (dir) => {
          let total = 0;
          for await (const entry of dir.values()) {
            total += entry.kind === 'file' ? (await entry.getFile()).size : await walk(entry);
          }
          return total;
        };
        navigator.storage.getDirectory()
          .then((root) => root.getDirectoryHandle('peerpage'))
          .then(walk)
          .then(done, (e) => done('error: ' + e));";
    match v.client().execute_async(script, vec![]).await {
        Ok(Value::Number(n)) => n.as_u64().unwrap_or(0),
        other => panic!("{}: cannot list the disk store: {other:?}", v.name()),
    }
}

/// The page's `#file-info` data: (name, size, type).
pub async fn file_info(v: &Visitor) -> (String, u64, String) {
    let info = v
        .js(
            "const el = document.querySelector('#file-info');
             return [el.dataset.name, Number(el.dataset.size), el.dataset.type];",
            vec![],
        )
        .await;
    (
        info[0].as_str().unwrap_or_default().to_owned(),
        info[1].as_u64().unwrap_or(0),
        info[2].as_str().unwrap_or_default().to_owned(),
    )
}

/// Shares, from `v`'s peer, a collection listing `entries` exactly as
/// given (`{address, name, size, type}` objects, or anything else: a
/// collection's author may write what it likes); returns its link path.
pub async fn share_collection(v: &Visitor, entries: Value) -> String {
    let address = v
        .js(
            "const json = new TextEncoder().encode(JSON.stringify({ files: arguments[0] }));
             return window.peer.share(json, 'application/vnd.peerpage.collection+json');",
            vec![entries],
        )
        .await;
    format!("/{}", address.as_str().expect("share returns the address"))
}

/// SHA-256 (hex) of the content `address` as `v`'s peer holds it, read
/// back in the page from `peer.fetchBlob` (which resolves at once with
/// held content; no `fetch` of a `blob:` URL needed).
pub async fn held_sha256(v: &Visitor, address: &str) -> String {
    let script = "const [address, done] = arguments;
        window.peer.fetchBlob(address).then((b) => b.arrayBuffer())
          .then((b) => crypto.subtle.digest('SHA-256', b))
          .then((d) => done([...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, '0')).join('')),
                (e) => done('error: ' + e));";
    match v
        .client()
        .execute_async(script, vec![serde_json::json!(address)])
        .await
    {
        Ok(Value::String(hex)) => hex,
        other => panic!("{}: cannot hash what it holds: {other:?}", v.name()),
    }
}
