//! Hostile peers for the browser tests: what a page's peer says about its
//! connections (`window.peer.stats()`), and an attacker that floods a
//! holder with offers from a plain-JS page, over the broker's real wire
//! format, with a real SDP made by the attacker's Chromium.

use std::time::Duration;

use serde_json::{json, Value};

use crate::Visitor;

/// A page peer's connection counts (`window.peer.stats()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStats {
    /// `RTCPeerConnection`s it made.
    pub connections_made: u64,
    /// Offers to serve it refused without making a connection.
    pub offers_refused: u64,
    /// Serving connections it has now.
    pub serving_links: u64,
}

/// `v`'s connection counts.
pub async fn link_stats(v: &Visitor) -> LinkStats {
    let s = v
        .js(
            "const s = window.peer.stats();
             return [s.connectionsMade, s.offersRefused, s.servingLinks].map(Number);",
            vec![],
        )
        .await;
    let n = |i: usize| {
        s[i].as_f64()
            .unwrap_or_else(|| panic!("{}: peer.stats() lacks link counts: {s}", v.name()))
            as u64
    };
    LinkStats {
        connections_made: n(0),
        offers_refused: n(1),
        serving_links: n(2),
    }
}

/// What the victim answered to a flood of offers.
#[derive(Debug)]
pub struct FloodReplies {
    /// The victim's peer id, from the broker's introduction.
    pub victim: String,
    /// Lanes whose offer got an answer (a connection was made for it).
    pub answered: Vec<u8>,
    /// Refusals: lane and reason.
    pub byes: Vec<(u8, String)>,
    /// Error codes the broker sent the attacker.
    pub errors: Vec<String>,
}

/// Page script: one broker socket per entry of `plan`. The first wants
/// `address` and learns its holder from the introduction; then every
/// socket offers the holder a connection on each lane of its entry, in
/// turn, waiting for the answer or `bye` to each (at most 5 s: the
/// broker relays only a few unanswered offers per pair). Resolves with
/// every answer and `bye`.
const FLOOD: &str = r#"
const [address, plan, done] = arguments;
const pc = new RTCPeerConnection();
pc.createDataChannel("flood");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = { victim: null, answered: [], byes: [], errors: [] };
const socket = async () => {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.replies = 0;
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.introduce) out.victim = m.introduce.holder;
    if (m.error) { out.errors.push(m.error.code); ws.replies++; }
    const d = m.signal && m.signal.data;
    if (d && d.kind === "answer") { out.answered.push(d.lane || 0); ws.replies++; }
    if (d && d.kind === "bye") { out.byes.push([d.lane || 0, d.reason]); ws.replies++; }
  };
  await new Promise((r) => (ws.onopen = r));
  return ws;
};
const offer = async (ws, sdp, lanes) => {
  for (const lane of lanes) {
    const before = ws.replies;
    const data = { kind: "offer", sdp, content: address, lane };
    ws.send(JSON.stringify({ signal: { to: out.victim, data } }));
    const until = performance.now() + 5000;
    while (ws.replies === before && performance.now() < until) await sleep(10);
  }
};
(async () => {
  await pc.setLocalDescription(await pc.createOffer());
  const sdp = pc.localDescription.sdp;
  const sockets = await Promise.all(plan.map(socket));
  sockets[0].send(JSON.stringify({ want: { content: address } }));
  const introduced = performance.now() + 30000;
  while (!out.victim && performance.now() < introduced) await sleep(20);
  if (!out.victim) return done({ ...out, victim: "never introduced" });
  await Promise.all(sockets.map((ws, k) => offer(ws, sdp, plan[k])));
  sockets.forEach((ws) => ws.close());
  done(out);
})().catch((e) => done({ victim: String(e), answered: [], byes: [], errors: [] }));
"#;

/// From `attacker`'s page, floods the holder of `address` with offers:
/// one broker socket (one peer) per entry of `plan`, each offering on the
/// lanes listed (see [`FLOOD`]).
pub async fn flood_offers(attacker: &Visitor, address: &str, plan: &[Vec<u8>]) -> FloodReplies {
    let args = vec![json!(address), json!(plan)];
    let call = attacker.client().execute_async(FLOOD, args);
    let value: Value = match tokio::time::timeout(Duration::from_secs(300), call).await {
        Ok(Ok(v)) => v,
        other => panic!("{}: the flood script failed: {other:?}", attacker.name()),
    };
    let unreadable = || -> ! { panic!("{}: unreadable flood result {value}", attacker.name()) };
    let lane = |v: &Value| v.as_u64().map(|n| n as u8);
    let list = |key: &str| {
        value[key]
            .as_array()
            .cloned()
            .unwrap_or_else(|| unreadable())
    };
    let byes = list("byes")
        .iter()
        .map(|b| {
            let reason = b[1].as_str().map(str::to_owned);
            lane(&b[0]).zip(reason).unwrap_or_else(|| unreadable())
        })
        .collect();
    FloodReplies {
        victim: value["victim"]
            .as_str()
            .unwrap_or_else(|| unreadable())
            .to_owned(),
        answered: list("answered")
            .iter()
            .map(|a| lane(a).unwrap_or_else(|| unreadable()))
            .collect(),
        byes,
        errors: list("errors")
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect(),
    }
}
