// A site's page for the site-delivery tests: the peer on a broker of
// another origin (`?broker=ws://…/ws`), its events kept for the test.
import init, { Peer } from "/pkg/peer_wasm.js";

await init();
const broker = new URLSearchParams(location.search).get("broker");
window.events = [];
window.peer = new Peer(broker);
window.peer.onevent = (e) => window.events.push(e);
