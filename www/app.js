// The bundled page: a thin UI over the peer's JS API (see README).
// Content is only ever put on screen with textContent,
// or as an <img>/<audio>/<video> source, never as HTML. Names, types and
// messages from peers come made safe from the peer; what the page reads
// from content itself (a collection's entries) goes through safeText, the
// same rule (bidirectional and other invisible characters made visible).
// Relative: the broker serves this file in its release's folder
// (/r/<release>/app.js), and the wasm package must come from the same one.
import init, { Peer, safeText } from "./pkg/peer_wasm.js";

const ADDRESS = /^\/([0-9a-f]{64})$/;
const HEX = /^[0-9a-f]{64}$/;
const COLLECTION = "application/vnd.peerpage.collection+json";
// Image types the browser shows without running anything from them.
const IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/svg+xml"]);
// Text and SVG previews are read into the page whole: only small ones.
const INLINE_MAX = 2 << 20;
// A bigger "collection" is offered as a file rather than parsed.
const COLLECTION_MAX = 16 << 20;
const SPEED_WINDOW_MS = 2000;
// `?relay` on any app URL: WebRTC over TURN relays only, to check a TURN
// setup. Kept in the share link, so whoever opens it relays too.
const RELAY = new URLSearchParams(location.search).has("relay");
const QUERY = RELAY ? "?relay" : "";
const RELAY_HINT = "relays only: is the TURN server reachable, and does its secret match the broker's?";
// Content bigger than this is downloaded only once the user says yes:
// photos, documents and short clips stay under it and come without a
// question; a film would cost that much data and disk unasked. Only the
// first chunk (256 KiB as this app shares) comes before the answer.
// `?confirm-above=BYTES` lowers it (never raises it: a link's sender
// must not turn the question off).
const CONFIRM_ASKED = Number(new URLSearchParams(location.search).get("confirm-above") ?? NaN);
const CONFIRM_ABOVE = Math.min(100 << 20, CONFIRM_ASKED >= 0 ? CONFIRM_ASKED : Infinity);
const $ = (id) => document.getElementById(id);

const wasm = await init();
window.wasmMemory = wasm.memory; // benches and tests watch its size
// index.html may have opened the broker socket already (on a share link).
const early = window.earlySocket;
delete window.earlySocket;
const peer = early
  ? Peer.fromSocket(early.socket, early.received, early.wanted, RELAY, early.connection)
  : new Peer(undefined, RELAY);
// Before anything can arrive: the early socket's download too.
peer.confirmAbove = CONFIRM_ABOVE;
// A share link's download starts now, before the page can show anything;
// nothing re-sends its events, so keep them until the page is ready.
const queued = [];
peer.onevent = (e) => queued.push(e);
// The app may start before the document is parsed (see index.html).
if (document.readyState === "loading") {
  await new Promise((done) => document.addEventListener("DOMContentLoaded", done, { once: true }));
}
window.peer = peer; // handy in the console, and used by the browser tests
if (RELAY) document.querySelector("a.brand").search = "?relay";

let current = null; // the address this page shows
let meta = null; // its manifest ({size, type, name?}) once known
let visits = 0; // bumped on every view: late results of an old one are dropped
let finished = false; // the current content is shown and held
let started = null; // a fetchBlob that openPage started the download with
let adopted = early?.wanted; // whose download the early socket started
let samples = []; // [ms, bytes received] over the last ~2 s, for the speed
let preparing = null; // {name, label, before, total} while hashing files
let urls = []; // blob: URLs of the current view, revoked when it goes
let declined = false; // the user said no to downloading the current content

