//! Content this peer holds: verified (or shared by this page) and ready to
//! serve.

use std::rc::Rc;

use protocol::{ContentId, Manifest};

/// One held piece of content.
pub struct Held {
    /// Its parsed manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes (their SHA-256 is the address).
    pub manifest_bytes: Vec<u8>,
    /// The content.
    pub data: Vec<u8>,
}

impl Held {
    /// Describes freshly shared bytes.
    pub fn from_share(
        data: Vec<u8>,
        media_type: &str,
        name: Option<&str>,
    ) -> (ContentId, Rc<Held>) {
        let manifest = Manifest::describe(&data, media_type, name);
        let manifest_bytes = manifest.to_bytes();
        let address = ContentId::of_manifest_bytes(&manifest_bytes);
        (
            address,
            Rc::new(Held {
                manifest,
                manifest_bytes,
                data,
            }),
        )
    }

    /// Bytes of chunk `index`, if it exists.
    pub fn chunk(&self, index: u32) -> Option<&[u8]> {
        if index >= self.manifest.chunk_count() {
            return None;
        }
        let start = index as usize * self.manifest.chunk_size as usize;
        Some(&self.data[start..start + self.manifest.chunk_len(index)])
    }
}
