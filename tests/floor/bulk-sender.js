"use strict";
const statusEl = document.getElementById("status");
const me = document.getElementById("me");

// Backpressure: keep at most HIGH bytes queued in the channel, refill when
// it drains to LOW. The app's values; 4 MiB / 1 MiB and 8 MiB / 2 MiB were
// no faster on the reference machine (Chromium closes a channel whose
// queue passes 16 MiB).
const HIGH = 1 << 20;
const LOW = 256 * 1024;

let content = new Uint8Array(0);
// The same generator as the benchmark's shared file: xorshift32 words.
window.prepare = (size, seed) => {
  const words = new Uint32Array(size / 4);
  let x = seed | 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    words[i] = x;
  }
  content = new Uint8Array(words.buffer);
  return content.byteLength;
};

// What happened, with times, for the benchmark's failure messages.
const trace = (window.trace = []);
const note = (what) => {
  trace.push(`${performance.now().toFixed(1)} ${what}`);
  if (trace.length > 400) trace.shift();
};

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
// Connections are keyed by the peer's id and the receiver's connection
// number: "<id>" or "<id>/<n>".
const send = (key, data) => {
  const [to, pc] = key.split("/");
  ws.send(JSON.stringify({ signal: { to, data: pc ? { ...data, pc } : data } }));
};
const peers = new Map();
let iceServers = [];

function serve(channel, size, tag, part = 0, parts = 1) {
  const from = Math.floor(content.byteLength * part / parts);
  const total = Math.floor(content.byteLength * (part + 1) / parts) - from;
  const all = content.subarray(from, from + total);
  note(`${tag} serving ${total} bytes in ${size}-byte messages`);
  channel.bufferedAmountLowThreshold = LOW;
  channel.send(String(total));
  let at = 0;
  const pump = () => {
    while (at < total) {
      if (channel.readyState !== "open") return note(`${tag} channel ${channel.readyState} at ${at}`);
      if (channel.bufferedAmount > HIGH) {
        channel.onbufferedamountlow = pump;
        return;
      }
      channel.send(all.subarray(at, at + size));
      at += size;
    }
    channel.onbufferedamountlow = null;
    note(`${tag} all queued`);
  };
  pump();
}

async function onOffer(from, sdp) {
  const pc = new RTCPeerConnection({ iceServers });
  peers.set(from, pc);
  const tag = from.slice(0, 8);
  note(`${tag} offer`);
  pc.oniceconnectionstatechange = () => {
    note(`${tag} ice ${pc.iceConnectionState}`);
    // A receiver that navigated away vanishes without closing anything; on
    // this one-host network "disconnected" means gone.
    if (["disconnected", "failed"].includes(pc.iceConnectionState)) {
      pc.close();
      peers.delete(from);
    }
  };
  pc.onicecandidate = ({ candidate: c }) => {
    if (c) send(from, { kind: "candidate", candidate: c.candidate, sdp_mid: c.sdpMid, sdp_m_line_index: c.sdpMLineIndex });
  };
  pc.ondatachannel = ({ channel }) => {
    note(`${tag} channel ${channel.readyState}`);
    channel.binaryType = "arraybuffer";
    channel.onclose = () => { note(`${tag} closed`); pc.close(); peers.delete(from); };
    // Serve on request, as holder.html does.
    channel.onmessage = ({ data }) => {
      const m = typeof data === "string" && data.match(/^get (\d+)(?: (\d+) (\d+))?$/);
      if (m) serve(channel, Number(m[1]), tag, Number(m[2] || 0), Number(m[3] || 1));
    };
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
    const { data } = msg.signal;
    const from = data.pc ? `${msg.signal.from}/${data.pc}` : msg.signal.from;
    if (data.kind === "offer") {
      onOffer(from, data.sdp).catch((e) => note(`offer from ${from}: ${e}`));
    } else if (data.kind === "candidate" && peers.has(from)) {
      peers.get(from)
        .addIceCandidate({ candidate: data.candidate, sdpMid: data.sdp_mid, sdpMLineIndex: data.sdp_m_line_index })
        .catch((e) => note(`candidate from ${from}: ${e}`));
    }
  }
};
ws.onclose = () => { statusEl.dataset.state = statusEl.textContent = "disconnected"; };
