//! Where the chunks of content of more than one chunk are: in memory as
//! they arrived, gathered into batches, or in batches stored as `Blob`s or
//! on disk (see the parent module).

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Promise, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, File};

use crate::disk::{Disk, DiskSlot};
use crate::error::{PeerError, Result};

use super::BATCH_BYTES;
/// Where the chunks of content are.
pub struct Parts {
    pub(super) place: Vec<Place>,
    pub(super) batches: Vec<Batch>,
    /// Chunks gathered for the next batch, and their bytes.
    pub(super) gathering: Vec<u32>,
    pub(super) gathered: usize,
    pub(super) chunk_size: u64,
    /// Where full batches go; none for content small enough to stay in
    /// memory as it arrived.
    pub(super) batching: Option<Batching>,
}

/// Where a big content's batches go.
pub(super) struct Batching {
    /// The disk store, once open: batches made before then (or without
    /// one) become `Blob`s.
    pub(super) disk: DiskSlot,
    /// The content's directory in the store, unique in this tab.
    pub(super) key: String,
    /// The shared file the chunks were read from: a batch the disk refuses
    /// is read from the file instead.
    pub(super) source: Option<Blob>,
}

/// A batch of chunks, stored.
#[derive(Clone)]
pub(super) enum Batch {
    /// In memory, or a slice of the shared file: read as a `Blob`.
    Blob(Blob),
    /// On disk: read through the disk worker (the file makes the whole
    /// content's `Blob`).
    Disk(File),
    /// Being written to disk: resolves to the file or, if the write failed,
    /// to a `Blob` of the same bytes.
    Writing(Promise),
    /// The disk worker died holding it.
    Lost,
}

impl Batch {
    /// A batch whose write has ended: its file, or the `Blob` that stands
    /// in for it.
    pub(super) fn settled(stored: std::result::Result<JsValue, JsValue>) -> Batch {
        match stored {
            Ok(value) => match value.dyn_into::<File>() {
                Ok(file) => Batch::Disk(file),
                Err(value) => Batch::Blob(value.unchecked_into()),
            },
            Err(_) => Batch::Lost,
        }
    }
}

#[derive(Clone)]
pub(super) enum Place {
    Absent,
    /// As it arrived (or gathered for the next batch).
    Memory(Uint8Array),
    /// In `batches[batch]` from byte `at`.
    Batch {
        batch: u32,
        at: u64,
    },
}

/// A directory name in the disk store no other content of this tab has.
pub(super) fn fresh_key() -> String {
    thread_local!(static NEXT: Cell<u32> = const { Cell::new(0) });
    NEXT.with(|next| {
        let n = next.get();
        next.set(n + 1);
        format!("c{n}")
    })
}

impl Parts {
    pub(super) fn new(count: u32, chunk_size: u32, batching: Option<Batching>) -> Self {
        Parts {
            place: vec![Place::Absent; count as usize],
            batches: Vec::new(),
            gathering: Vec::new(),
            gathered: 0,
            chunk_size: chunk_size as u64,
            batching,
        }
    }

    /// The chunks of `file` (of `chunk_size` bytes), to be copied to the
    /// open disk store in `disk` as they are read, in order (see
    /// [`Parts::keep`]).
    pub fn copy_of(file: &Blob, chunk_size: u32, disk: DiskSlot) -> Self {
        let count = (file.size() as u64).div_ceil(chunk_size as u64) as u32;
        let batching = Batching {
            disk,
            key: fresh_key(),
            source: Some(file.clone()),
        };
        Self::new(count, chunk_size, Some(batching))
    }

    /// Keeps chunk `index` of a shared file, read and hashed (its buffer
    /// may leave for the disk).
    pub fn keep(&mut self, index: u32, bytes: Uint8Array) -> Result<()> {
        // Its write is watched once the content is held.
        self.add(index, bytes).map(drop)
    }

