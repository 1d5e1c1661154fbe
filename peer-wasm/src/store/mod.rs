//! Content this peer holds, whole or in part, and where its bytes live.
//!
//! Only small content stays in wasm memory. Content of more than one
//! chunk is kept as verified chunks (JavaScript buffers, never in the wasm
//! heap):
//! - content up to [`DISK_ABOVE`] keeps them as they arrived, so serving a
//!   chunk costs nothing but the send;
//! - bigger content gathers them into batches of [`BATCH_BYTES`] written to
//!   disk by the disk worker (see `crate::disk`) and read back through it;
//!   where the browser has no such store, each batch becomes one `Blob`
//!   (the browser holds those outside the page's heap);
//! - a shared file of more than one chunk is copied into the disk store as
//!   it is hashed: reading a page's `File` costs the browser process about
//!   5 ms of CPU per MiB served (a `Blob` slice and a trip through the
//!   browser for every read), reading the copy 0.5 ms. Without the store
//!   the file is read where it is.
//!
//! Making a `Blob` costs the main thread per call as much as per byte (a
//! 256 KiB `Blob` about 0.8 ms, a 4 MiB one 5 ms, measured in Chromium
//! here), so one per batch rather than one per chunk.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use protocol::availability::{Availability, Have};
use protocol::{ContentId, Manifest};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag};

use crate::disk::DiskSlot;

mod parts;

use crate::error::{PeerError, Result};
pub use parts::Parts;
use parts::{fresh_key, Batch, Batching, Place};

/// Downloads bigger than this keep their chunks on disk where they can:
/// Chromium's memory for `Blob`s is a few hundred MiB for the whole
/// browser, and the page's own heap is no place for a GiB either. Smaller
/// ones stay in memory, which needs no worker and no storage quota.
pub const DISK_ABOVE: u64 = 32 << 20;

/// Verified chunks gathered in memory before they go to disk as one batch.
pub const BATCH_BYTES: usize = 4 << 20;
/// Chunks are read from a file or batch this many bytes at a time (at
/// least a chunk): fewer, bigger reads are cheaper, and peers ask for
/// neighbouring chunks one after another.
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
    spans: RefCell<VecDeque<(Span, Promise)>>,
}

enum Body {
    /// Small content, or text shared as bytes, in wasm memory (filled as
    /// chunks arrive).
    Memory(Vec<u8>),
    /// A file the page shared, read where it is (no disk store here).
    File(Blob),
    /// Verified chunks: of a download, or of a shared file's copy.
    Parts(Parts),
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
    /// `crate::hashing`): complete, served from its copy in `copy` (all of
    /// its chunks kept), or else from the file.
    pub fn from_file(manifest: Manifest, file: Blob, copy: Option<Parts>) -> Rc<Held> {
        let body = copy.map_or(Body::File(file), Body::Parts);
        let held = Rc::new(Self::new(manifest.to_bytes(), manifest, body, true));
        let writing: Vec<(u32, Promise)> = match &*held.body.borrow() {
            Body::Parts(parts) => (parts.batches.iter().enumerate())
                .filter_map(|(i, batch)| match batch {
                    Batch::Writing(written) => Some((i as u32, written.clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for (batch, written) in writing {
            held.watch(batch, written);
        }
        held
    }

    /// Content being downloaded, once its manifest is verified: nothing
    /// held yet. `disk` takes the batches of big content once it is open.
    pub fn receiving(manifest: Manifest, manifest_bytes: Vec<u8>, disk: &DiskSlot) -> Rc<Held> {
        let body = if manifest.chunk_count() <= 1 {
            Body::Memory(Vec::new())
        } else {
            let batching = (manifest.size > DISK_ABOVE).then(|| Batching {
                disk: disk.clone(),
                key: fresh_key(),
                source: None,
            });
            Body::Parts(Parts::new(
                manifest.chunk_count(),
                manifest.chunk_size,
                batching,
            ))
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
    /// (if the write failed) the same bytes in memory or in the shared file.
    fn watch(self: &Rc<Self>, batch: u32, written: Promise) {
        let held = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let stored = JsFuture::from(written).await;
            let Some(held) = held.upgrade() else {
                return;
            };
            let mut body = held.body.borrow_mut();
            if let Body::Parts(parts) = &mut *body {
                parts.batches[batch as usize] = Batch::settled(stored);
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
        let body = self.body.borrow();
        // The span's key, and where the chunk and the span start in the
        // file or batch.
        let (span, chunk_at, span_at) = match &*body {
            Body::Memory(data) => {
                let range = start as usize..start as usize + len as usize;
                return Ok(ChunkRead::Ready(Uint8Array::from(&data[range])));
            }
            Body::File(_) => {
                let first = index as u64 / per * per;
                (Span::File(first as u32), start, first * size)
            }
            Body::Parts(parts) => match &parts.place[index as usize] {
                // A batch's buffers go to the disk worker, maybe before this
                // chunk is all sent: a copy then.
                Place::Memory(bytes) if parts.batching.is_some() => {
                    return Ok(ChunkRead::Ready(bytes.slice(0, len)))
                }
                Place::Memory(bytes) => return Ok(ChunkRead::Ready(bytes.clone())),
                Place::Batch { batch, at } => {
                    let first = at / size / per * per;
                    (Span::Batch(*batch, first as u32), *at, first * size)
                }
                Place::Absent => {
                    return Err(PeerError::Refused(format!(
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
        let (from, to) = (span_at, span_at + per * size);
        let read = match (&*body, span) {
            (Body::File(file), _) => file
                .slice_with_f64_and_f64(from as f64, to as f64)?
                .array_buffer(),
            (Body::Parts(parts), Span::Batch(batch, _)) => parts
                .read_batch(batch, from, to)
                .map_err(|e| PeerError::Refused(format!("cannot read chunk {index}: {e}")))?,
            _ => unreachable!("a span of the body's own kind"),
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
            let batch = match batch {
                Batch::Writing(written) => Batch::settled(JsFuture::from(written).await),
                batch => batch,
            };
            stored.push(match batch {
                Batch::Blob(blob) => blob,
                Batch::Disk(file) => file.into(),
                Batch::Writing(_) | Batch::Lost => {
                    return Err(PeerError::Refused(
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
