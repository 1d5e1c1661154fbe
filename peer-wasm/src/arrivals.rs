//! The bytes of chunks being received, kept in JavaScript memory where
//! they land: a chunk that came as one message is kept as that message's
//! buffer; otherwise each payload is copied once, by the engine, into its
//! chunk's buffer. Never through the wasm heap. The download state
//! machine (`protocol::download`) says where each payload goes, when a
//! chunk is whole (to be hashed, see `crate::hashing::chunk_hash`), and
//! whether it is stored or dropped.

use std::collections::HashMap;

use js_sys::Uint8Array;
use protocol::download::Conn;

/// One download's chunks in transit.
#[derive(Default)]
pub struct Arrivals {
    /// The chunk arriving over each connection, by index.
    arriving: HashMap<Conn, (u32, Uint8Array)>,
    /// Whole chunks, by index, until their hash is compared.
    verifying: HashMap<u32, Uint8Array>,
}

impl Arrivals {
    /// Keeps a payload at `offset` of chunk `index` (`total` bytes)
    /// arriving from `conn`. Its buffer is made once, at offset 0 (the
    /// download refuses frames without payload, so no later frame of the
    /// chunk is at 0), and never again while the chunk arrives.
    pub fn keep(&mut self, conn: Conn, index: u32, offset: u32, total: u32, payload: &Uint8Array) {
        let fresh = offset == 0 && self.arriving.get(&conn).is_none_or(|(i, _)| *i != index);
        // A chunk that came as one message of its own (a stream of one, see
        // `protocol::transfer`) is kept as it landed, without a copy.
        if fresh
            && payload.length() == total
            && payload.byte_offset() == 0
            && payload.buffer().byte_length() == total
        {
            self.arriving.insert(conn, (index, payload.clone()));
            return;
        }
        if fresh {
            let buffer = Uint8Array::new_with_length(total);
            self.arriving.insert(conn, (index, buffer));
        }
        if let Some((_, buffer)) = self.arriving.get(&conn) {
            // The download checked that the payload fits.
            buffer.set(payload, offset);
        }
    }

    /// The chunk from `conn` is whole: it waits as chunk `index` for its
    /// hash. Returns it, to hash.
    pub fn whole(&mut self, conn: Conn, index: u32) -> Option<Uint8Array> {
        let (_, buffer) = self.arriving.remove(&conn)?;
        self.verifying.insert(index, buffer.clone());
        Some(buffer)
    }

    /// Whole chunk `index`, still waiting for its hash.
    pub fn waiting(&self, index: u32) -> Option<&Uint8Array> {
        self.verifying.get(&index)
    }

    /// Takes whole chunk `index` (to store, or to drop).
    pub fn take(&mut self, index: u32) -> Option<Uint8Array> {
        self.verifying.remove(&index)
    }

    /// Drops what arrived of an unfinished chunk from `conn`: it left, or
    /// another copy of the chunk is whole.
    pub fn forget(&mut self, conn: &Conn) {
        self.arriving.remove(conn);
    }
}
