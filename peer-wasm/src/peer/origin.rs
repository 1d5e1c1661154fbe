//! The site's origin as a holder (see `protocol::download::origin`): each
//! request the download sends it becomes one HTTP `Range` request, whose
//! body is handed back as chunk frames over that lane, so the download
//! checks, keeps and verifies the origin's bytes as it does a peer's.
//!
//! The origin is trusted no more than a peer: a `200` where a `206` was
//! asked (the body then starts at byte 0 and is skipped to the range), a
//! `Content-Range` other than asked, a short body, or a file changed since
//! its manifest (`If-Match` on the first answer's strong ETag: a `412`)
//! each end the origin's part in the download with a message that names
//! the file; a chunk that fails verification bans it.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Reflect, Uint8Array};
use protocol::download::{Conn, HolderId, Input};
use protocol::transfer::{FrameHead, FrameKind, Reply};
use protocol::ContentId;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStreamDefaultReader, RequestInit, Response};

use super::{with_inner, Inner};

/// A site fetch's origin: where the file is and what it said so far.
pub struct Origin {
    /// The file's URL.
    pub url: String,
    /// Its path in the site's index, for messages.
    pub path: String,
    /// The strong ETag of its first answer, sent as `If-Match` after.
    etag: Rc<RefCell<Option<String>>>,
    /// Each lane's request in flight, to abort when the download drops it.
    lanes: Vec<Option<(u64, AbortController)>>,
    serial: u64,
    /// Why the origin's part ended, if it did (for the page's error).
    pub failure: Rc<RefCell<Option<String>>>,
    /// Bytes the origin delivered.
    pub bytes: Rc<Cell<u64>>,
}

impl Origin {
    pub fn new(url: String, path: String) -> Origin {
        Origin {
            url,
            path,
            etag: Rc::default(),
            lanes: Vec::new(),
            serial: 0,
            failure: Rc::default(),
            bytes: Rc::default(),
        }
    }

    /// Aborts the request in flight on `lane`, if any.
    pub fn abort(&mut self, lane: u8) {
        if let Some(Some((_, controller))) = self.lanes.get_mut(lane as usize).map(Option::take) {
            controller.abort();
        }
    }

    /// Aborts every request in flight.
    pub fn abort_all(&mut self) {
        for lane in 0..self.lanes.len() {
            self.abort(lane as u8);
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// What one range request asks for.
struct Range {
    content: ContentId,
    lane: u8,
    serial: u64,
    /// Bytes `[start, end)` of the file.
    start: u64,
    end: u64,
    size: u64,
    chunk_size: u64,
}

impl Inner {
    /// The download asks the origin for chunks `indices` (neighbours) on
    /// `lane`: one range request.
    pub(super) fn origin_request(&mut self, content: ContentId, lane: u8, indices: &[u32]) {
        let Some(fetch) = self.fetches.get_mut(&content) else {
            return;
        };
        let (Some(origin), Some(m)) = (fetch.origin.as_mut(), fetch.download.manifest()) else {
            return;
        };
        let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
            return;
        };
        let chunk_size = u64::from(m.chunk_size);
        let range = Range {
            content,
            lane,
            serial: origin.serial + 1,
            start: u64::from(first) * chunk_size,
            end: ((u64::from(last) + 1) * chunk_size).min(m.size),
            size: m.size,
            chunk_size,
        };
        let Ok(controller) = AbortController::new() else {
            return;
        };
        origin.serial += 1;
        origin.abort(lane);
        if origin.lanes.len() <= lane as usize {
            origin.lanes.resize_with(lane as usize + 1, || None);
        }
        origin.lanes[lane as usize] = Some((range.serial, controller.clone()));
        let (url, path, etag) = (origin.url.clone(), origin.path.clone(), origin.etag.clone());
        let weak = self.me.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let (content, lane, serial) = (range.content, range.lane, range.serial);
            let result = read_range(&weak, &url, &etag, &range, &controller).await;
            if let Err(why) = result {
                if controller.signal().aborted() {
                    // Dropped by the download, or the fetch ended.
                    return;
                }
                let message = format!("the origin's {path}: {why}");
                with_inner(&weak, move |inner| {
                    inner.origin_failed(content, lane, serial, message)
                });
            }
        });
    }

    /// The request on `lane` failed: the origin has no further part in
    /// this download (the download drops it and says why).
    fn origin_failed(&mut self, content: ContentId, lane: u8, serial: u64, message: String) {
        let Some(origin) = self.fetches.get(&content).and_then(|f| f.origin.as_ref()) else {
            return;
        };
        let current = origin.lanes.get(lane as usize).and_then(Option::as_ref);
        if current.is_none_or(|(s, _)| *s != serial) {
            return;
        }
        origin.failure.borrow_mut().replace(message.clone());
        let conn = Conn {
            holder: HolderId::Origin,
            lane,
        };
        self.drive(content, Input::Reply(conn, Reply::Refused { message }));
    }

    /// Whether `serial` is still the request on `lane`.
    fn origin_current(&self, content: &ContentId, lane: u8, serial: u64) -> bool {
        let origin = self.fetches.get(content).and_then(|f| f.origin.as_ref());
        let current = origin.and_then(|o| o.lanes.get(lane as usize)?.as_ref());
        current.is_some_and(|(s, _)| *s == serial)
    }

