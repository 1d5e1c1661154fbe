// The bundled page: a thin UI over the peer's JS API (see README).
// Content is only ever put on screen with textContent, never as HTML.
import init, { Peer } from "/pkg/peer_wasm.js";

const ADDRESS = /^\/([0-9a-f]{64})$/;
// `?relay` on any app URL: WebRTC over TURN relays only, to check a TURN
// setup. Kept in the share link, so whoever opens it relays too.
const RELAY = new URLSearchParams(location.search).has("relay");
const RELAY_HINT = "relays only: is the TURN server reachable, and does its secret match the broker's?";
const $ = (id) => document.getElementById(id);

await init();
// index.html may have opened the broker socket already (on a share link).
const early = window.earlySocket;
delete window.earlySocket;
const peer = early
  ? Peer.fromSocket(early.socket, early.received, early.wanted, RELAY, early.connection)
  : new Peer(undefined, RELAY);
// The app may start before the document is parsed (see index.html).
if (document.readyState === "loading") {
  await new Promise((done) => document.addEventListener("DOMContentLoaded", done, { once: true }));
}
window.peer = peer; // handy in the console, and used by the browser tests
if (RELAY) document.querySelector("a.brand").search = "?relay";

let current = null; // the address this page shows

peer.onevent = (e) => {
  if (e.type === "holders" && e.address === current) showHolders(e.count);
  if (e.type === "status" && e.address === current) showProgress(e);
  if (e.type === "warning" && e.address === current) log(RELAY ? `${e.message} (${RELAY_HINT})` : e.message);
};

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function showHolders(count) {
  const el = $("holders");
  el.dataset.count = String(count);
  el.textContent = count === 1 ? "1 browser holds this page" : `${count} browsers hold this page`;
}

function log(message) {
  const li = document.createElement("li");
  li.textContent = message;
  $("log").append(li);
}

const size = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

function showProgress(e) {
  switch (e.state) {
    case "looking":
      return setStatus("looking", "Looking for browsers that hold this page…");
    case "gone":
      return setStatus("gone", "This page is gone: nobody holds it any more. If someone shares the same content again, it will appear here by itself.");
    case "connecting":
      return setStatus("connecting", "Connecting to a browser that holds it…");
    case "receiving": {
      const bar = $("progress");
      if (e.total > 0) {
        bar.hidden = false;
        bar.value = e.received / e.total;
      }
      const from = e.sources === 1 ? "1 browser" : `${e.sources} browsers`;
      return setStatus("receiving", e.total > 0 ? `Receiving ${size(e.received)} of ${size(e.total)} from ${from}…` : `Receiving from ${from}…`);
    }
    case "verified":
      return setStatus("verified", "Verified: the content matches its address.");
  }
}

function show(address, bytes) {
  const meta = peer.manifest(address) || { type: "application/octet-stream" };
  $("progress").hidden = true;
  if (meta.type.startsWith("text/")) {
    $("viewer").textContent = new TextDecoder().decode(bytes);
  } else {
    const link = $("download");
    link.href = URL.createObjectURL(new Blob([bytes], { type: meta.type }));
    link.download = meta.name || "download";
    link.textContent = `Download ${meta.name || "file"} (${size(bytes.length)})`;
    link.hidden = false;
  }
  performance.mark("content-shown");
}

function holding(address) {
  setStatus("holding", "You hold this page: keep this tab open and others can load it from you.");
  const count = peer.holders(address);
  if (count != null) showHolders(count);
  $("copy-link").hidden = false;
}

function openPage(address) {
  current = address;
  $("compose").hidden = true;
  $("page").hidden = false;
  $("viewer").textContent = "";
  $("log").textContent = "";
  if (RELAY) log("Relays only (?relay): every connection goes through a TURN server the broker names.");
  setStatus("looking", "Looking for browsers that hold this page…");
  peer.fetch(address).then(
    (bytes) => {
      if (current !== address) return;
      show(address, bytes);
      holding(address);
    },
    (err) => current === address && setStatus("gone", `Could not load this page: ${err.message || err}`),
  );
}

function compose() {
  current = null;
  $("page").hidden = true;
  $("compose").hidden = false;
  $("editor").focus();
}

$("share").addEventListener("click", () => {
  const text = $("editor").value;
  if (!text) {
    $("compose-error").textContent = "Write something first: an empty page cannot be shared.";
    return;
  }
  $("compose-error").textContent = "";
  const bytes = new TextEncoder().encode(text);
  const address = peer.share(bytes, "text/plain; charset=utf-8");
  history.pushState(null, "", `/${address}${RELAY ? "?relay" : ""}`);
  current = address;
  $("compose").hidden = true;
  $("page").hidden = false;
  $("viewer").textContent = text;
  holding(address);
});

$("copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(location.href);
    $("copy-link").textContent = "Link copied";
  } catch {
    // Clipboard access can be refused (e.g. plain http); show the link.
    prompt("Copy this link:", location.href);
  }
});

function route() {
  const m = location.pathname.match(ADDRESS);
  if (m) openPage(m[1]);
  else compose();
}

window.addEventListener("popstate", route);
// A page frozen in the back/forward cache keeps its sockets open and would
// still count as a holder it cannot serve: leave properly, and start afresh
// if the browser brings the page back.
window.addEventListener("pagehide", () => peer.close());
window.addEventListener("pageshow", (e) => e.persisted && location.reload());
route();
