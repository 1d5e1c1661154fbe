"use strict";
const statusEl = document.getElementById("status");
const setState = (s) => { statusEl.dataset.state = statusEl.textContent = s; };
const [sender, messageBytes, mode] = location.hash.slice(1).split(",");
const work = mode === "work";
const connections = mode === "two" ? 2 : 1;

// The "work" mode's writer: one file, written at each chunk's offset
// through a synchronous access handle, the buffers transferred.
const WRITER = `
const opened = navigator.storage.getDirectory()
  .then((root) => root.getFileHandle("floor-bulk", { create: true }))
  .then((file) => file.createSyncAccessHandle())
  .then((sync) => { sync.truncate(0); return sync; });
onmessage = async ({ data: { at, bytes } }) => {
  (await opened).write(new Uint8Array(bytes), { at });
  postMessage(at);
};`;

// What happened, with times, for the benchmark's failure messages.
const trace = (window.trace = []);
const note = (what) => trace.push(`${performance.now().toFixed(1)} ${what}`);

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
// One per connection; signals name theirs (`pc`, absent for the first).
const pcs = [];
// Bytes of the connections that finished.
let finished = [];
window.received = 0;

function receive(channel, k) {
  let expected = -1;
  let received = 0;
  channel.binaryType = "arraybuffer";
  channel.onopen = () => {
    note(`channel ${k} open`);
    channel.send(connections > 1 ? `get ${messageBytes} ${k} ${connections}` : `get ${messageBytes}`);
  };
  // In "work" mode: chunks hashed and written so far.
  let done = 0;
  let writer = null;
  if (work) {
    writer = new Worker(URL.createObjectURL(new Blob([WRITER], { type: "text/javascript" })));
    writer.onmessage = () => { done += 1; finish(); };
  }
  const hashed = () => { done += 1; finish(); };
  const finish = () => {
    const chunks = Math.ceil(received / Number(messageBytes));
    if (expected < 0 || received < expected || (work && done < 2 * chunks)) return;
    if (finished[k] !== undefined) return;
    finished[k] = received;
    if (finished.filter((n) => n !== undefined).length < connections) return;
    performance.mark("last-byte");
    window.received = finished.reduce((a, b) => a + b, 0);
    setState("verified");
    channel.onmessage = null;
  };
  channel.onmessage = ({ data }) => {
    if (typeof data === "string") {
      expected = Number(data);
      note(`expecting ${expected}`);
    } else {
      if (work) {
        // Stored once hashed, as a download stores only verified chunks.
        const at = received;
        crypto.subtle.digest("SHA-256", data).then(() => {
          hashed();
          writer.postMessage({ at, bytes: data }, [data]);
        }, (e) => setState(`failed: ${e}`));
      }
      received += data.byteLength;
    }
    finish();
  };
}

async function start(iceServers, k) {
  const pc = (pcs[k] = new RTCPeerConnection({ iceServers }));
  const tag = k ? { pc: String(k) } : {};
  const send = (data) => ws.send(JSON.stringify({ signal: { to: sender, data: { ...data, ...tag } } }));
  pc.oniceconnectionstatechange = () => note(`ice ${pc.iceConnectionState}`);
  pc.onicecandidate = ({ candidate: c }) => {
    if (c) send({ kind: "candidate", candidate: c.candidate, sdp_mid: c.sdpMid, sdp_m_line_index: c.sdpMLineIndex });
  };
  receive(pc.createDataChannel("content"), k);
  await pc.setLocalDescription(await pc.createOffer());
  send({ kind: "offer", sdp: pc.localDescription.sdp });
  note("offer sent");
}

ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.welcome) {
    for (let k = 0; k < connections; k++) {
      start(msg.welcome.ice_servers, k).catch((e) => setState(`failed: ${e}`));
    }
  } else if (msg.signal && msg.signal.from === sender) {
    const { data } = msg.signal;
    const pc = pcs[Number(data.pc || 0)];
    if (data.kind === "answer") {
      pc.setRemoteDescription({ type: "answer", sdp: data.sdp }).catch((e) => setState(`failed: ${e}`));
    } else if (data.kind === "candidate") {
      pc.addIceCandidate({ candidate: data.candidate, sdpMid: data.sdp_mid, sdpMLineIndex: data.sdp_m_line_index })
        .catch((e) => note(`candidate: ${e}`));
    }
  } else if (msg.error) {
    setState(`error: ${msg.error.message}`);
  }
};