    /// Hands `piece`, the bytes of the file from `at`, to the download as
    /// chunk frames over `lane`.
    fn origin_bytes(&mut self, range: &Range, at: u64, piece: &Uint8Array) -> bool {
        if !self.origin_current(&range.content, range.lane, range.serial) {
            return false;
        }
        let conn = Conn {
            holder: HolderId::Origin,
            lane: range.lane,
        };
        let mut done = 0u64;
        let len = u64::from(piece.length());
        while done < len {
            let pos = at + done;
            let index = (pos / range.chunk_size) as u32;
            let chunk_start = u64::from(index) * range.chunk_size;
            let chunk_len = range.chunk_size.min(range.size - chunk_start);
            let offset = pos - chunk_start;
            let take = (chunk_len - offset).min(len - done);
            let part = piece.subarray(done as u32, (done + take) as u32);
            let head = FrameHead {
                kind: FrameKind::Chunk,
                index,
                offset: offset as u32,
                total: chunk_len as u32,
                len: take as u32,
            };
            if let Some(origin) = self
                .fetches
                .get(&range.content)
                .and_then(|f| f.origin.as_ref())
            {
                origin.bytes.set(origin.bytes.get() + take);
            }
            self.stats.from_origin += take;
            self.on_chunk_frame(range.content, conn, head, &part);
            done += take;
            if !self.origin_current(&range.content, range.lane, range.serial) {
                return false;
            }
        }
        true
    }
}

/// Fetches `range` of the file at `url` and hands its bytes in.
async fn read_range(
    weak: &Weak<RefCell<Inner>>,
    url: &str,
    etag: &RefCell<Option<String>>,
    range: &Range,
    controller: &AbortController,
) -> Result<(), String> {
    let js = |e: JsValue| e.as_string().unwrap_or_else(|| format!("{e:?}"));
    let headers = Headers::new().map_err(js)?;
    let last = range.end - 1;
    headers
        .set("Range", &format!("bytes={}-{last}", range.start))
        .map_err(js)?;
    let if_match = etag.borrow().clone();
    if let Some(tag) = &if_match {
        headers.set("If-Match", tag).map_err(js)?;
    }
    let init = RequestInit::new();
    init.set_headers(&headers);
    init.set_signal(Some(&controller.signal()));
    let window = web_sys::window().ok_or("no window")?;
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .map_err(|e| format!("the request failed ({})", js(e)))?
        .unchecked_into();
    let skip =
        match response.status() {
            206 => {
                let said = response.headers().get("Content-Range").ok().flatten();
                let want = format!("bytes {}-{last}/{}", range.start, range.size);
                if said.as_deref().map(str::trim) != Some(want.as_str()) {
                    return Err(format!(
                    "answered with Content-Range {said:?} where {want:?} was asked; is the file \
                     the one indexed? Re-run `peerpage manifest`"
                ));
                }
                0
            }
            // Ranges not supported: the whole file, from its first byte.
            200 => range.start,
            412 => return Err(
                "changed since it was first read (If-Match failed): re-run `peerpage manifest` \
                 and reload"
                    .into(),
            ),
            status => return Err(format!("answered HTTP {status}")),
        };
    if if_match.is_none() {
        let tag = response.headers().get("ETag").ok().flatten();
        // Only a strong ETag can be matched with If-Match.
        if let Some(tag) = tag.filter(|t| t.starts_with('"')) {
            etag.borrow_mut().get_or_insert(tag);
        }
    }
    let body = response.body().ok_or("answered without a body")?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let wanted = range.end - range.start;
    let (mut skipped, mut got) = (0u64, 0u64);
    while got < wanted {
        let step = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("the transfer failed ({})", js(e)))?;
        if Reflect::get(&step, &"done".into()).is_ok_and(|d| d.is_truthy()) {
            break;
        }
        let value: Uint8Array = Reflect::get(&step, &"value".into())
            .map_err(js)?
            .unchecked_into();
        let mut piece = value;
        if skipped < skip {
            let drop = (skip - skipped).min(u64::from(piece.length()));
            skipped += drop;
            piece = piece.subarray(drop as u32, piece.length());
        }
        let take = (wanted - got).min(u64::from(piece.length()));
        if take == 0 {
            continue;
        }
        let piece = piece.subarray(0, take as u32);
        let at = range.start + got;
        got += take;
        let Some(rc) = weak.upgrade() else {
            return Ok(());
        };
        // Read on a later task than any call into the peer: never busy.
        let Ok(mut inner) = rc.try_borrow_mut() else {
            return Err("the peer was busy".into());
        };
        let going = inner.origin_bytes(range, at, &piece);
        inner.arm_wake();
        drop(inner);
        if !going {
            controller.abort();
            return Ok(());
        }
    }
    if got < wanted {
        return Err(format!(
            "sent {got} of the {wanted} bytes asked (truncated): is the file the one indexed?"
        ));
    }
    // Past the range (a whole body where a range was asked): not needed.
    controller.abort();
    Ok(())
}
