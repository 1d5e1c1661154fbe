//! Content this peer holds, whole or in part, and where its bytes live.
//!
//! Only small content stays in wasm memory. A shared file stays the page's
//! `File` (read a chunk at a time when served). A download of more than
//! one chunk gathers verified chunks (JavaScript buffers, never in the wasm
//! heap) into batches of [`BATCH_BYTES`], each stored as one `Blob`: the
//! browser holds those outside the page's heap, the whole content is one
//! `Blob` of slices of them without copying, and a chunk is read back only
//! to serve it. Making a `Blob` costs the main thread per call as much as
//! per byte (a 256 KiB `Blob` about 0.8 ms, a 4 MiB one 5 ms, measured in
//! Chromium here), so one per batch rather than one per chunk; chunks of
//! the batch being gathered are served straight from memory. Content
//! bigger than [`DISK_ABOVE`] has its batches written to disk instead
//! (see `crate::disk`), where the browser offers it.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use protocol::availability::{Availability, Have};
use protocol::{ContentId, Manifest};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag};

use crate::disk::{Disk, DiskSlot};
use crate::error::Result;

/// Downloads bigger than this keep their batches on disk where they can:
/// Chromium's memory for `Blob`s is a few hundred MiB for the whole
/// browser. Smaller ones stay in memory, which needs no worker and no
/// storage quota.
pub const DISK_ABOVE: u64 = 32 << 20;

/// Verified chunks gathered in memory before they become one `Blob`.
pub const BATCH_BYTES: usize = 4 << 20;
/// Chunks are read from a file or batch this many bytes at a time (at
/// least a chunk): each read costs the main thread a `Blob` slice and a
/// trip through the browser process, so fewer bigger reads are cheaper,
/// and peers ask for neighbouring chunks one after another.
const SPAN_BYTES: u32 = 1 << 20;
/// Spans kept after reading, for the neighbours that follow (one per peer
/// being served, roughly).
const SPANS_KEPT: usize = 4;

/// A span read: of the shared file from chunk `first`, or of a batch from
/// its chunk position `first`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Span {
    File(u32),
    Batch(u32, u32),
}

/// One piece of content this peer holds or is receiving.
pub struct Held {
    /// Its parsed manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes (their SHA-256 is the address).
    pub manifest_bytes: Vec<u8>,
    body: RefCell<Body>,
    have: RefCell<Availability>,
    /// Recent span reads (see [`SPAN_BYTES`]), newest last.
    spans: RefCell<std::collections::VecDeque<(Span, Promise)>>,
}

enum Body {
    /// Small content, or text shared as bytes, in wasm memory (filled as
    /// chunks arrive).
    Memory(Vec<u8>),
    /// A file the page shared.
    File(Blob),
    /// Verified chunks of a download.
    Parts(Parts),
}

/// Where a download's chunks are.
struct Parts {
    place: Vec<Place>,
    batches: Vec<Batch>,
    /// Chunks gathered for the next batch, and their bytes.
    gathering: Vec<u32>,
    gathered: usize,
    /// Where batches go once it is open, if not into memory.
    disk: Option<DiskSlot>,
    /// The content's address (its directory on disk).
    content: ContentId,
}

/// A batch of chunks, stored.
#[derive(Clone)]
enum Batch {
    /// In memory, or written to disk.
    Stored(Blob),
    /// Being written to disk: resolves to the file (or, if the write
    /// failed, to an in-memory `Blob` of the chunks).
    Writing(Promise),
    /// The disk worker died holding it.
    Lost,
}

#[derive(Clone)]
enum Place {
    Absent,
    /// Gathered for the next batch.
    Memory(Uint8Array),
    /// In `batches[batch]` from byte `at`.
    Batch {
        batch: u32,
        at: u64,
    },
}

impl Parts {
    fn new(count: u32, disk: Option<DiskSlot>, content: ContentId) -> Self {
        Parts {
            place: vec![Place::Absent; count as usize],
            batches: Vec::new(),
            gathering: Vec::new(),
            gathered: 0,
            disk,
            content,
        }
    }