// The question before a big download, and the note over a collection's
// entries: made here, as index.html has no place for them.
const ask = Object.assign(document.createElement("div"), { id: "confirm", className: "actions", hidden: true });
const yes = Object.assign(document.createElement("button"), { id: "confirm-yes", type: "button", textContent: "Download" });
const no = Object.assign(document.createElement("button"), { id: "confirm-no", type: "button", className: "secondary", textContent: "Don't download" });
ask.append(yes, no);
const claims = Object.assign(document.createElement("p"), {
  id: "collection-note",
  className: "claim",
  hidden: true,
  textContent: "Names, sizes and types below are given by the sharer; each file is checked against its own link when you open it.",
});
$("file-info").after(ask);
$("collection").before(claims);

function onEvent(e) {
  if (e.type === "preparing") return preparing && showPreparing(e);
  if (e.address !== current) return;
  if (e.type === "holders") showHolders(e.count);
  if (e.type === "status" && !finished) {
    learn(current);
    showProgress(e);
  }
  if (e.type === "warning") log(RELAY ? `${e.message} (${RELAY_HINT})` : e.message);
}

function showConfirm(e) {
  // Name and type come made safe from the peer, the size verified.
  const what = e.name ? `“${e.name}”` : `This ${noun(meta)}`;
  setStatus("confirm", `${what} is ${size(e.total)}${e.mediaType ? ` (${e.mediaType})` : ""}. Download it?`);
  $("progress").hidden = true;
  ask.hidden = false;
  yes.focus();
}

yes.addEventListener("click", () => {
  ask.hidden = true;
  setStatus("receiving", "Receiving…");
  peer.confirm(current);
});

no.addEventListener("click", () => {
  ask.hidden = true;
  declined = true;
  peer.cancel(current);
  setStatus("declined", "Not downloaded. Reload this page to be asked again.");
});

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function showHolders(count) {
  const el = $("holders");
  el.dataset.count = String(count);
  el.textContent = `${count === 1 ? "1 browser holds" : `${count} browsers hold`} this ${noun(meta)}`;
}

function log(message) {
  const li = document.createElement("li");
  li.textContent = message;
  $("log").append(li);
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return i ? `${n.toFixed(1)} ${units[i]}` : `${Math.round(n)} B`;
}

function duration(s) {
  s = Math.ceil(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const plural = (n, one) => (n === 1 ? `1 ${one}` : `${n} ${one}s`);
// "text/plain; charset=utf-8" -> "text/plain"
const baseType = (type) => (type || "").split(";")[0].trim().toLowerCase();
// A text page (no name) is shown in #viewer, as it always was.
const isTextPage = (m) => !m.name && baseType(m.type).startsWith("text/");
const noun = (m) => (!m ? "page" : m.name ? "file" : baseType(m.type) === COLLECTION ? "collection" : isTextPage(m) ? "page" : "file");

function blobUrl(blob) {
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return url;
}

function dataUrl(blob) {
  return new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result);
    reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(blob);
  });
}

// Bytes per second over the last ~2 s of progress.
function speed(received) {
  const now = performance.now();
  samples.push([now, received]);
  // Keep one sample from before the window as its starting point.
  while (samples.length > 1 && samples[1][0] <= now - SPEED_WINDOW_MS) samples.shift();
  const [t0, b0] = samples[0];
  // Too short a span gives wild numbers.
  return now - t0 >= 300 ? ((received - b0) * 1000) / (now - t0) : 0;
}

function showProgress(e) {
  switch (e.state) {
    case "looking":
      return setStatus("looking", `Looking for browsers that hold this ${noun(meta)}…`);
    case "gone":
      return setStatus("gone", `This ${noun(meta)} is gone: nobody holds it any more. If someone shares the same content again, it will appear here by itself.`);
    case "connecting":
      return setStatus("connecting", "Connecting to a browser that holds it…");
    case "receiving":
      return showReceiving(e);
    case "confirm":
      return showConfirm(e);
    case "verified":
      $("progress").value = 1;
      return setStatus("verified", "Verified: the content matches its address.");
  }
}

