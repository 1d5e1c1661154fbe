//! The JavaScript API: what `wasm-pack build` exports and the bundled page
//! uses.
//!
//! ```js
//! import init, { Peer } from "./pkg/peer_wasm.js";
//! await init();
//! const peer = new Peer();                 // broker at this page's origin
//! peer.onevent = (e) => console.log(e);    // {type: "holders", address, count}, ...
//! const address = peer.share(new TextEncoder().encode("hi"), "text/plain");
//! const bytes = await peer.fetch(address); // verified Uint8Array
//!
//! const file = await peer.shareFile(input.files[0]); // any size
//! const blob = await peer.fetchBlob(file);           // verified Blob
//!
//! peer.confirmAbove = 100 * 2 ** 20; // bigger content waits for a yes:
//! // {type: "status", state: "confirm", total, name, mediaType}, then
//! peer.confirm(address);             // or peer.cancel(address)
//!
//! el.textContent = safeText(untrusted, 255); // see protocol::display
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use protocol::display;
use protocol::manifest::DEFAULT_CHUNK_SIZE;
use protocol::ContentId;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, File};

use crate::error::PeerError;
use crate::events::Event;
use crate::peer::{with_inner, Inner};
use crate::store::{Held, Parts};

/// A browser peer: holds content and serves it to other browsers, fetches
/// content from them, and verifies everything it receives.
#[wasm_bindgen]
pub struct Peer {
    inner: Rc<RefCell<Inner>>,
    /// Content bigger than this waits for `confirm` (see `confirmAbove`).
    confirm_above: Cell<Option<u64>>,
    /// Sites' indexes, for `fetchUrl`.
    indexes: Rc<RefCell<crate::site::Indexes>>,
}

/// `text` made safe to show: invisible characters (bidirectional
/// controls, zero-width and other format characters, control characters,
/// line separators) replaced by U+FFFD, whitespace collapsed, at most
/// `max` characters (default 255) with the middle cut. The one rule the
/// peer applies to every name, type and message it hands the page; for
/// text the page reads itself from content (a collection's entries).
#[wasm_bindgen(js_name = safeText)]
pub fn safe_text(text: &str, max: Option<u32>) -> String {
    let max = max.map_or(display::NAME_CHARS, |m| m as usize);
    display::safe_text(text, max)
}

/// The peer, unless it was closed.
fn alive(weak: &std::rc::Weak<RefCell<Inner>>) -> Result<Rc<RefCell<Inner>>, PeerError> {
    weak.upgrade()
        .ok_or_else(|| PeerError::Refused("the peer was closed".into()))
}

fn parse_address(address: &str) -> Result<ContentId, JsValue> {
    address
        .parse::<ContentId>()
        .map_err(|e| PeerError::Refused(e.to_string()).into())
}

/// The broker endpoint at this page's own origin (`ws:` or `wss:`).
fn default_broker_url() -> Result<String, JsValue> {
    let location = web_sys::window()
        .ok_or_else(|| PeerError::Refused("no window: pass the broker URL explicitly".into()))?
        .location();
    let scheme = if location.protocol()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Ok(format!("{scheme}://{}/ws", location.host()?))
}

#[wasm_bindgen]
impl Peer {
    /// Connects to the broker at `broker_url` (default: `/ws` on this
    /// page's origin, `wss:` under https). With `relay_only`, WebRTC uses
    /// TURN relays only. Reconnects on its own with backoff.
    #[wasm_bindgen(constructor)]
    pub fn new(broker_url: Option<String>, relay_only: Option<bool>) -> Result<Peer, JsValue> {
        let url = match broker_url {
            Some(u) => u,
            None => default_broker_url()?,
        };
        let inner = Inner::create(url, relay_only.unwrap_or(false));
        let indexes = inner.borrow().site_indexes.clone();
        Ok(Peer {
            inner,
            confirm_above: Cell::new(None),
            indexes,
        })
    }