    /// Gathers verified chunk `index`; a full batch is stored, or handed to
    /// the disk worker: then returns its number and the write's promise.
    fn add(&mut self, index: u32, bytes: Uint8Array) -> Result<Option<(u32, Promise)>> {
        self.gathered += bytes.length() as usize;
        self.place[index as usize] = Place::Memory(bytes);
        self.gathering.push(index);
        if self.gathered < BATCH_BYTES {
            return Ok(None);
        }
        // In index order, so that neighbours in the content are neighbours
        // in the batch.
        let mut indices = std::mem::take(&mut self.gathering);
        indices.sort_unstable();
        self.gathered = 0;
        let buffers: Array = indices
            .iter()
            .filter_map(|&i| match &self.place[i as usize] {
                Place::Memory(bytes) => Some(bytes.clone()),
                _ => None,
            })
            .collect();
        let batch = self.batches.len() as u32;
        // Placed before the buffers are handed over (and empty here).
        self.placed(batch, &indices);
        // Batches made before the disk opened stay in memory.
        if let Some(disk) = self.disk.as_ref().and_then(|slot| slot.borrow().clone()) {
            let written = write_batch(disk, self.content, batch, buffers);
            self.batches.push(Batch::Writing(written.clone()));
            return Ok(Some((batch, written)));
        }
        self.batches
            .push(Batch::Stored(Blob::new_with_u8_array_sequence(&buffers)?));
        Ok(None)
    }

    /// Batch `batch` of the chunks `indices` (in order) is stored.
    fn placed(&mut self, batch: u32, indices: &[u32]) {
        let mut at = 0u64;
        for &i in indices {
            if let Place::Memory(bytes) = &self.place[i as usize] {
                let len = bytes.length() as u64;
                self.place[i as usize] = Place::Batch { batch, at };
                at += len;
            }
        }
    }

    /// The whole content as parts in order: neighbouring chunks of one
    /// batch as one slice of it (`batches` being the stored batches),
    /// chunks not yet in a batch as their bytes.
    fn slices(&self, batches: &[Blob], chunk_len: impl Fn(u32) -> u64) -> Result<Array> {
        let out = Array::new();
        // The run of (batch, start, end) being merged.
        let mut run: Option<(u32, u64, u64)> = None;
        let flush = |run: &mut Option<(u32, u64, u64)>, out: &Array| -> Result<()> {
            if let Some((b, start, end)) = run.take() {
                let slice = batches[b as usize].slice_with_f64_and_f64(start as f64, end as f64)?;
                out.push(&slice);
            }
            Ok(())
        };
        for (i, place) in self.place.iter().enumerate() {
            match place {
                Place::Batch { batch, at } => match &mut run {
                    Some((b, _, end)) if b == batch && end == at => *end += chunk_len(i as u32),
                    _ => {
                        flush(&mut run, &out)?;
                        run = Some((*batch, *at, at + chunk_len(i as u32)));
                    }
                },
                Place::Memory(bytes) => {
                    flush(&mut run, &out)?;
                    out.push(bytes);
                }
                Place::Absent => {}
            }
        }
        flush(&mut run, &out)?;
        Ok(out)
    }
}

/// Hands a batch (`buffers`, emptied here) to the disk worker in the
/// background; its chunks are read back once it is written. Resolves to
/// the file, or if the write failed, to a `Blob` of the chunks it gave back.
fn write_batch(disk: Rc<Disk>, content: ContentId, batch: u32, buffers: Array) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        match disk.write_batch(&content, batch, &buffers).await {
            Ok(file) => Ok(file.into()),
            Err(failed) => {
                let message = format!("cannot write to disk: {}", failed.error);
                let Some(parts) = failed.parts else {
                    web_sys::console::error_1(&format!("{message}; the batch is lost").into());
                    return Err(message.into());
                };
                web_sys::console::warn_1(&format!("{message}; keeping it in memory").into());
                Ok(Blob::new_with_u8_array_sequence(&parts)?.into())
            }
        }
    })
}

/// A chunk to send: at hand, or being read from a `Blob`.
pub enum ChunkRead {
    /// Already in JavaScript memory.
    Ready(Uint8Array),
    /// `read` resolves to an `ArrayBuffer` holding the chunk's `len` bytes
    /// from byte `at`.
    Pending {
        /// The read of the span the chunk is in.
        read: Promise,
        /// Where the chunk starts in it.
        at: u32,
        /// The chunk's length.
        len: u32,
    },
}