function showReceiving(e) {
  const { received = 0, total = 0, missing = [], sending = 0 } = e;
  const bar = $("progress");
  if (total > 0) {
    bar.hidden = false;
    bar.value = received / total;
  }
  if (missing.length && !sending) {
    samples = []; // the speed starts afresh when it resumes
    return setStatus("missing", missingText(missing));
  }
  const from = `from ${plural(sending, "browser")}`;
  if (!total) return setStatus("receiving", `Receiving ${from}…`);
  const bps = speed(received);
  const parts = [`${Math.floor((100 * received) / total)}%`, `${size(received)} of ${size(total)}`];
  if (bps > 0) parts.push(`${size(bps)}/s`, `${duration((total - received) / bps)} left`);
  setStatus("receiving", `Receiving ${parts.join(" · ")} ${from}`);
}

function missingText(ranges) {
  const spans = ranges.slice(0, 3).map(([start, end]) => `${size(start)}–${size(end)}`);
  if (ranges.length > 3) spans.push(`${ranges.length - 3} more`);
  const list = spans.length > 1 ? `${spans.slice(0, -1).join(", ")} and ${spans.at(-1)}` : spans[0];
  const [is, it] = ranges.length > 1 ? ["are", "them"] : ["is", "it"];
  return `Part of this ${noun(meta)} is missing: ${list} ${is} not held by any browser online. The download resumes by itself when a browser holding ${it} appears.`;
}

function showPreparing(e) {
  const p = preparing;
  if (e.name !== p.name) return; // a late event of the previous file
  const done = Math.min(p.before + (e.done || 0), p.total);
  const bar = $("progress");
  bar.hidden = false;
  bar.value = p.total ? done / p.total : 1;
  const percent = p.total ? Math.floor((100 * done) / p.total) : 100;
  setStatus("preparing", `Preparing ${p.label}: ${percent}%`);
}

function showInfo(m) {
  const el = $("file-info");
  el.dataset.name = m.name || "";
  el.dataset.size = String(m.size);
  el.dataset.type = m.type;
  const type = baseType(m.type) === COLLECTION ? "collection of files" : m.type;
  el.textContent = [m.name, size(m.size), type].filter(Boolean).join(" — ");
  // A text page shows itself; the line is for files and collections.
  el.hidden = isTextPage(m);
}

// Only types the browser shows without running anything from the content;
// null for the others (they still get the download link).
async function preview(type, blob) {
  const t = baseType(type);
  // Typed exactly, whatever the blob said.
  const typed = () => new Blob([blob], { type: t });
  if (IMAGES.has(t)) {
    const img = document.createElement("img");
    img.alt = "";
    if (t !== "image/svg+xml") img.src = blobUrl(typed());
    // A blob: URL belongs to our origin: opened in a tab, an SVG's scripts
    // would run here. A data: URL has no origin.
    else if (blob.size <= INLINE_MAX) img.src = await dataUrl(typed());
    else return null;
    return img;
  }
  if (t.startsWith("audio/") || t.startsWith("video/")) {
    const media = document.createElement(t.startsWith("audio/") ? "audio" : "video");
    media.controls = true;
    media.src = blobUrl(typed());
    return media;
  }
  if (t.startsWith("text/") && blob.size <= INLINE_MAX) {
    const pre = document.createElement("pre");
    pre.textContent = await blob.text();
    return pre;
  }
  return null;
}

async function showFile(m, blob, visit) {
  const shown = await preview(m.type, blob);
  if (visit !== visits) return;
  if (shown) $("preview").append(shown);
  const link = $("download");
  // Typed octet-stream so that, opened, it downloads instead of rendering
  // in our origin.
  link.href = blobUrl(new Blob([blob], { type: "application/octet-stream" }));
  link.download = m.name || "download";
  link.textContent = `Download ${m.name || "file"} (${size(blob.size)})`;
  link.hidden = false;
}