    /// Like the constructor, but takes over a WebSocket to the broker that
    /// the page opened before the wasm loaded, so that connecting overlaps
    /// the module's download. `received` holds the text messages that
    /// already arrived on it; `wanted` is the address in its `?want=`
    /// query, if any: its download starts at once, and `fetch` joins it.
    /// `connection`, a fresh `RTCPeerConnection` the page made meanwhile
    /// (the browser's first one takes milliseconds to start WebRTC), is
    /// used for the first link.
    #[wasm_bindgen(js_name = fromSocket)]
    pub fn from_socket(
        socket: web_sys::WebSocket,
        received: Vec<String>,
        wanted: Option<String>,
        relay_only: Option<bool>,
        connection: Option<web_sys::RtcPeerConnection>,
    ) -> Result<Peer, JsValue> {
        let wanted = wanted.as_deref().map(parse_address).transpose()?;
        let inner = Inner::adopt(
            socket,
            received,
            wanted,
            relay_only.unwrap_or(false),
            connection,
        );
        let indexes = inner.borrow().site_indexes.clone();
        Ok(Peer {
            inner,
            confirm_above: Cell::new(None),
            indexes,
        })
    }

    /// Holds `data` and serves it to others; returns its address (64 hex
    /// characters: the SHA-256 of its manifest).
    pub fn share(&self, data: &[u8], media_type: &str, name: Option<String>) -> String {
        self.inner
            .borrow_mut()
            .share(data.to_vec(), media_type, name.as_deref())
            .to_string()
    }