impl Held {
    /// Bytes shared by this page: complete, in wasm memory.
    pub fn from_bytes(
        data: Vec<u8>,
        media_type: &str,
        name: Option<&str>,
    ) -> (ContentId, Rc<Held>) {
        let manifest = Manifest::describe(&data, media_type, name);
        let held = Self::new(manifest.to_bytes(), manifest, Body::Memory(data), true);
        (held.address(), Rc::new(held))
    }

    /// A file this page shared, described by `manifest` (see
    /// `crate::hashing`): complete, read from the file when served.
    pub fn from_file(manifest: Manifest, file: Blob) -> Rc<Held> {
        Rc::new(Self::new(
            manifest.to_bytes(),
            manifest,
            Body::File(file),
            true,
        ))
    }

    /// Content being downloaded, once its manifest is verified: nothing
    /// held yet. `disk` takes the batches of big content once it is open.
    pub fn receiving(manifest: Manifest, manifest_bytes: Vec<u8>, disk: &DiskSlot) -> Rc<Held> {
        let body = if manifest.chunk_count() <= 1 {
            Body::Memory(Vec::new())
        } else {
            let disk = (manifest.size > DISK_ABOVE).then(|| disk.clone());
            let content = ContentId::of_manifest_bytes(&manifest_bytes);
            Body::Parts(Parts::new(manifest.chunk_count(), disk, content))
        };
        Rc::new(Self::new(manifest_bytes, manifest, body, false))
    }

    fn new(manifest_bytes: Vec<u8>, manifest: Manifest, body: Body, complete: bool) -> Held {
        let count = manifest.chunk_count();
        Held {
            manifest_bytes,
            manifest,
            body: RefCell::new(body),
            have: RefCell::new(if complete {
                Availability::all(count)
            } else {
                Availability::none(count)
            }),
            spans: Default::default(),
        }
    }

    /// Its address (the hash of its manifest bytes).
    pub fn address(&self) -> ContentId {
        ContentId::of_manifest_bytes(&self.manifest_bytes)
    }

    /// Keeps verified chunk `index` (a buffer this store may keep).
    pub fn store(self: &Rc<Self>, index: u32, bytes: Uint8Array) -> Result<()> {
        let writing = match &mut *self.body.borrow_mut() {
            Body::Memory(data) => {
                *data = bytes.to_vec();
                None
            }
            Body::Parts(parts) => parts.add(index, bytes)?,
            Body::File(_) => None,
        };
        if let Some((batch, written)) = writing {
            self.watch(batch, written);
        }
        self.have.borrow_mut().insert(index);
        Ok(())
    }

