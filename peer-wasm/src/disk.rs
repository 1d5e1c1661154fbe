//! Big downloads on disk: batches of verified chunks written to files in
//! the origin private file system (OPFS), then read back as disk-backed
//! `File`s. Chromium keeps `Blob`s made by a page in memory up to a fixed
//! budget (500 MiB for the whole browser here), so content of that order
//! cannot live in `Blob` parts; OPFS files are bounded by the origin's
//! storage quota instead.
//!
//! A dedicated worker ([`WORKER`]) writes the files with synchronous access
//! handles, which write straight from the page's process. A page's own
//! writable streams pass every byte through the browser process instead:
//! measured in Chromium here, 100 MiB cost 0.9 s of CPU that way and under
//! 0.1 s from the worker, on a machine whose cores the transfer itself
//! keeps busy. The worker takes one request at a time, in order, so a
//! removal follows the writes before it.
//!
//! Each tab writes under its own directory, `peerpage/<tab>/<content>/`,
//! and holds a Web Lock named after it for as long as it lives. A tab that
//! opens the store removes the directories of tabs that hold no lock any
//! more (closed or crashed), so files never outlive their tab for long.
//! Where OPFS, Web Locks, workers or synchronous access handles are
//! missing (or a content security policy forbids `blob:` workers),
//! downloads stay in `Blob` parts. The store opens with the first big
//! download, not with the page: opening it costs the page's start (and a
//! share link's open time) a few ms.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, ErrorEvent, File, FileSystemDirectoryHandle,
    FileSystemGetDirectoryOptions, FileSystemRemoveOptions, MessageEvent, Url, Worker,
};

use crate::error::{PeerError, Result};

/// The directory all tabs' stores live in.
const ROOT: &str = "peerpage";
/// Prefix of the Web Lock a tab holds for its directory.
const LOCK_PREFIX: &str = "peerpage-store-";

/// The worker that writes, reads and removes this tab's files. Requests
/// are `{op: "open", root, tab}`, `{op: "write", content, name, parts}`,
/// `{op: "read", content, name, from, to}` and `{op: "remove", content}`;
/// each is answered, in order, with `{value}` (the written file, the bytes
/// read as an `ArrayBuffer`, or null) or `{error, parts}` (a batch that
/// could not be written comes back). Buffers are transferred both ways,
/// never copied: copying 4 MiB to a worker cost the page's main thread
/// 17 ms here. Written files stay open for reading, up to 64 of them:
/// opening one costs a trip through the browser process (2 ms here), a
/// read from an open one only the copy (0.5 ms per MiB, against 3 ms per
/// MiB of CPU for reading the same file as a `Blob`).
///
/// The script is `disk_worker.js`, built into the module and started from
/// a `blob:` URL (`just lint` syntax-checks it).
const WORKER: &str = include_str!("disk_worker.js");

/// The disk store once open (shared by the downloads that wait for it).
pub type DiskSlot = Rc<RefCell<Option<Rc<Disk>>>>;

/// Requests sent to the worker and not yet answered, oldest first.
type Pending = Rc<RefCell<VecDeque<(Function, Function)>>>;

/// This tab's directory in the origin private file system, written by its
/// worker.
pub struct Disk {
    worker: Worker,
    pending: Pending,
    /// Why the worker stopped, once it has.
    broken: Rc<RefCell<Option<String>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

impl Disk {
    /// Opens this tab's directory, after clearing those of tabs that are
    /// gone; `None` where the store cannot work in this browser.
    pub async fn open() -> Option<Disk> {
        match Self::try_open().await {
            Ok(disk) => Some(disk),
            Err(e) => {
                web_sys::console::info_1(
                    &format!("big downloads stay in memory: no disk store ({e})").into(),
                );
                None
            }
        }
    }