    /// Holds a file (or any `Blob`) and serves it to others; resolves with
    /// its address. The file is read a chunk at a time to hash it, and
    /// again whenever a chunk is served: it is never copied whole into
    /// memory, so any size up to 16 GiB works. `name` defaults to the
    /// file's name, `type` to its type (else `application/octet-stream`).
    /// Emits `{type: "preparing", name, done, total}` while hashing.
    #[wasm_bindgen(js_name = shareFile)]
    pub fn share_file(
        &self,
        file: Blob,
        name: Option<String>,
        #[wasm_bindgen(js_name = type)] media_type: Option<String>,
    ) -> Promise {
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let name = name
                .or_else(|| file.dyn_ref::<File>().map(File::name))
                .filter(|n| !n.is_empty());
            let media_type = media_type
                .or_else(|| Some(file.type_()))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "application/octet-stream".into());
            let shown = name.clone().unwrap_or_else(|| "file".into());
            let progress = |done, total| {
                if let Some(inner) = weak.upgrade() {
                    if let Ok(inner) = inner.try_borrow() {
                        inner.emit(Event::Preparing {
                            name: shown.clone(),
                            done,
                            total,
                        });
                    }
                }
            };
            // A file of more than a chunk is served from a copy in the disk
            // store, made as it is hashed (see `crate::store`).
            let mut copy = None;
            if file.size() > DEFAULT_CHUNK_SIZE as f64 {
                let (opening, slot) = alive(&weak)?.borrow_mut().open_disk();
                JsFuture::from(opening).await?;
                if slot.borrow().is_some() {
                    copy = Some(Parts::copy_of(&file, DEFAULT_CHUNK_SIZE, slot));
                }
            }
            let keep = |index, bytes| {
                copy.as_mut()
                    .map_or(Ok(()), |c: &mut Parts| c.keep(index, bytes))
            };
            let manifest =
                crate::hashing::describe_file(&file, &media_type, name.as_deref(), progress, keep)
                    .await?;
            manifest
                .check()
                .map_err(|e| PeerError::Refused(format!("cannot share this file: {e}")))?;
            let address = alive(&weak)?.borrow_mut().share_file(manifest, file, copy);
            Ok(address.to_string().into())
        })
    }

    /// Fetches content from other browsers. Resolves with the bytes once
    /// every byte is verified against `address`; after that this peer holds
    /// it too. Waits (and reports `gone`) while nobody holds it. For big
    /// content prefer `fetchBlob`, which does not copy it into one buffer.
    pub fn fetch(&self, address: &str) -> Result<Promise, JsValue> {
        let held = self.held(address)?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let held = held.await?;
            if let Some(bytes) = held.bytes() {
                return Ok(bytes.into());
            }
            let buffer = JsFuture::from(held.blob().await?.array_buffer()).await?;
            Ok(Uint8Array::new(&buffer).into())
        }))
    }

    /// Like `fetch`, but resolves with a `Blob` typed with the content's
    /// media type. Big content arrives as the browser's blob parts, never
    /// whole in wasm memory.
    #[wasm_bindgen(js_name = fetchBlob)]
    pub fn fetch_blob(&self, address: &str) -> Result<Promise, JsValue> {
        let held = self.held(address)?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            Ok(held.await?.blob().await?.into())
        }))
    }

    /// The verified content of `address`, once fetched.
    fn held(
        &self,
        address: &str,
    ) -> Result<impl std::future::Future<Output = Result<Rc<Held>, JsValue>>, JsValue> {
        let content = parse_address(address)?;
        let rx = {
            let mut inner = self.inner.borrow_mut();
            let rx = inner.fetch(content);
            inner.confirm_above(Some(content), self.confirm_above.get());
            rx
        };
        Ok(async move {
            rx.await
                .map_err(|_| JsValue::from(js_sys::Error::new("fetch cancelled")))
        })
    }

    /// `fetch(input, init)` for a site's static files: a GET of a URL
    /// that its site's index lists (`peerpage.json` at the URL's origin, or
    /// `init.peerpageIndex`) resolves with a `Response` (200, the listed
    /// `Content-Type` and `Content-Length`) whose body streams bytes
    /// verified against the index, from peers holding the file and from
    /// the origin (HTTP range requests) where they cannot help; the file is
    /// then held and served like any content. Anything else is a plain
    /// `fetch(input, init)`. `init.signal` aborts. Status events of such a
    /// download carry `fromPeers` and `fromOrigin` (bytes).
    #[wasm_bindgen(js_name = fetchUrl)]
    pub fn fetch_url(&self, input: JsValue, init: Option<Object>) -> Promise {
        let init = init.map_or(JsValue::UNDEFINED, JsValue::from);
        crate::site::fetch_url(
            Rc::downgrade(&self.inner),
            self.indexes.clone(),
            input,
            init,
        )
    }

    /// Follows the site whose release record is at `indexUrl` (its
    /// `peerpage.json`), signed by `publicKey` (as `peerpage keygen`
    /// printed it): resolves with `{site, seq, created, expires, index}`
    /// once its release is verified, and `fetchUrl` then serves the site's
    /// files from that release's index only. A record whose signature does
    /// not verify, older than one this browser saw (kept across reloads),
    /// of the same `seq` but other bytes, expired, or whose index does not
    /// match its address is refused with `{type: "warning", site,
    /// message}` and the release in use stays; an applied one is told as
    /// `{type: "release", site, seq, changed}` (the paths that changed).
    #[wasm_bindgen(js_name = followSite)]
    pub fn follow_site(
        &self,
        #[wasm_bindgen(js_name = indexUrl)] index_url: String,
        #[wasm_bindgen(js_name = publicKey)] public_key: String,
    ) -> Promise {
        crate::follow::follow_site(
            Rc::downgrade(&self.inner),
            self.indexes.clone(),
            index_url,
            public_key,
        )
    }

    /// Size, media type and name of held or half-fetched content:
    /// `{size, type, name}`, or `undefined` before the manifest arrived.
    /// Name and type are made safe to show and to save under (see
    /// `safeText`); `name` is absent if nothing of it is left.
    pub fn manifest(&self, address: &str) -> Result<JsValue, JsValue> {
        let content = parse_address(address)?;
        let Some(m) = self.inner.borrow().manifest(&content) else {
            return Ok(JsValue::UNDEFINED);
        };
        let obj = Object::new();
        Reflect::set(&obj, &"size".into(), &(m.size as f64).into())?;
        Reflect::set(&obj, &"type".into(), &m.shown_type().into())?;
        if let Some(name) = m.shown_name() {
            Reflect::set(&obj, &"name".into(), &name.into())?;
        }
        Ok(obj.into())
    }

    /// Content bigger than this many bytes waits, once its manifest is
    /// verified, for `confirm` (or `cancel`): the status event says
    /// `{state: "confirm", total, name, mediaType}`. Only the first chunk,
    /// which comes with the manifest, is received meanwhile (at most
    /// 16 MiB; 256 KiB as this peer shares). `undefined` (the default):
    /// nothing waits. Applies to downloads whose manifest has not arrived
    /// yet, and to later ones.
    #[wasm_bindgen(setter, js_name = confirmAbove)]
    pub fn set_confirm_above(&self, bytes: Option<f64>) {
        let limit = bytes.map(|b| b.max(0.0) as u64);
        self.confirm_above.set(limit);
        self.inner.borrow_mut().confirm_above(None, limit);
    }

    /// The threshold set with the `confirmAbove` setter.
    #[wasm_bindgen(getter, js_name = confirmAbove)]
    pub fn confirm_above(&self) -> Option<f64> {
        self.confirm_above.get().map(|b| b as f64)
    }

    /// The user wants the download of `address` that waits for a yes (see
    /// `confirmAbove`): it goes on. Called earlier, it will not wait.
    pub fn confirm(&self, address: &str) -> Result<(), JsValue> {
        let content = parse_address(address)?;
        with_inner(&Rc::downgrade(&self.inner), move |inner| {
            inner.confirm(content)
        });
        Ok(())
    }

    /// Stops serving `address`.
    pub fn release(&self, address: &str) -> Result<(), JsValue> {
        let content = parse_address(address)?;
        self.inner.borrow_mut().release(&content);
        Ok(())
    }

    /// Abandons a fetch; its promise rejects.
    pub fn cancel(&self, address: &str) -> Result<(), JsValue> {
        let content = parse_address(address)?;
        self.inner.borrow_mut().cancel(&content);
        Ok(())
    }

    /// Last known number of browsers holding `address`.
    pub fn holders(&self, address: &str) -> Result<Option<u32>, JsValue> {
        let content = parse_address(address)?;
        Ok(self.inner.borrow().holders(&content))
    }

    /// This peer's id while connected to the broker.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> Option<String> {
        self.inner.borrow().id().map(|id| id.to_string())
    }

    /// Event handler, called with objects such as
    /// `{type: "holders", address, count}`,
    /// `{type: "status", address, state, received?, total?, sources?,
    /// sending?, missing?, name?, mediaType?}` (state: looking, gone,
    /// connecting, receiving, confirm, verified; `missing` lists
    /// `[start, end)` byte ranges no connected holder has; `confirm`: the
    /// content is bigger than `confirmAbove`, see there),
    /// `{type: "warning", address, message}`, `{type: "connected", id}`,
    /// `{type: "disconnected"}`.
    #[wasm_bindgen(setter)]
    pub fn set_onevent(&self, handler: Option<Function>) {
        self.inner.borrow_mut().set_on_event(handler);
    }

    /// Payload bytes moved over data channels, how many data channels
    /// opened (a big download from a lone holder opens two), how many
    /// `RTCPeerConnection`s were made, offers to serve refused, and
    /// serving connections now: `{bytesFromPeers, bytesToPeers,
    /// channelsOpened, connectionsMade, offersRefused, idleClosed,
    /// servingLinks}`.
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let s = self.inner.borrow().stats();
        let obj = Object::new();
        Reflect::set(
            &obj,
            &"bytesFromPeers".into(),
            &(s.from_peers as f64).into(),
        )?;
        Reflect::set(&obj, &"bytesToPeers".into(), &(s.to_peers as f64).into())?;
        Reflect::set(
            &obj,
            &"bytesFromOrigin".into(),
            &(s.from_origin as f64).into(),
        )?;
        Reflect::set(
            &obj,
            &"channelsOpened".into(),
            &(s.channels_opened as f64).into(),
        )?;
        let inner = self.inner.borrow();
        let counts = [
            ("connectionsMade", s.connections_made as f64),
            ("offersRefused", s.offers_refused as f64),
            ("idleClosed", s.idle_closed as f64),
            ("servingLinks", inner.serving_links() as f64),
        ];
        for (name, n) in counts {
            Reflect::set(&obj, &name.into(), &n.into())?;
        }
        Ok(obj.into())
    }

    /// Test builds only (`test-hooks` feature): from now on, every chunk
    /// this peer serves has a byte flipped, as a dishonest holder would.
    #[cfg(feature = "test-hooks")]
    #[wasm_bindgen(js_name = corruptServedChunks)]
    pub fn corrupt_served_chunks(&self, on: bool) {
        self.inner.borrow_mut().corrupt_served = on;
    }

    /// Test builds only (`test-hooks` feature): from now on, chunks this
    /// peer serves go as a tarpit would send them: `"empty"`, frames with
    /// no payload for the first chunk asked, over and over; `"trickle"`,
    /// the real bytes at 10 KiB/s; `null`, honestly again.
    #[cfg(feature = "test-hooks")]
    #[wasm_bindgen(js_name = tarpitServedChunks)]
    pub fn tarpit_served_chunks(&self, mode: Option<String>) -> Result<(), JsValue> {
        let mode = match mode.as_deref() {
            None => None,
            Some(name) => Some(crate::peer::TarpitMode::parse(name).ok_or_else(|| {
                PeerError::Refused(format!(
                    "no tarpit mode {name:?}: use \"empty\" or \"trickle\""
                ))
            })?),
        };
        self.inner.borrow_mut().tarpit = mode;
        Ok(())
    }

    /// Disconnects from the broker and every peer.
    pub fn close(&self) {
        self.inner.borrow_mut().close();
    }
}