    /// Keeps batch `batch` as what its write resolves to: the file, or
    /// (if the write failed) the chunks in memory.
    fn watch(self: &Rc<Self>, batch: u32, written: Promise) {
        let held = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let stored = JsFuture::from(written).await;
            let Some(held) = held.upgrade() else {
                return;
            };
            let mut body = held.body.borrow_mut();
            if let Body::Parts(parts) = &mut *body {
                parts.batches[batch as usize] = match stored.map(Blob::unchecked_from_js) {
                    Ok(blob) => Batch::Stored(blob),
                    Err(_) => Batch::Lost,
                };
            }
        });
    }

    /// Whether every chunk is here.
    pub fn is_complete(&self) -> bool {
        self.have.borrow().is_full()
    }

    /// Whether chunk `index` is here.
    pub fn has(&self, index: u32) -> bool {
        self.have.borrow().contains(index)
    }

    /// Which chunks are here, as peers are told.
    pub fn availability(&self) -> Have {
        self.have.borrow().to_have()
    }

    /// Starts reading chunk `index` (which must be here) for sending.
    pub fn read_chunk(&self, index: u32) -> Result<ChunkRead> {
        let size = self.manifest.chunk_size as u64;
        let len = self.manifest.chunk_len(index) as u32;
        let start = index as u64 * size;
        // Chunks per span.
        let per = (SPAN_BYTES as u64 / size).max(1);
        // The span's key, its blob, and where the chunk and the span are
        // in that blob.
        let (span, source, chunk_at, span_at) = match &*self.body.borrow() {
            Body::Memory(data) => {
                let range = start as usize..start as usize + len as usize;
                return Ok(ChunkRead::Ready(Uint8Array::from(&data[range])));
            }
            Body::File(file) => {
                let first = index as u64 / per * per;
                let source = Batch::Stored(file.clone());
                (Span::File(first as u32), source, start, first * size)
            }
            Body::Parts(parts) => match &parts.place[index as usize] {
                // A copy: the buffer goes to the disk worker with its
                // batch, maybe before this chunk is all sent.
                Place::Memory(bytes) => return Ok(ChunkRead::Ready(bytes.slice(0, len))),
                Place::Batch { batch, at } => {
                    let first = at / size / per * per;
                    let source = parts.batches[*batch as usize].clone();
                    (Span::Batch(*batch, first as u32), source, *at, first * size)
                }
                Place::Absent => {
                    return Err(crate::error::PeerError::Refused(format!(
                        "chunk {index} is not held here"
                    )))
                }
            },
        };
        let at = (chunk_at - span_at) as u32;
        let mut spans = self.spans.borrow_mut();
        if let Some((_, read)) = spans.iter().find(|(s, _)| *s == span) {
            return Ok(ChunkRead::Pending {
                read: read.clone(),
                at,
                len,
            });
        }
        // (Slicing past the end stops at the end.)
        let (from, to) = (span_at as f64, (span_at + per * size) as f64);
        let read = match source {
            Batch::Stored(blob) => blob.slice_with_f64_and_f64(from, to)?.array_buffer(),
            Batch::Writing(written) => wasm_bindgen_futures::future_to_promise(async move {
                let blob = Blob::unchecked_from_js(JsFuture::from(written).await?);
                JsFuture::from(blob.slice_with_f64_and_f64(from, to)?.array_buffer()).await
            }),
            Batch::Lost => {
                return Err(crate::error::PeerError::Refused(format!(
                    "chunk {index} was lost: the disk store stopped while writing it"
                )))
            }
        };
        if spans.len() == SPANS_KEPT {
            spans.pop_front();
        }
        spans.push_back((span, read.clone()));
        Ok(ChunkRead::Pending { read, at, len })
    }

    /// The whole content as one `Blob` typed with its media type (without
    /// copying parts or files), once batches being written are on disk.
    pub async fn blob(&self) -> Result<Blob> {
        let options = BlobPropertyBag::new();
        options.set_type(&self.manifest.media_type);
        let batches = match &*self.body.borrow() {
            Body::Memory(data) => {
                return Ok(Blob::new_with_u8_array_sequence_and_options(
                    &Array::of1(&Uint8Array::from(data.as_slice())),
                    &options,
                )?)
            }
            Body::File(file) => {
                return Ok(file.slice_with_f64_and_f64_and_content_type(
                    0.0,
                    self.manifest.size as f64,
                    &self.manifest.media_type,
                )?)
            }
            Body::Parts(parts) => parts.batches.clone(),
        };
        let mut stored = Vec::with_capacity(batches.len());
        for batch in batches {
            stored.push(match batch {
                Batch::Stored(blob) => blob,
                Batch::Writing(written) => Blob::unchecked_from_js(JsFuture::from(written).await?),
                Batch::Lost => {
                    return Err(crate::error::PeerError::Refused(
                        "part of the content was lost: the disk store stopped while \
                         writing it; reload the page to download it again"
                            .into(),
                    ))
                }
            });
        }
        let Body::Parts(parts) = &*self.body.borrow() else {
            unreachable!("a body stays parts");
        };
        let m = &self.manifest;
        let slices = parts.slices(&stored, |i| m.chunk_len(i) as u64)?;
        Ok(Blob::new_with_blob_sequence_and_options(&slices, &options)?)
    }

    /// The bytes, if they are in wasm memory (small content).
    pub fn bytes(&self) -> Option<Uint8Array> {
        match &*self.body.borrow() {
            Body::Memory(data) => Some(Uint8Array::from(data.as_slice())),
            _ => None,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Body::Parts(Parts {
            disk: Some(slot),
            content,
            ..
        }) = &*self.body.borrow()
        {
            if let Some(disk) = &*slot.borrow() {
                disk.remove(content);
            }
        }
    }
}
