"use strict";
const statusEl = document.getElementById("status");
const me = document.getElementById("me");

// 40 KB ready to serve; the benchmark replaces it with its own text.
let content = new TextEncoder().encode("x".repeat(40 * 1024));
window.setContent = (text) => { content = new TextEncoder().encode(text); };

// What happened, with times, for the benchmark's failure messages.
const trace = (window.trace = []);
const note = (what) => {
  trace.push(`${performance.now().toFixed(1)} ${what}`);
  if (trace.length > 400) trace.shift();
};

const CHUNK = 16 * 1024;
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
const send = (to, data) => ws.send(JSON.stringify({ signal: { to, data } }));
const peers = new Map();
let iceServers = [];

function serve(channel) {
  note(`serving ${content.byteLength} bytes`);
  channel.send(String(content.byteLength));
  for (let i = 0; i < content.byteLength; i += CHUNK) {
    channel.send(content.subarray(i, i + CHUNK));
  }
  note(`sent, ${channel.bufferedAmount} bytes buffered`);
}

async function onOffer(from, sdp) {
  const pc = new RTCPeerConnection({ iceServers });
  peers.set(from, pc);
  const tag = from.slice(0, 8);
  note(`${tag} offer`);
  pc.oniceconnectionstatechange = () => {
    note(`${tag} ice ${pc.iceConnectionState}`);
    // A wanter that navigated away vanishes without closing anything; on
    // this one-host network "disconnected" means gone.
    if (["disconnected", "failed"].includes(pc.iceConnectionState)) {
      pc.close();
      peers.delete(from);
    }
  };
  pc.onicecandidate = ({ candidate: c }) => {
    note(`${tag} local ${c ? c.candidate : "end"}`);
    if (c) send(from, { kind: "candidate", candidate: c.candidate, sdp_mid: c.sdpMid, sdp_m_line_index: c.sdpMLineIndex });
  };
  pc.ondatachannel = ({ channel }) => {
    note(`${tag} channel ${channel.readyState}`);
    channel.binaryType = "arraybuffer";
    channel.onclose = () => { note(`${tag} closed`); pc.close(); peers.delete(from); };
    // Serve on request (as the app does). Sending unasked from here, as the
    // channel opens, sometimes lost messages in Chromium 156.
    channel.onmessage = ({ data }) => { if (data === "get") serve(channel); };
  };
  await pc.setRemoteDescription({ type: "offer", sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  send(from, { kind: "answer", sdp: pc.localDescription.sdp });
  note(`${tag} answer sent`);
}

ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  if (msg.welcome) {
    iceServers = msg.welcome.ice_servers;
    me.textContent = me.dataset.id = msg.welcome.id;
    statusEl.dataset.state = statusEl.textContent = "ready";
  } else if (msg.signal) {
    const { from, data } = msg.signal;
    if (data.kind === "offer") {
      onOffer(from, data.sdp).catch((e) => console.error("offer from", from, e));
    } else if (data.kind === "candidate" && peers.has(from)) {
      note(`${from.slice(0, 8)} remote ${data.candidate}`);
      peers.get(from)
        .addIceCandidate({ candidate: data.candidate, sdpMid: data.sdp_mid, sdpMLineIndex: data.sdp_m_line_index })
        .catch((e) => console.error("candidate from", from, e));
    }
  }
};
ws.onclose = () => { statusEl.dataset.state = statusEl.textContent = "disconnected"; };
