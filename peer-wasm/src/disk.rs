//! Big downloads on disk: batches of verified chunks written to files in
//! the origin private file system (OPFS), then read back as disk-backed
//! `File`s. Chromium keeps `Blob`s made by a page in memory up to a fixed
//! budget (500 MiB for the whole browser here), so content of that order
//! cannot live in `Blob` parts; OPFS files are bounded by the origin's
//! storage quota instead.
//!
//! Each tab writes under its own directory, `peerpage/<tab>/<content>/`,
//! and holds a Web Lock named after it for as long as it lives. A tab that
//! opens the store removes the directories of tabs that hold no lock any
//! more (closed or crashed), so files never outlive their tab for long.
//! Where OPFS or Web Locks are missing, downloads stay in `Blob` parts.
//! The store opens with the first big download, not with the page: opening
//! it costs the page's start (and a share link's open time) a few ms.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use protocol::ContentId;
use wasm_bindgen::{closure::Closure, JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    File, FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemRemoveOptions, FileSystemWritableFileStream,
};

use crate::error::{PeerError, Result};

/// The directory all tabs' stores live in.
const ROOT: &str = "peerpage";
/// Prefix of the Web Lock a tab holds for its directory.
const LOCK_PREFIX: &str = "peerpage-store-";

/// The disk store once open (shared by the downloads that wait for it).
pub type DiskSlot = Rc<RefCell<Option<Rc<Disk>>>>;

/// This tab's directory in the origin private file system.
pub struct Disk {
    dir: FileSystemDirectoryHandle,
}

impl Disk {
    /// Opens this tab's directory, after clearing those of tabs that are
    /// gone; `None` where OPFS or Web Locks are unavailable.
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
        Ok(Disk {
            dir: directory(&root, &tab).await?,
        })
    }

    /// Writes `parts` (`Uint8Array`s) as batch `batch` of `content`;
    /// returns the file to read it from.
    pub async fn write_batch(
        &self,
        content: &ContentId,
        batch: u32,
        parts: &Array,
    ) -> Result<File> {
        let dir = directory(&self.dir, &content.to_string()).await?;
        let options = FileSystemGetFileOptions::new();
        options.set_create(true);
        let handle: FileSystemFileHandle =
            JsFuture::from(dir.get_file_handle_with_options(&batch.to_string(), &options))
                .await?
                .dyn_into()?;
        let writable: FileSystemWritableFileStream =
            JsFuture::from(handle.create_writable()).await?.dyn_into()?;
        for part in parts.iter() {
            let part: Uint8Array = part.dyn_into()?;
            JsFuture::from(writable.write_with_buffer_source(&part)?).await?;
        }
        JsFuture::from(writable.close()).await?;
        Ok(JsFuture::from(handle.get_file()).await?.dyn_into()?)
    }

    /// Removes what `content` left on disk (in the background).
    pub fn remove(&self, content: &ContentId) {
        let removal = remove(&self.dir, &content.to_string());
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(removal).await;
        });
    }
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
