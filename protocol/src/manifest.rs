//! Content manifests: what an address commits to.
//!
//! An address is the SHA-256 of the manifest's exact bytes (compact JSON with
//! fields in the order below). The manifest lists the size, media type,
//! optional file name, chunk size and the SHA-256 of every chunk, so a
//! receiver verifies the manifest once against the address and then each
//! chunk on arrival, without waiting for the whole content.

use serde::{Deserialize, Serialize};

use crate::display;
use crate::ids::{ChunkHash, ContentId};

/// Manifest format version.
pub const VERSION: u8 = 1;
/// Chunk size used when sharing: 256 KiB keeps the manifest of a 1 GiB file
/// around 270 KB while a chunk still moves in well under a second.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// Largest content a manifest may describe (16 GiB).
pub const MAX_SIZE: u64 = 16 << 30;
/// Largest manifest accepted from a peer, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;
const MAX_MEDIA_TYPE: usize = 255;
const MAX_NAME: usize = 255;

/// Describes one piece of content. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, always [`VERSION`].
    pub v: u8,
    /// Content length in bytes.
    pub size: u64,
    /// Media type, e.g. `text/plain; charset=utf-8`.
    #[serde(rename = "type")]
    pub media_type: String,
    /// Original file name, if the content was a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bytes per chunk; the last chunk may be shorter.
    pub chunk_size: u32,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<ChunkHash>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "manifest does not match the address: the sender gave other content than the link names"
    )]
    AddressMismatch,
    #[error("manifest is {0} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("manifest is not valid: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Builds the manifest of `data`, chunked at [`DEFAULT_CHUNK_SIZE`].
    pub fn describe(data: &[u8], media_type: &str, name: Option<&str>) -> Manifest {
        Self::describe_with_chunk_size(data, media_type, name, DEFAULT_CHUNK_SIZE)
    }

    /// Builds the manifest of `data` with an explicit chunk size.
    pub fn describe_with_chunk_size(
        data: &[u8],
        media_type: &str,
        name: Option<&str>,
        chunk_size: u32,
    ) -> Manifest {
        let chunks = data
            .chunks(chunk_size as usize)
            .map(ChunkHash::of)
            .collect();
        Manifest {
            v: VERSION,
            size: data.len() as u64,
            media_type: media_type.to_owned(),
            name: name.map(str::to_owned),
            chunk_size,
            chunks,
        }
    }

    /// The exact bytes that are hashed into the address and sent to peers.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// This manifest's address.
    pub fn address(&self) -> ContentId {
        ContentId::of_manifest_bytes(&self.to_bytes())
    }

    /// Checks manifest bytes received from a peer against the address the
    /// user asked for, then parses and sanity-checks them.
    pub fn verify(address: &ContentId, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        if ContentId::of_manifest_bytes(bytes) != *address {
            return Err(ManifestError::AddressMismatch);
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Sanity checks (version, sizes, chunk count, name and type).
    pub fn check(&self) -> Result<(), ManifestError> {
        let invalid = |m: &str| Err(ManifestError::Invalid(m.to_owned()));
        if self.v != VERSION {
            return invalid("unsupported manifest version");
        }
        if self.chunk_size == 0 || self.chunk_size > 16 << 20 {
            return invalid("chunk size must be between 1 byte and 16 MiB");
        }
        if self.size > MAX_SIZE {
            return invalid("content is larger than 16 GiB");
        }
        if self.chunks.len() as u64 != self.size.div_ceil(self.chunk_size as u64) {
            return invalid("chunk count does not match size and chunk size");
        }
        if self.media_type.len() > MAX_MEDIA_TYPE || self.media_type.chars().any(char::is_control) {
            return invalid("media type is too long or has control characters");
        }
        if let Some(name) = &self.name {
            if name.len() > MAX_NAME || name.chars().any(char::is_control) {
                return invalid("file name is too long or has control characters");
            }
        }
        Ok(())
    }

    /// The file name as a page may show it and save under (see
    /// [`crate::display::safe_text`]): the manifest's check refuses
    /// control characters but not format characters, which a sharer may
    /// use to disguise a name. `None` without a name, or if nothing of it
    /// is left to show.
    pub fn shown_name(&self) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(display::safe_text(name, display::NAME_CHARS)).filter(|n| !n.is_empty())
    }

    /// The media type as a page may show it (see [`Self::shown_name`]).
    pub fn shown_type(&self) -> String {
        display::safe_text(&self.media_type, display::NAME_CHARS)
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// Length in bytes of chunk `index`.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = index as u64 * self.chunk_size as u64;
        (self.size - start).min(self.chunk_size as u64) as usize
    }

    /// Whether `bytes` are exactly chunk `index`.
    pub fn chunk_matches(&self, index: u32, bytes: &[u8]) -> bool {
        match self.chunks.get(index as usize) {
            Some(hash) => bytes.len() == self.chunk_len(index) && ChunkHash::of(bytes) == *hash,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_same_address() {
        let a = Manifest::describe(b"hello world", "text/plain", None);
        let b = Manifest::describe(b"hello world", "text/plain", None);
        assert_eq!(a.address(), b.address());
        let c = Manifest::describe(b"hello world!", "text/plain", None);
        assert_ne!(a.address(), c.address());
    }

    #[test]
    fn name_and_type_are_part_of_the_address() {
        let a = Manifest::describe(b"x", "text/plain", None);
        assert_ne!(
            a.address(),
            Manifest::describe(b"x", "text/html", None).address()
        );
        assert_ne!(
            a.address(),
            Manifest::describe(b"x", "text/plain", Some("a.txt")).address()
        );
    }

    #[test]
    fn verify_accepts_the_real_manifest_and_rejects_others() {
        let m = Manifest::describe(
            &vec![7u8; 600_000],
            "application/octet-stream",
            Some("f.bin"),
        );
        let bytes = m.to_bytes();
        assert_eq!(Manifest::verify(&m.address(), &bytes).unwrap(), m);
        let other = Manifest::describe(b"other", "text/plain", None).address();
        assert_eq!(
            Manifest::verify(&other, &bytes),
            Err(ManifestError::AddressMismatch)
        );
    }

    #[test]
    fn verify_rejects_inconsistent_manifests_even_when_the_hash_matches() {
        let mut m = Manifest::describe(&[1u8; 1000], "text/plain", None);
        m.size = 5_000_000;
        let bytes = m.to_bytes();
        let err = Manifest::verify(&ContentId::of_manifest_bytes(&bytes), &bytes).unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)), "{err}");
    }

    #[test]
    fn chunks_cover_the_content_exactly() {
        let data: Vec<u8> = (0..(DEFAULT_CHUNK_SIZE as usize * 2 + 5))
            .map(|i| (i / 3) as u8)
            .collect();
        let m = Manifest::describe(&data, "application/octet-stream", None);
        assert_eq!(m.chunk_count(), 3);
        assert_eq!(m.chunk_len(2), 5);
        let cs = DEFAULT_CHUNK_SIZE as usize;
        assert!(m.chunk_matches(0, &data[..cs]));
        assert!(m.chunk_matches(2, &data[2 * cs..]));
        assert!(!m.chunk_matches(1, &data[..cs]));
        assert!(!m.chunk_matches(3, b""));
    }

    #[test]
    fn names_and_types_are_shown_made_safe() {
        let m = Manifest::describe(b"x", "text/plain\u{200B}", Some("invoice\u{202E}fdp.exe"));
        // Accepted as it is (no control characters) and committed to by the
        // address; only what is shown changes.
        Manifest::verify(&m.address(), &m.to_bytes()).unwrap();
        assert_eq!(m.shown_name().as_deref(), Some("invoice\u{FFFD}fdp.exe"));
        assert_eq!(m.shown_type(), "text/plain\u{FFFD}");
        let blank = Manifest::describe(b"x", "text/plain", Some("   "));
        assert_eq!(blank.shown_name(), None);
        assert_eq!(
            Manifest::describe(b"x", "text/plain", None).shown_name(),
            None
        );
    }

    #[test]
    fn empty_content_has_no_chunks() {
        let m = Manifest::describe(b"", "text/plain", None);
        assert_eq!(m.chunk_count(), 0);
        Manifest::verify(&m.address(), &m.to_bytes()).unwrap();
    }
}