    /// Keeps verified chunk `index`; a full batch is stored, or handed to
    /// the disk worker: then returns its number and the write's promise.
    pub(super) fn add(&mut self, index: u32, bytes: Uint8Array) -> Result<Option<(u32, Promise)>> {
        let len = bytes.length() as usize;
        self.place[index as usize] = Place::Memory(bytes);
        let Some(batching) = &self.batching else {
            return Ok(None);
        };
        self.gathered += len;
        self.gathering.push(index);
        if self.gathered < BATCH_BYTES {
            return Ok(None);
        }
        // In index order, so that neighbours in the content are neighbours
        // in the batch.
        let mut indices = std::mem::take(&mut self.gathering);
        indices.sort_unstable();
        let batch_bytes = std::mem::take(&mut self.gathered) as f64;
        let buffers: Array = indices
            .iter()
            .filter_map(|&i| match &self.place[i as usize] {
                Place::Memory(bytes) => Some(bytes.clone()),
                _ => None,
            })
            .collect();
        let batch = self.batches.len() as u32;
        // A shared file's chunks come in order: the batch is one slice of it.
        let fallback = match &batching.source {
            Some(file) => {
                let from = indices[0] as u64 * self.chunk_size;
                Some(file.slice_with_f64_and_f64(from as f64, from as f64 + batch_bytes)?)
            }
            None => None,
        };
        let disk = batching.disk.borrow().clone();
        let key = batching.key.clone();
        // Placed before the buffers are handed over (and empty here).
        self.placed(batch, &indices);
        // Batches made before the disk opened stay in memory.
        if let Some(disk) = disk {
            let written = write_batch(disk, key, batch, buffers, fallback);
            self.batches.push(Batch::Writing(written.clone()));
            return Ok(Some((batch, written)));
        }
        self.batches.push(Batch::Blob(match fallback {
            Some(slice) => slice,
            None => Blob::new_with_u8_array_sequence(&buffers)?,
        }));
        Ok(None)
    }

    /// Batch `batch` of the chunks `indices` (in order) is stored.
    pub(super) fn placed(&mut self, batch: u32, indices: &[u32]) {
        let mut at = 0u64;
        for &i in indices {
            if let Place::Memory(bytes) = &self.place[i as usize] {
                let len = bytes.length() as u64;
                self.place[i as usize] = Place::Batch { batch, at };
                at += len;
            }
        }
    }

    /// Reads bytes `from..to` of batch `batch`: resolves to an
    /// `ArrayBuffer`.
    pub(super) fn read_batch(&self, batch: u32, from: u64, to: u64) -> Result<Promise> {
        let disk = self.batching.as_ref().and_then(|b| {
            let disk = b.disk.borrow().clone()?;
            Some((disk, b.key.clone()))
        });
        read_span(self.batches[batch as usize].clone(), disk, batch, from, to)
    }

    /// The whole content as parts in order: neighbouring chunks of one
    /// batch as one slice of it (`batches` being the stored batches),
    /// chunks not in a batch as their bytes.
    pub(super) fn slices(&self, batches: &[Blob], chunk_len: impl Fn(u32) -> u64) -> Result<Array> {
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
/// the file or, if the write failed, to `fallback` (the same bytes in the
/// shared file) or a `Blob` of the chunks the worker gave back.
pub(super) fn write_batch(
    disk: Rc<Disk>,
    key: String,
    batch: u32,
    buffers: Array,
    fallback: Option<Blob>,
) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        match disk.write_batch(&key, batch, &buffers).await {
            Ok(file) => Ok(file.into()),
            Err(failed) => {
                let message = format!("cannot write to disk: {}", failed.error);
                if let Some(slice) = fallback {
                    web_sys::console::warn_1(
                        &format!("{message}; reading the file instead").into(),
                    );
                    return Ok(slice.into());
                }
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

/// Reads bytes `from..to` (or to its end) of `batch` (number `number`
/// of its content, stored under `disk`'s key): through the disk worker if
/// it is on disk and the worker works, else as a `Blob`. Resolves to an
/// `ArrayBuffer`.
fn read_span(
    batch: Batch,
    disk: Option<(Rc<Disk>, String)>,
    number: u32,
    from: u64,
    to: u64,
) -> Result<Promise> {
    let blob = match batch {
        Batch::Blob(blob) => blob,
        Batch::Disk(file) => match &disk {
            Some((disk, key)) => match disk.read(key, number, from, to) {
                Ok(read) => return Ok(read),
                // The worker stopped: the file is still there.
                Err(_) => file.into(),
            },
            None => file.into(),
        },
        Batch::Writing(written) => {
            return Ok(wasm_bindgen_futures::future_to_promise(async move {
                let batch = Batch::settled(JsFuture::from(written).await);
                JsFuture::from(read_span(batch, disk, number, from, to)?).await
            }))
        }
        Batch::Lost => {
            return Err(PeerError::Refused(
                "it was lost: the disk store stopped while writing it".into(),
            ))
        }
    };
    // (Slicing past the end stops at the end.)
    Ok(blob
        .slice_with_f64_and_f64(from as f64, to as f64)?
        .array_buffer())
}

impl Drop for Parts {
    /// What went to disk goes with it.
    fn drop(&mut self) {
        if let Some(batching) = &self.batching {
            if let Some(disk) = &*batching.disk.borrow() {
                disk.remove(&batching.key);
            }
        }
    }
}