// A collection comes from anyone: keep only well-formed entries, their
// texts made safe to show. They are the sharer's claims until opened.
function parseCollection(text) {
  let files;
  try {
    files = JSON.parse(text).files;
  } catch {
    return [];
  }
  if (!Array.isArray(files)) return [];
  return files
    .filter((f) => f && typeof f.address === "string" && HEX.test(f.address))
    .map((f) => ({
      address: f.address,
      name: (typeof f.name === "string" && safeText(f.name, 255)) || "file",
      size: Number.isFinite(f.size) && f.size >= 0 ? f.size : null,
      type: typeof f.type === "string" ? safeText(f.type, 100) : "",
    }));
}

function showCollection(files) {
  const list = $("collection");
  for (const f of files) {
    const a = document.createElement("a");
    a.href = `/${f.address}${QUERY}`;
    a.textContent = f.name;
    a.title = "Name given by the sharer: checked when you open it";
    const li = document.createElement("li");
    li.append(a); // strings appended below become text nodes
    const about = [f.size != null && size(f.size), f.type].filter(Boolean).join(", ");
    if (about) li.append(` — ${about}`);
    list.append(li);
  }
  claims.hidden = !files.length;
  if (!files.length) list.append(Object.assign(document.createElement("li"), { textContent: "This collection lists no files." }));
  list.hidden = false;
  const total = files.reduce((n, f) => n + (f.size || 0), 0);
  $("file-info").textContent = `${plural(files.length, "file")} — ${size(total)}`;
}

// Learns the manifest once it is known: it says how to fetch and show it.
function learn(address) {
  if (meta) return;
  meta = peer.manifest(address);
  if (!meta) return;
  showInfo(meta);
  load(address, meta, visits);
}

function load(address, m, visit) {
  const failed = (err) => visit === visits && !declined && setStatus("gone", `Could not load this ${noun(m)}: ${err.message || err}`);
  if (isTextPage(m)) {
    // Bytes, not a blob: this is the path whose open time is benchmarked.
    peer.fetch(address).then((bytes) => {
      if (visit !== visits) return;
      $("viewer").textContent = new TextDecoder().decode(bytes);
      performance.mark("content-shown");
      holding(address);
    }, failed);
    return;
  }
  // Files stay Blobs (parts, not one copy in wasm memory).
  (started || peer.fetchBlob(address))
    .then(async (blob) => {
      if (visit !== visits) return;
      if (baseType(m.type) === COLLECTION && blob.size <= COLLECTION_MAX) showCollection(parseCollection(await blob.text()));
      else await showFile(m, blob, visit);
      if (visit !== visits) return;
      performance.mark("content-shown");
      holding(address);
    })
    .catch(failed);
}

function holding(address) {
  finished = true;
  $("progress").hidden = true;
  setStatus("holding", `You hold this ${noun(meta)}: keep this tab open and others can load it from you.`);
  const count = peer.holders(address);
  if (count != null) showHolders(count);
  $("copy-link").hidden = false;
}

// Clears the content view and shows it for `address` (null while files are
// being prepared); returns the new visit.
function showPage(address) {
  current = address;
  meta = null;
  finished = false;
  started = null;
  samples = [];
  urls.forEach((url) => URL.revokeObjectURL(url));
  urls = [];
  declined = false;
  ask.hidden = true;
  claims.hidden = true;
  $("compose").hidden = true;
  $("page").hidden = false;
  for (const id of ["viewer", "log", "preview", "collection", "file-info", "holders"]) $(id).textContent = "";
  for (const id of ["collection", "file-info", "download", "copy-link", "progress"]) $(id).hidden = true;
  $("download").removeAttribute("href");
  $("copy-link").textContent = "Copy link";
  $("progress").value = 0;
  $("holders").dataset.count = "0";
  return ++visits;
}

