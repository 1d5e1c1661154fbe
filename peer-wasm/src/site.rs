//! `peer.fetchUrl(input, init?)`: fetch's own signature, for the files of
//! a site's index (`peerpage.json`, see `protocol::site`): a GET of a
//! listed URL resolves with a `Response` whose body streams bytes verified
//! against the index's address, taken from peers that hold the file and
//! from the origin where they cannot help (see
//! `protocol::download::origin`). Anything else is a plain `fetch`.
//!
//! The index is fetched once per URL (`new URL("/peerpage.json", url)`,
//! or `init.peerpageIndex`) and kept; so are failures to get it, which
//! make every request to that site a plain fetch.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use protocol::manifest::{Manifest, MAX_MANIFEST_BYTES};
use protocol::release::{index_path, SignedRelease};
use protocol::site::{SiteIndex, MANIFEST_DIR};
use protocol::ContentId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, ReadableStream, ReadableStreamDefaultController, Response, ResponseInit, Url,
};

use crate::peer::{Inner, Origin};
use crate::store::ChunkRead;

/// Site indexes by URL: being fetched, or as they turned out; and those of
/// followed sites (see `crate::follow`), which come only from verified
/// releases.
#[derive(Default)]
pub struct Indexes {
    map: HashMap<String, Entry>,
    /// Index URLs of followed sites, and their verified index, once any.
    pub followed: HashMap<String, Option<Rc<SiteIndex>>>,
}

enum Entry {
    Loading(Vec<oneshot::Sender<Option<Rc<SiteIndex>>>>),
    Ready(Option<Rc<SiteIndex>>),
}

/// What a request is, if it is ours.
struct Listed {
    url: String,
    index_url: Url,
    file_url: Url,
}

fn js_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            e.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The global `fetch`, called as the page would.
fn plain_fetch(input: &JsValue, init: &JsValue) -> Result<Promise, JsValue> {
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into())?.dyn_into()?;
    Ok(fetch
        .call2(&JsValue::UNDEFINED, input, init)?
        .unchecked_into())
}

/// The URL and index of a GET we may serve, else `None`.
fn listed_request(input: &JsValue, init: &JsValue) -> Result<Option<Listed>, JsValue> {
    let get = |o: &JsValue, k: &str| {
        Reflect::get(o, &k.into())
            .ok()
            .filter(|v| !v.is_undefined())
    };
    let request = input.dyn_ref::<web_sys::Request>();
    let method = get(init, "method")
        .and_then(|m| m.as_string())
        .or_else(|| request.map(|r| r.method()))
        .unwrap_or_else(|| "GET".into());
    if !method.eq_ignore_ascii_case("GET") {
        return Ok(None);
    }
    // A range of its own, or any other header, is the page's business.
    let headers = get(init, "headers").is_some()
        || request.is_some_and(|r| r.headers().has("range").unwrap_or(false));
    if headers {
        return Ok(None);
    }
    let base = web_sys::window().ok_or("no window")?.location().href()?;
    let text = match request {
        Some(r) => r.url(),
        None => js_sys::JsString::from(input.clone()).into(),
    };
    let file_url = Url::new_with_base(&text, &base)?;
    let index = get(init, "peerpageIndex")
        .and_then(|v| v.as_string())
        .unwrap_or_else(|| "/peerpage.json".into());
    let index_url = Url::new_with_base(&index, &file_url.href())?;
    if index_url.origin() != file_url.origin() || !file_url.search().is_empty() {
        return Ok(None);
    }
    Ok(Some(Listed {
        url: file_url.href(),
        index_url,
        file_url,
    }))
}

/// `GET url` as bytes, at most `limit` of them; `None` if not found.
pub async fn get_bytes(url: &str, limit: usize) -> Result<Option<Vec<u8>>, String> {
    get(url, limit, false).await
}

/// As [`get_bytes`], revalidated with the server whatever the cache holds
/// (a release record must be the server's current one).
pub async fn get_fresh(url: &str, limit: usize) -> Result<Option<Vec<u8>>, String> {
    get(url, limit, true).await
}

async fn get(url: &str, limit: usize, fresh: bool) -> Result<Option<Vec<u8>>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = web_sys::RequestInit::new();
    if fresh {
        init.set_cache(web_sys::RequestCache::NoCache);
    }
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| js_text(&e))?
        .unchecked_into();
    if response.status() == 404 || response.status() == 410 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(format!("{url} answered HTTP {}", response.status()));
    }
    let length = response.headers().get("Content-Length").ok().flatten();
    if length
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l > limit)
    {
        return Err(format!("{url} is over the {limit}-byte limit"));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(|e| js_text(&e))?)
        .await
        .map_err(|e| js_text(&e))?;
    let bytes = Uint8Array::new(&buffer);
    if bytes.length() as usize > limit {
        return Err(format!("{url} is over the {limit}-byte limit"));
    }
    Ok(Some(bytes.to_vec()))
}