    async fn try_open() -> Result<Disk> {
        let navigator = web_sys::window()
            .ok_or_else(|| PeerError::Refused("no window".into()))?
            .navigator();
        let locks = Reflect::get(&navigator, &"locks".into())?;
        if locks.is_undefined() {
            return Err(PeerError::Refused("Web Locks are unavailable".into()));
        }
        let origin_root: FileSystemDirectoryHandle =
            JsFuture::from(navigator.storage().get_directory())
                .await?
                .dyn_into()?;
        let root = directory(&origin_root, ROOT).await?;
        let tab = format!(
            "tab-{:08x}",
            (js_sys::Math::random() * f64::from(u32::MAX)) as u32
        );
        // Held until the tab goes: a request whose callback never settles.
        let hold = Closure::once_into_js(|| Promise::new(&mut |_, _| {}));
        call(
            &locks,
            "request",
            &[&format!("{LOCK_PREFIX}{tab}").into(), &hold],
        )?;
        sweep(&root, &locks).await?;
        let disk = Self::start_worker()?;
        JsFuture::from(disk.request(
            &message(&[
                ("op", "open".into()),
                ("root", ROOT.into()),
                ("tab", tab.into()),
            ])?,
            &Array::new(),
        )?)
        .await
        .map_err(|e| {
            PeerError::Refused(format!(
                "the disk worker cannot start: {}",
                WriteFailed::from(e).error
            ))
        })?;
        Ok(disk)
    }

    fn start_worker() -> Result<Disk> {
        let options = BlobPropertyBag::new();
        options.set_type("text/javascript");
        let source =
            Blob::new_with_str_sequence_and_options(&Array::of1(&WORKER.into()), &options)?;
        let url = Url::create_object_url_with_blob(&source)?;
        let worker = Worker::new(&url);
        // The worker has its own reference to the script once created.
        let _ = Url::revoke_object_url(&url);
        let worker = worker?;
        let pending = Pending::default();
        let broken = Rc::new(RefCell::new(None));
        let on_message = {
            let pending = pending.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some((resolve, reject)) = pending.borrow_mut().pop_front() else {
                    return;
                };
                let data = event.data();
                let failed = Reflect::has(&data, &"error".into()).unwrap_or(false);
                let _ = if failed {
                    reject.call1(&JsValue::NULL, &data)
                } else {
                    let value = Reflect::get(&data, &"value".into()).unwrap_or(JsValue::NULL);
                    resolve.call1(&JsValue::NULL, &value)
                };
            })
        };
        // The worker failed to load or died: nothing it was asked will be
        // answered, and nothing more is asked.
        let on_error = {
            let (pending, broken) = (pending.clone(), broken.clone());
            Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
                let why = format!("the disk worker failed: {}", event.message());
                let error = message(&[("error", why.as_str().into())]).unwrap_or_default();
                for (_, reject) in pending.borrow_mut().drain(..) {
                    let _ = reject.call1(&JsValue::NULL, &error);
                }
                *broken.borrow_mut() = Some(why);
            })
        };
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Ok(Disk {
            worker,
            pending,
            broken,
            _on_message: on_message,
            _on_error: on_error,
        })
    }

    /// Sends `message` to the worker, handing over the buffers in
    /// `transfer`; resolves with its answer or rejects with its `{error}`.
    fn request(&self, message: &JsValue, transfer: &Array) -> Result<Promise> {
        if let Some(why) = &*self.broken.borrow() {
            return Err(PeerError::Refused(why.clone()));
        }
        let pending = self.pending.clone();
        let answer = Promise::new(&mut |resolve, reject| {
            pending.borrow_mut().push_back((resolve, reject));
        });
        if let Err(e) = self.worker.post_message_with_transfer(message, transfer) {
            self.pending.borrow_mut().pop_back();
            return Err(e.into());
        }
        Ok(answer)
    }

    /// Writes `parts` (`Uint8Array`s, each the whole of its buffer, handed
    /// over to the worker: they are empty here afterwards) as batch `batch`
    /// of the content stored under `key`; returns the file it is in.
    pub async fn write_batch(
        &self,
        key: &str,
        batch: u32,
        parts: &Array,
    ) -> std::result::Result<File, WriteFailed> {
        let buffers: Array = parts
            .iter()
            .map(|part| Reflect::get(&part, &"buffer".into()).unwrap_or_default())
            .collect();
        // Not sent: the parts are still here.
        let unsent = |e: PeerError| WriteFailed {
            error: e.to_string(),
            parts: Some(parts.clone()),
        };
        let request = message(&[
            ("op", "write".into()),
            ("content", key.into()),
            ("name", batch.to_string().into()),
            ("parts", parts.into()),
        ])
        .map_err(unsent)?;
        let written = self.request(&request, &buffers).map_err(unsent)?;
        let file = JsFuture::from(written).await?;
        file.dyn_into().map_err(|_| WriteFailed {
            error: "the disk worker answered a write without a file".into(),
            parts: None,
        })
    }

    /// Reads bytes `from..to` (or to its end) of batch `batch` of the
    /// content stored under `key`: resolves to an `ArrayBuffer`.
    pub fn read(&self, key: &str, batch: u32, from: u64, to: u64) -> Result<Promise> {
        let request = message(&[
            ("op", "read".into()),
            ("content", key.into()),
            ("name", batch.to_string().into()),
            ("from", (from as f64).into()),
            ("to", (to as f64).into()),
        ])?;
        self.request(&request, &Array::new())
    }

    /// Removes what the content stored under `key` left on disk (in the
    /// background, after the requests already made).
    pub fn remove(&self, key: &str) {
        let removal = message(&[("op", "remove".into()), ("content", key.into())])
            .and_then(|m| self.request(&m, &Array::new()));
        if let Ok(removal) = removal {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = JsFuture::from(removal).await;
            });
        }
    }
}

