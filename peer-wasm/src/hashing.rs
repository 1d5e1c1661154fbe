//! SHA-256 of chunks: describing a shared file (the hash of each chunk,
//! read from the file a chunk at a time, so a file of any size is never
//! whole in memory), and checking chunks as they arrive.
//!
//! Hashes come from WebCrypto (`crypto.subtle`, native code, several chunks
//! in flight at once) where the page is a secure context; elsewhere (plain
//! http on a non-local address) from the wasm implementation.

use js_sys::{Array, ArrayBuffer, Promise, Uint8Array};
use protocol::ids::ChunkHash;
use protocol::manifest::{DEFAULT_CHUNK_SIZE, MAX_SIZE};
use protocol::Manifest;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, SubtleCrypto};

use crate::error::{PeerError, Result};

/// Chunks read and hashed concurrently.
const IN_FLIGHT: usize = 8;

/// Chunks up to this size are hashed in wasm, synchronously: for a page of
/// one small chunk that is quicker than a round trip through WebCrypto.
const SYNC_HASH_BYTES: u32 = 64 * 1024;

/// A chunk's hash: known, or on its way from WebCrypto.
pub enum Hashing {
    /// Computed here.
    Done(ChunkHash),
    /// Resolves to the digest's `ArrayBuffer`.
    Pending(Promise),
}

/// Starts hashing a received chunk.
pub fn chunk_hash(bytes: &Uint8Array) -> Hashing {
    if bytes.length() > SYNC_HASH_BYTES {
        if let Some(digest) =
            subtle().and_then(|s| s.digest_with_str_and_buffer_source("SHA-256", bytes).ok())
        {
            return Hashing::Pending(digest);
        }
    }
    Hashing::Done(hash_here(bytes))
}

/// Hashes bytes in JavaScript memory with the wasm SHA-256.
pub fn hash_here(bytes: &Uint8Array) -> ChunkHash {
    ChunkHash::of(&bytes.to_vec())
}

/// Reads a WebCrypto SHA-256 digest.
pub fn digest_hash(digest: &wasm_bindgen::JsValue) -> Result<ChunkHash> {
    let buffer = digest
        .dyn_ref::<ArrayBuffer>()
        .ok_or_else(|| PeerError::Refused("SHA-256 gave no digest".into()))?;
    let bytes = Uint8Array::new(buffer).to_vec();
    let hash: [u8; 32] = bytes
        .try_into()
        .map_err(|_| PeerError::Refused("SHA-256 gave a digest of the wrong size".into()))?;
    Ok(ChunkHash(hash))
}

/// WebCrypto's `subtle`, looked up once: finding it costs as much as a
/// chunk's other bookkeeping.
fn subtle() -> Option<SubtleCrypto> {
    thread_local!(static SUBTLE: Option<SubtleCrypto> = {
        let crypto = web_sys::window().and_then(|w| w.crypto().ok());
        // Undefined outside secure contexts.
        crypto
            .and_then(|c| js_sys::Reflect::get(&c, &"subtle".into()).ok())
            .and_then(|s| s.dyn_into().ok())
    });
    SUBTLE.with(Clone::clone)
}

/// Builds the manifest of `file`; `progress(done, total)` is called as
/// bytes are hashed, and `keep(index, bytes)` with each chunk, in order,
/// once its hash is under way (WebCrypto has copied it by then).
pub async fn describe_file(
    file: &Blob,
    media_type: &str,
    name: Option<&str>,
    progress: impl Fn(u64, u64),
    mut keep: impl FnMut(u32, Uint8Array) -> Result<()>,
) -> Result<Manifest> {
    let size = file.size() as u64;
    if size > MAX_SIZE {
        return Err(PeerError::Refused(format!(
            "the file is {size} bytes; at most {MAX_SIZE} bytes (16 GiB) can be shared"
        )));
    }
    let chunk = DEFAULT_CHUNK_SIZE as u64;
    let count = size.div_ceil(chunk);
    let subtle = subtle();
    let mut chunks = Vec::with_capacity(count as usize);
    let mut index = 0u64;
    while index < count {
        let batch = (count - index).min(IN_FLIGHT as u64);
        let digests = Array::new();
        for i in index..index + batch {
            let end = ((i + 1) * chunk).min(size);
            let part = file.slice_with_f64_and_f64((i * chunk) as f64, end as f64)?;
            let buffer: ArrayBuffer = JsFuture::from(part.array_buffer())
                .await
                .map_err(read_error)?
                .unchecked_into();
            let bytes = Uint8Array::new(&buffer);
            match &subtle {
                Some(s) => {
                    let digest = s.digest_with_str_and_buffer_source("SHA-256", &bytes)?;
                    digests.push(&digest);
                }
                None => chunks.push(hash_here(&bytes)),
            }
            keep(i as u32, bytes)?;
        }
        if subtle.is_some() {
            let all = JsFuture::from(Promise::all(&digests)).await?;
            for digest in Array::from(&all).iter() {
                chunks.push(digest_hash(&digest)?);
            }
        }
        index += batch;
        progress((index * chunk).min(size), size);
    }
    Ok(Manifest {
        v: protocol::manifest::VERSION,
        size,
        media_type: media_type.to_owned(),
        name: name.map(str::to_owned),
        chunk_size: DEFAULT_CHUNK_SIZE,
        chunks,
    })
}

fn read_error(e: wasm_bindgen::JsValue) -> PeerError {
    PeerError::Refused(format!(
        "cannot read the file ({}); if it changed or moved on disk since it was chosen, choose it again",
        PeerError::Js(e)
    ))
}