/// The index at `url`, fetched once; `None` if there is none or it is
/// not valid (then the site is fetched plainly).
async fn index_at(indexes: &Rc<RefCell<Indexes>>, url: &str) -> Option<Rc<SiteIndex>> {
    // A followed site's index is its newest verified release's, or none
    // (a plain fetch) until one is verified.
    if let Some(verified) = indexes.borrow().followed.get(url) {
        return verified.clone();
    }
    let rx = {
        let mut map = indexes.borrow_mut();
        match map.map.get_mut(url) {
            Some(Entry::Ready(index)) => return index.clone(),
            Some(Entry::Loading(waiters)) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Some(rx)
            }
            None => {
                map.map.insert(url.to_owned(), Entry::Loading(Vec::new()));
                None
            }
        }
    };
    if let Some(rx) = rx {
        return rx.await.ok().flatten();
    }
    let index = match get_bytes(url, protocol::site::MAX_INDEX_BYTES).await {
        Ok(Some(bytes)) => match index_of(url, &bytes).await {
            Ok(index) => Some(Rc::new(index)),
            Err(e) => {
                web_sys::console::warn_1(
                    &format!("{url}: {e}; its site is fetched plainly").into(),
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            web_sys::console::warn_1(&format!("{e}; the site is fetched plainly").into());
            None
        }
    };
    let old = indexes
        .borrow_mut()
        .map
        .insert(url.to_owned(), Entry::Ready(index.clone()));
    if let Some(Entry::Loading(waiters)) = old {
        for w in waiters {
            let _ = w.send(index.clone());
        }
    }
    index
}

/// The index that `bytes`, served at `url`, is or names: an index, or a
/// release record whose index is fetched beside it and checked against the
/// record's address (its signature is the business of following a site:
/// here the origin is trusted as a plain fetch would be).
async fn index_of(url: &str, bytes: &[u8]) -> Result<SiteIndex, String> {
    let record = match SiteIndex::parse(bytes) {
        Ok(index) => return Ok(index),
        Err(not_index) => SignedRelease::parse(bytes).map_err(|_| not_index.to_string())?,
    };
    release_index(url, &record).await
}

/// The index of `record`, served beside the record at `url`: its manifest
/// checked against the record's address and its bytes against the
/// manifest.
pub async fn release_index(url: &str, record: &SignedRelease) -> Result<SiteIndex, String> {
    let address = record.release.index;
    let at = |path: String| {
        Url::new_with_base(&path, url)
            .map(|u| u.href())
            .map_err(|e| js_text(&e))
    };
    let manifest_bytes = get_bytes(
        &at(format!("{MANIFEST_DIR}/{address}"))?,
        MAX_MANIFEST_BYTES,
    )
    .await?
    .ok_or("the release's index has no manifest")?;
    let manifest = Manifest::verify(&address, &manifest_bytes).map_err(|e| e.to_string())?;
    let limit = protocol::site::MAX_INDEX_BYTES.min(manifest.size as usize);
    let index_bytes = get_bytes(&at(index_path(&address))?, limit)
        .await?
        .ok_or("the release's index is missing")?;
    let whole = index_bytes.len() as u64 == manifest.size
        && (0..manifest.chunk_count()).all(|i| {
            let start = i as usize * manifest.chunk_size as usize;
            manifest.chunk_matches(i, &index_bytes[start..start + manifest.chunk_len(i)])
        });
    if !whole {
        return Err("the release's index does not match its address".into());
    }
    SiteIndex::parse(&index_bytes).map_err(|e| e.to_string())
}

fn abort_error() -> JsValue {
    web_sys::DomException::new_with_message_and_name("the fetch was aborted", "AbortError")
        .map(JsValue::from)
        .unwrap_or_else(|e| e)
}

/// `fetchUrl`: see the module docs.
pub fn fetch_url(
    inner: Weak<RefCell<Inner>>,
    indexes: Rc<RefCell<Indexes>>,
    input: JsValue,
    init: JsValue,
) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let listed = listed_request(&input, &init)?;
        let Some(listed) = listed else {
            return JsFuture::from(plain_fetch(&input, &init)?).await;
        };
        let signal: Option<AbortSignal> = Reflect::get(&init, &"signal".into())
            .ok()
            .and_then(|s| s.dyn_into().ok());
        if signal.as_ref().is_some_and(AbortSignal::aborted) {
            return Err(abort_error());
        }
        let Some(index) = index_at(&indexes, &listed.index_url.href()).await else {
            return JsFuture::from(plain_fetch(&input, &init)?).await;
        };
        let Some((path, file)) =
            index.lookup(&listed.index_url.pathname(), &listed.file_url.pathname())
        else {
            return JsFuture::from(plain_fetch(&input, &init)?).await;
        };
        let (path, content, size, media_type) = (
            path.to_owned(),
            file.address,
            file.size,
            file.media_type.clone(),
        );
        let rc = inner.upgrade().ok_or("the peer was closed")?;
        let held = rc.borrow().held(&content);
        let failure = if held.as_ref().is_some_and(|h| h.is_complete()) {
            None
        } else {
            let manifest_url = Url::new_with_base(
                &format!("{MANIFEST_DIR}/{content}"),
                &listed.index_url.href(),
            )?;
            let bytes = get_bytes(&manifest_url.href(), MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| js_sys::Error::new(&format!("cannot get the manifest of {path}: {e}")))?
                .ok_or_else(|| {
                    js_sys::Error::new(&format!(
                        "the site lists {path} but has no manifest for it at {}: re-run `peerpage manifest`",
                        manifest_url.href()
                    ))
                })?;
            let origin = Origin::new(listed.url.clone(), path.clone());
            let failure = origin.failure.clone();
            rc.borrow_mut()
                .start_site_fetch(content, bytes, origin)
                .map_err(|e| js_sys::Error::new(&e))?;
            // Joined a download under way: its origin's reason, if any.
            Some(rc.borrow().site_failure(&content).unwrap_or(failure))
        };
        drop(rc);
        let stream = Body {
            inner: inner.clone(),
            content,
            next: std::cell::Cell::new(0),
            failure,
            signal: signal.clone(),
        }
        .into_stream()?;
        if let Some(signal) = &signal {
            let weak = inner.clone();
            let on_abort = Closure::once_into_js(move || {
                if let Some(rc) = weak.upgrade() {
                    let mut inner = rc.borrow_mut();
                    if inner.held(&content).is_some_and(|h| !h.is_complete()) {
                        inner.cancel(&content);
                    }
                }
            });
            let _ = signal.add_event_listener_with_callback("abort", on_abort.unchecked_ref());
        }
        let headers = web_sys::Headers::new()?;
        headers.set("Content-Type", &media_type)?;
        headers.set("Content-Length", &size.to_string())?;
        let response_init = ResponseInit::new();
        response_init.set_status(200);
        response_init.set_headers(&headers);
        Ok(Response::new_with_opt_readable_stream_and_init(Some(&stream), &response_init)?.into())
    })
}