/// Why a batch was not written, and its chunks if they came back (they
/// do unless the worker died holding them).
pub struct WriteFailed {
    pub error: String,
    pub parts: Option<Array>,
}

impl From<JsValue> for WriteFailed {
    /// From the worker's `{error, parts}`, or any other rejection.
    fn from(value: JsValue) -> Self {
        let field = |name: &str| Reflect::get(&value, &name.into()).unwrap_or_default();
        let error = field("error")
            .as_string()
            .unwrap_or_else(|| format!("{value:?}"));
        let parts = field("parts")
            .dyn_into::<Array>()
            .ok()
            .filter(|parts| parts.length() > 0);
        WriteFailed { error, parts }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

/// A plain object with these fields.
fn message(fields: &[(&str, JsValue)]) -> Result<JsValue> {
    let object = Object::new();
    for (name, value) in fields {
        Reflect::set(&object, &(*name).into(), value)?;
    }
    Ok(object.into())
}

/// `parent/name`, created if missing.
async fn directory(
    parent: &FileSystemDirectoryHandle,
    name: &str,
) -> Result<FileSystemDirectoryHandle> {
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    Ok(
        JsFuture::from(parent.get_directory_handle_with_options(name, &options))
            .await?
            .dyn_into()?,
    )
}

fn remove(parent: &FileSystemDirectoryHandle, name: &str) -> Promise {
    let options = FileSystemRemoveOptions::new();
    options.set_recursive(true);
    parent.remove_entry_with_options(name, &options)
}

/// Removes the directories of tabs that hold no lock.
async fn sweep(root: &FileSystemDirectoryHandle, locks: &JsValue) -> Result<()> {
    let state = JsFuture::from(call(locks, "query", &[])?.dyn_into::<Promise>()?).await?;
    let held: Vec<String> = Array::from(&Reflect::get(&state, &"held".into())?)
        .iter()
        .filter_map(|lock| Reflect::get(&lock, &"name".into()).ok()?.as_string())
        .collect();
    let names = root.keys();
    loop {
        let next = JsFuture::from(names.next()?).await?;
        if Reflect::get(&next, &"done".into())?.is_truthy() {
            break;
        }
        let Some(name) = Reflect::get(&next, &"value".into())?.as_string() else {
            continue;
        };
        if !held.contains(&format!("{LOCK_PREFIX}{name}")) {
            let _ = JsFuture::from(remove(root, &name)).await;
        }
    }
    Ok(())
}

/// Calls `target[method](...args)`.
fn call(target: &JsValue, method: &str, args: &[&JsValue]) -> Result<JsValue> {
    let f: Function = Reflect::get(target, &method.into())?.dyn_into()?;
    let args: Array = args.iter().copied().collect();
    Ok(f.apply(target, &args)?)
}
