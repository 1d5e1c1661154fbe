// The site-delivery demo: this page's two files through peer.fetchUrl,
// with the bytes from other visitors against the bytes from the server
// shown as they arrive. Text from files and events goes on screen with
// textContent; the image is shown from a blob: URL of verified bytes.
import init, { Peer } from "/pkg/peer_wasm.js";

const FILES = [
  { path: "/demo/files/photo.png", label: "an image", show: "image" },
  { path: "/demo/files/big.bin", label: "a big download", show: "download" },
];
const INDEX = "/demo/files/peerpage.json";

const rows = new Map(); // address -> row elements
const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;

function row(file, entry) {
  const tr = document.createElement("tr");
  const name = document.createElement("td");
  name.textContent = `${file.label} (${file.path.split("/").pop()}, ${mib(entry.size)})`;
  const bar = document.createElement("td");
  const split = document.createElement("div");
  split.className = "split";
  const peers = document.createElement("div");
  peers.className = "peers";
  const origin = document.createElement("div");
  origin.className = "origin";
  split.append(peers, origin);
  const numbers = document.createElement("div");
  numbers.className = "numbers";
  bar.append(split, numbers);
  const holders = document.createElement("td");
  const action = document.createElement("td");
  tr.append(name, bar, holders, action);
  document.querySelector("#files tbody").append(tr);
  return { peers, origin, numbers, holders, action, size: entry.size };
}

function progress(r, fromPeers, fromOrigin) {
  r.peers.style.width = `${(100 * fromPeers) / r.size}%`;
  r.origin.style.width = `${(100 * fromOrigin) / r.size}%`;
  r.numbers.textContent = `${mib(fromPeers)} from visitors, ${mib(fromOrigin)} from this server`;
}

async function fetchFile(peer, file, r) {
  // The index is not at the site root here.
  const res = await peer.fetchUrl(file.path, { peerpageIndex: INDEX });
  const blob = await res.blob();
  if (file.show === "image") {
    const img = document.createElement("img");
    img.alt = "the demo image, verified";
    img.src = URL.createObjectURL(blob);
    document.querySelector("#shown").append(img);
  } else {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = file.path.split("/").pop();
    a.textContent = "save";
    r.action.replaceChildren(a);
  }
}

async function main() {
  await init();
  const peer = new Peer();
  window.peer = peer;
  const index = await (await fetch(INDEX)).json();
  peer.onevent = (e) => {
    const r = rows.get(e.address);
    if (!r) return;
    if (e.type === "status" && e.fromPeers !== undefined) progress(r, e.fromPeers, e.fromOrigin);
    if (e.type === "holders") r.holders.textContent = String(Math.max(0, e.count - 1));
  };
  const listed = FILES.map((file) => {
    const entry = index.files[file.path.replace("/demo/files/", "")];
    const r = row(file, entry);
    rows.set(entry.address, r);
    return [file, r];
  });
  // One after the other: a download from a visitor holds its connection
  // to that visitor, so the next file would meanwhile come from this
  // server.
  const jobs = (async () => {
    for (const [file, r] of listed) await fetchFile(peer, file, r);
  })();
  setInterval(() => {
    const s = peer.stats();
    document.querySelector("#totals").textContent =
      `${mib(s.bytesFromPeers)} from other visitors, ${mib(s.bytesFromOrigin)} from this server, ` +
      `${mib(s.bytesToPeers)} sent to other visitors`;
  }, 250);
  await jobs;
}

main().catch((e) => {
  document.querySelector("#error").textContent = String(e && e.message || e);
});