/// A response body: the verified chunks of `content`, in order, as they
/// are stored.
struct Body {
    inner: Weak<RefCell<Inner>>,
    content: ContentId,
    next: std::cell::Cell<u32>,
    /// Why the download failed, if it did.
    failure: Option<Rc<RefCell<Option<String>>>>,
    signal: Option<AbortSignal>,
}

impl Body {
    fn into_stream(self) -> Result<ReadableStream, JsValue> {
        let body = Rc::new(self);
        let pull = Closure::<dyn FnMut(ReadableStreamDefaultController) -> Promise>::new(
            move |controller: ReadableStreamDefaultController| {
                let body = body.clone();
                wasm_bindgen_futures::future_to_promise(async move {
                    match body.pull().await {
                        Ok(Some(bytes)) => controller.enqueue_with_chunk(&bytes)?,
                        Ok(None) => controller.close()?,
                        Err(e) => controller.error_with_e(&e),
                    }
                    Ok(JsValue::UNDEFINED)
                })
            },
        );
        let source = Object::new();
        Reflect::set(&source, &"pull".into(), &pull.into_js_value())?;
        ReadableStream::new_with_underlying_source(&source)
    }

    /// The next chunk once it is verified and stored; `None` at the end.
    async fn pull(&self) -> Result<Option<Uint8Array>, JsValue> {
        loop {
            if self.signal.as_ref().is_some_and(AbortSignal::aborted) {
                return Err(abort_error());
            }
            let rc = self.inner.upgrade().ok_or("the peer was closed")?;
            let held = rc.borrow().held(&self.content);
            let index = self.next.get();
            let Some(held) = held else {
                let why = self.failure.as_ref().and_then(|f| f.borrow().clone());
                let why = why.unwrap_or_else(|| "the download was cancelled".into());
                return Err(js_sys::Error::new(&why).into());
            };
            if index >= held.manifest.chunk_count() {
                return Ok(None);
            }
            if held.has(index) {
                let bytes = match held.read_chunk(index).map_err(JsValue::from)? {
                    ChunkRead::Ready(bytes) => bytes.slice(0, bytes.length()),
                    ChunkRead::Pending { read, at, len } => {
                        let buffer = JsFuture::from(read).await?;
                        Uint8Array::new(&buffer).slice(at, at + len)
                    }
                };
                self.next.set(index + 1);
                return Ok(Some(bytes));
            }
            let stored = rc.borrow_mut().on_stored(self.content);
            drop(rc);
            // Fires on the next chunk stored, or when the download ends.
            let _ = stored.await;
        }
    }
}
