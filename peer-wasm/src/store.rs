//! Content this peer holds, whole or in part, and where its bytes live.
//!
//! Only small content stays in wasm memory. A shared file stays the page's
//! `File` (read a chunk at a time when served), and a download of more than
//! one chunk keeps each verified chunk as its own `Blob`: the browser holds
//! those outside the wasm heap (Chromium's blob storage moves large ones to
//! disk), the whole content is one `Blob` of them without copying, and a
//! chunk is read back only to serve it. So the wasm heap never holds more
//! than the chunks in transit, however big the content.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use protocol::availability::{Availability, Have};
use protocol::{ContentId, Manifest};
use web_sys::{Blob, BlobPropertyBag};

use crate::error::Result;

/// One piece of content this peer holds or is receiving.
pub struct Held {
    /// Its parsed manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes (their SHA-256 is the address).
    pub manifest_bytes: Vec<u8>,
    body: RefCell<Body>,
    have: RefCell<Availability>,
}

enum Body {
    /// Small content, or text shared as bytes, in wasm memory (filled as
    /// chunks arrive).
    Memory(Vec<u8>),
    /// A file the page shared.
    File(Blob),
    /// Verified chunks of a download, each a `Blob`.
    Parts(Vec<Option<Blob>>),
}

/// A chunk to send: at hand, or being read from a `Blob`.
pub enum ChunkRead {
    /// Already in JavaScript memory.
    Ready(Uint8Array),
    /// Resolves to an `ArrayBuffer`.
    Pending(Promise),
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
    /// held yet.
    pub fn receiving(manifest: Manifest, manifest_bytes: Vec<u8>) -> Rc<Held> {
        let body = if manifest.chunk_count() <= 1 {
            Body::Memory(Vec::new())
        } else {
            Body::Parts(vec![None; manifest.chunk_count() as usize])
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
        }
    }

    /// Its address (the hash of its manifest bytes).
    pub fn address(&self) -> ContentId {
        ContentId::of_manifest_bytes(&self.manifest_bytes)
    }

    /// Keeps verified chunk `index`.
    pub fn store(&self, index: u32, bytes: Vec<u8>) -> Result<()> {
        match &mut *self.body.borrow_mut() {
            Body::Memory(data) => *data = bytes,
            Body::Parts(parts) => {
                let part = Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(
                    bytes.as_slice(),
                )))?;
                parts[index as usize] = Some(part);
            }
            Body::File(_) => {}
        }
        self.have.borrow_mut().insert(index);
        Ok(())
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
        let start = index as u64 * self.manifest.chunk_size as u64;
        let end = start + self.manifest.chunk_len(index) as u64;
        Ok(match &*self.body.borrow() {
            Body::Memory(data) => {
                ChunkRead::Ready(Uint8Array::from(&data[start as usize..end as usize]))
            }
            Body::File(file) => ChunkRead::Pending(
                file.slice_with_f64_and_f64(start as f64, end as f64)?
                    .array_buffer(),
            ),
            Body::Parts(parts) => match &parts[index as usize] {
                Some(part) => ChunkRead::Pending(part.array_buffer()),
                None => {
                    return Err(crate::error::PeerError::Refused(format!(
                        "chunk {index} is not held here"
                    )))
                }
            },
        })
    }

    /// The whole content as one `Blob` typed with its media type (without
    /// copying parts or files).
    pub fn blob(&self) -> Result<Blob> {
        let options = BlobPropertyBag::new();
        options.set_type(&self.manifest.media_type);
        Ok(match &*self.body.borrow() {
            Body::Memory(data) => Blob::new_with_u8_array_sequence_and_options(
                &Array::of1(&Uint8Array::from(data.as_slice())),
                &options,
            )?,
            Body::File(file) => file.slice_with_f64_and_f64_and_content_type(
                0.0,
                self.manifest.size as f64,
                &self.manifest.media_type,
            )?,
            Body::Parts(parts) => {
                let parts: Array = parts.iter().flatten().collect();
                Blob::new_with_blob_sequence_and_options(&parts, &options)?
            }
        })
    }

    /// The bytes, if they are in wasm memory (small content).
    pub fn bytes(&self) -> Option<Uint8Array> {
        match &*self.body.borrow() {
            Body::Memory(data) => Some(Uint8Array::from(data.as_slice())),
            _ => None,
        }
    }
}