function openPage(address) {
  showPage(address);
  if (RELAY) log("Relays only (?relay): every connection goes through a TURN server the broker names.");
  setStatus("looking", "Looking for browsers that hold this…");
  // The manifest only comes with a download under way. A share link's
  // started with the early socket (index.html); otherwise start one here,
  // as a blob: the likelier kind for a link followed inside the app.
  if (address !== adopted && !peer.manifest(address)) {
    started = peer.fetchBlob(address);
    started.catch(() => {}); // reported by load, if it is used
  }
  adopted = null;
  learn(address);
}

// After sharing: this page now shows (and serves) `address`.
function hold(address, fallback) {
  history.pushState(null, "", `/${address}${QUERY}`);
  const visit = showPage(address);
  meta = peer.manifest(address) || fallback;
  showInfo(meta);
  return visit;
}

function compose() {
  current = null;
  visits++;
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
  const type = "text/plain; charset=utf-8";
  const address = peer.share(bytes, type);
  hold(address, { size: bytes.length, type });
  $("viewer").textContent = text;
  holding(address);
});

// One file: its own link. Several: a collection listing them.
async function shareFiles(files) {
  if (preparing || !files.length) return;
  $("compose-error").textContent = "";
  const total = files.reduce((n, f) => n + f.size, 0);
  showPage(null);
  const entries = [];
  let file = files[0];
  try {
    for (const [i, f] of files.entries()) {
      file = f;
      const label = files.length > 1 ? `“${safeText(f.name)}” (${i + 1} of ${files.length})` : `“${safeText(f.name)}”`;
      const before = entries.reduce((n, e) => n + e.size, 0);
      preparing = { name: f.name, label, before, total };
      showPreparing({ name: f.name, done: 0 });
      const address = await peer.shareFile(f);
      // What the peer recorded, so the collection says the same.
      const m = peer.manifest(address) || { size: f.size, type: f.type || "application/octet-stream" };
      entries.push({ address, name: m.name || safeText(f.name) || "file", size: m.size, type: m.type });
    }
  } catch (err) {
    compose();
    $("compose-error").textContent = `Could not share “${safeText(file.name)}”: ${err.message || err}. Check that the file still exists and can be read, then choose it again.`;
    return;
  } finally {
    preparing = null;
  }
  if (entries.length === 1) {
    const visit = hold(entries[0].address, entries[0]);
    showFile(meta, files[0], visit).catch((err) => log(`No preview: ${err.message || err}`));
    holding(entries[0].address);
    return;
  }
  const json = new TextEncoder().encode(JSON.stringify({ files: entries }));
  const address = peer.share(json, COLLECTION);
  hold(address, { size: json.length, type: COLLECTION });
  showCollection(entries);
  holding(address);
}

$("file-input").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = ""; // so that choosing the same file again shares it again
  shareFiles(files);
});

// Files dropped anywhere: shared, and never opened by the browser in place
// of the page. Other drags (text into the editor) behave as usual.
const hasFiles = (e) => e.dataTransfer?.types.includes("Files");
window.addEventListener("dragover", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  const composing = !$("compose").hidden;
  e.dataTransfer.dropEffect = composing ? "copy" : "none";
  $("drop-zone").classList.toggle("over", composing);
});
window.addEventListener("dragleave", (e) => e.relatedTarget || $("drop-zone").classList.remove("over"));
window.addEventListener("drop", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  $("drop-zone").classList.remove("over");
  if ($("compose").hidden) return;
  // A dropped folder shows up as an unreadable empty file.
  if ([...e.dataTransfer.items].some((item) => item.webkitGetAsEntry()?.isDirectory)) {
    $("compose-error").textContent = "Folders cannot be shared: open the folder and drop or choose the files inside it.";
    return;
  }
  shareFiles([...e.dataTransfer.files]);
});

// Links in a collection open inside the app: the peer and its links stay.
$("collection").addEventListener("click", (e) => {
  const a = e.target.closest("a");
  // Modified clicks open a tab or window as usual.
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  history.pushState(null, "", a.href);
  route();
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
// Now the page can show them: what happened before, then what comes.
peer.onevent = onEvent;
queued.splice(0).forEach(onEvent);
