//! `peer.fetchUrl` driven from a test: a fetch started in a page, read as
//! a stream and hashed there, and what came of it.

use serde_json::{json, Value};

use crate::Visitor;

/// Starts `peer.fetchUrl(url, init)` in the page as `window.fetches[name]`,
/// which resolves with `{status, type, length, hash, error, errorName, n,
/// ms, fromOrigin, fromPeers}` (the body read with a reader, as a stream
/// is; `ms` from the call to the body's last byte; the byte counts are the
/// peer's stats once it ended). `init.abortAfter` aborts the fetch once
/// that many bytes were read; `init.plain` makes it a plain `fetch`.
const START: &str = "const [name, url, init] = arguments;
  window.fetches = window.fetches || {};
  window.fetches[name] = (async () => {
    while (!window.peer) await new Promise((ok) => setTimeout(ok, 20));
    const controller = new AbortController();
    const t0 = performance.now();
    const r = init.plain
      ? await fetch(url, { signal: controller.signal })
      : await window.peer.fetchUrl(url, { ...init, signal: controller.signal });
    let hash = null, error = null, errorName = null, n = 0, ms = null;
    try {
      const reader = r.body.getReader();
      const parts = [];
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        n += value.length;
        if (init.abortAfter !== undefined && n >= init.abortAfter) controller.abort();
      }
      ms = performance.now() - t0;
      const buf = await new Blob(parts).arrayBuffer();
      const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
      hash = Array.from(d).map((b) => b.toString(16).padStart(2, '0')).join('');
    } catch (e) { error = String(e && e.message || e); errorName = e && e.name; }
    const s = window.peer.stats();
    return { status: r.status, type: r.headers.get('content-type'),
             length: r.headers.get('content-length'), hash, error, errorName, n, ms,
             fromOrigin: s.bytesFromOrigin, fromPeers: s.bytesFromPeers };
  })().catch((e) => ({ thrown: String(e && e.message || e) }));
  return true;";

/// Starts a fetch named `name` (see [`START`]).
pub async fn start(v: &Visitor, name: &str, url: &str, init: Value) {
    v.js(START, vec![json!(name), json!(url), init]).await;
}

/// Waits for the fetch named `name` and returns what came of it; panics if
/// `fetchUrl` itself threw.
pub async fn finish(v: &Visitor, name: &str) -> Value {
    let got = v
        .client()
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.fetches[arguments[0]].then(done);",
            vec![json!(name)],
        )
        .await
        .unwrap_or_else(|e| panic!("{}: fetch {name}: {e}", v.name()));
    assert!(
        got.get("thrown").is_none(),
        "{}: fetchUrl threw: {got}",
        v.name()
    );
    got
}

/// `peer.fetchUrl(url, init)` to the end.
pub async fn fetch_url(v: &Visitor, url: &str, init: Value) -> Value {
    start(v, "once", url, init).await;
    finish(v, "once").await
}

/// Payload bytes received so far for the fetch of `address`, from its
/// status events: (from peers, from the origin).
pub async fn received(v: &Visitor, address: &str) -> (u64, u64) {
    let got = v
        .js(
            "const last = (window.events || []).filter((e) => e.type === 'status'
               && e.address === arguments[0] && e.fromPeers !== undefined).pop();
             return last ? [last.fromPeers, last.fromOrigin] : [0, 0];",
            vec![json!(address)],
        )
        .await;
    (got[0].as_u64().unwrap_or(0), got[1].as_u64().unwrap_or(0))
}

/// The warnings the page's peer reported.
pub async fn warnings(v: &Visitor) -> Vec<String> {
    let got = v
        .js(
            "return (window.events || []).filter((e) => e.type === 'warning').map((e) => e.message);",
            vec![],
        )
        .await;
    got.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}
