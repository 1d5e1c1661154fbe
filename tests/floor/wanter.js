"use strict";
const statusEl = document.getElementById("status");
const setState = (s) => { statusEl.dataset.state = statusEl.textContent = s; };
const holder = location.hash.slice(1);

// What happened, with times, for the benchmark's failure messages.
const trace = (window.trace = []);
const note = (what) => trace.push(`${performance.now().toFixed(1)} ${what}`);

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
const send = (data) => ws.send(JSON.stringify({ signal: { to: holder, data } }));
let pc = null;

function receive(channel) {
  let expected = -1;
  let received = 0;
  const parts = [];
  channel.binaryType = "arraybuffer";
  channel.onopen = () => { note("channel open"); channel.send("get"); };
  channel.onmessage = ({ data }) => {
    note(`message ${typeof data === "string" ? data : data.byteLength}`);
    if (typeof data === "string") expected = Number(data);
    else { parts.push(new Uint8Array(data)); received += data.byteLength; }
    if (expected < 0 || received < expected) return;
    const bytes = new Uint8Array(received);
    let at = 0;
    for (const p of parts) { bytes.set(p, at); at += p.byteLength; }
    document.getElementById("viewer").textContent = new TextDecoder().decode(bytes);
    performance.mark("content-shown");
    setState("verified");
    channel.onmessage = null;
  };
}

async function start(iceServers) {
  pc = new RTCPeerConnection({ iceServers });
  pc.oniceconnectionstatechange = () => note(`ice ${pc.iceConnectionState}`);
  pc.onicecandidate = ({ candidate: c }) => {
    note(`local ${c ? c.candidate : "end"}`);
    if (c) send({ kind: "candidate", candidate: c.candidate, sdp_mid: c.sdpMid, sdp_m_line_index: c.sdpMLineIndex });
  };
  receive(pc.createDataChannel("content"));
  await pc.setLocalDescription(await pc.createOffer());
  send({ kind: "offer", sdp: pc.localDescription.sdp });
  note("offer sent");
  setState("connecting");
}

ws.onmessage = (event) => {
  const msg = JSON.parse(event.data);
  note(`ws ${Object.keys(msg)[0]} ${msg.signal ? msg.signal.data.kind : ""}`);
  if (msg.welcome) {
    start(msg.welcome.ice_servers).catch((e) => setState(`failed: ${e}`));
  } else if (msg.signal && msg.signal.from === holder) {
    const { data } = msg.signal;
    if (data.kind === "answer") {
      pc.setRemoteDescription({ type: "answer", sdp: data.sdp }).catch((e) => setState(`failed: ${e}`));
    } else if (data.kind === "candidate") {
      pc.addIceCandidate({ candidate: data.candidate, sdpMid: data.sdp_mid, sdpMLineIndex: data.sdp_m_line_index })
        .catch((e) => console.error("candidate", e));
    }
  } else if (msg.error) {
    setState(`error: ${msg.error.message}`);
  }
};
