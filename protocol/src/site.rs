//! A site's index (`peerpage.json`): which of its files visitors may take
//! from each other, by URL path, with each file's address, size and type.
//!
//! The publisher's `peerpage manifest DIR` writes it beside the files, and
//! each file's manifest at `.peerpage/<address>` under the same folder.
//! Paths are relative to the folder the index is served from, in the form
//! a browser's URL path takes them (percent-encoded, `/`-separated): the
//! file `a b/c.png` beside the index is listed as `a%20b/c.png`. Listing is
//! the publisher's word that a file is safe to share: a page asks peers
//! only for files the index lists, and verifies every byte against the
//! address it gives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::ContentId;
use crate::manifest::MAX_SIZE;

/// Index format version.
pub const VERSION: u8 = 1;
/// The index's file name, at the root of the published folder.
pub const INDEX_FILE: &str = "peerpage.json";
/// The folder of manifests beside the index.
pub const MANIFEST_DIR: &str = ".peerpage";
/// Largest index a page reads, in bytes (about 50,000 files).
pub const MAX_INDEX_BYTES: usize = 8 << 20;
/// Longest path listed, in bytes (encoded).
pub const MAX_PATH_BYTES: usize = 1024;

/// One listed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteFile {
    /// The address of its manifest (at `.peerpage/<address>`).
    pub address: ContentId,
    /// Its length in bytes.
    pub size: u64,
    /// Its media type, as served.
    #[serde(rename = "type")]
    pub media_type: String,
}

/// `peerpage.json`. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteIndex {
    /// Format version, always [`VERSION`].
    pub v: u8,
    /// By path relative to the index's folder (see [`url_path`]).
    pub files: BTreeMap<String, SiteFile>,
}

/// Why an index was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("the site index is {0} bytes, over the {MAX_INDEX_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the site index is not valid: {0}")]
    Invalid(String),
}

/// Why a file name cannot be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("is not UTF-8")]
    NotUtf8,
    #[error("has an empty part, `.` or `..`")]
    BadPart,
    #[error("has a control character or a backslash")]
    ControlCharacter,
    #[error("has `%`, which a URL path cannot tell from an escape")]
    Percent,
    #[error("is longer than {MAX_PATH_BYTES} bytes as a URL path")]
    TooLong,
}

impl SiteIndex {
    /// An empty index.
    pub fn new() -> SiteIndex {
        SiteIndex {
            v: VERSION,
            files: BTreeMap::new(),
        }
    }

    /// The bytes written as `peerpage.json`: pretty JSON, paths sorted, so
    /// that a publisher can diff two of them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("an index always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses and checks an index from an untrusted source.
    pub fn parse(bytes: &[u8]) -> Result<SiteIndex, IndexError> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge(bytes.len()));
        }
        let index: SiteIndex =
            serde_json::from_slice(bytes).map_err(|e| IndexError::Invalid(e.to_string()))?;
        index.check()?;
        Ok(index)
    }

    /// Version, paths, sizes and types within bounds.
    pub fn check(&self) -> Result<(), IndexError> {
        let invalid = |m: String| Err(IndexError::Invalid(m));
        if self.v != VERSION {
            return invalid(format!("unsupported index version {}", self.v));
        }
        for (path, file) in &self.files {
            if !is_listed_path(path) {
                return invalid(format!("{:?} is not a relative URL path", short(path)));
            }
            if file.size > MAX_SIZE {
                return invalid(format!("{:?} is larger than 16 GiB", short(path)));
            }
            if file.media_type.len() > 255 || file.media_type.chars().any(char::is_control) {
                return invalid(format!(
                    "the type of {:?} is too long or has control characters",
                    short(path)
                ));
            }
        }
        Ok(())
    }

    /// The file at `pathname` (a URL's path, as `URL.pathname` gives it)
    /// of an index served at `index_pathname`, if listed.
    pub fn lookup(&self, index_pathname: &str, pathname: &str) -> Option<(&str, &SiteFile)> {
        let folder = &index_pathname[..index_pathname.rfind('/').map_or(0, |i| i + 1)];
        let relative = pathname.strip_prefix(folder)?;
        self.files
            .get_key_value(relative)
            .map(|(k, f)| (k.as_str(), f))
    }
}

fn short(path: &str) -> String {
    path.chars().take(80).collect()
}

/// Whether `path` is a path as [`url_path`] makes them.
fn is_listed_path(path: &str) -> bool {
    path.len() <= MAX_PATH_BYTES
        && !path.starts_with('/')
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'\\' && !needs_escape(b))
        })
}

/// Bytes a browser escapes in a URL path (the WHATWG path percent-encode
/// set, besides controls and non-ASCII, which are escaped too).
fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'"' | b'#' | b'<' | b'>' | b'?' | b'`' | b'{' | b'}'
    )
}

/// The URL path of the file at `relative` (its `/`-separated name under
/// the index's folder), as a browser writes it: `a b/é.png` is
/// `a%20b/%C3%A9.png`.
pub fn url_path(relative: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(relative.len());
    for (i, part) in relative.split('/').enumerate() {
        if part.is_empty() || part == "." || part == ".." {
            return Err(PathError::BadPart);
        }
        if i > 0 {
            out.push('/');
        }
        for c in part.chars() {
            if c.is_control() || c == '\\' {
                return Err(PathError::ControlCharacter);
            }
            if c == '%' {
                return Err(PathError::Percent);
            }
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                if b.is_ascii() && !needs_escape(b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    if out.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> SiteFile {
        SiteFile {
            address: ContentId([7; 32]),
            size,
            media_type: "image/png".into(),
        }
    }

    #[test]
    fn names_become_the_paths_browsers_ask_for() {
        assert_eq!(url_path("a b/é.png").unwrap(), "a%20b/%C3%A9.png");
        assert_eq!(url_path("x/y-z_1.tar.gz").unwrap(), "x/y-z_1.tar.gz");
        assert_eq!(url_path("q?#.js").unwrap(), "q%3F%23.js");
        assert_eq!(url_path("a/../b"), Err(PathError::BadPart));
        assert_eq!(url_path("a//b"), Err(PathError::BadPart));
        assert_eq!(url_path("50%.png"), Err(PathError::Percent));
        assert_eq!(url_path("a\nb"), Err(PathError::ControlCharacter));
        assert_eq!(url_path("a\\b"), Err(PathError::ControlCharacter));
        assert_eq!(url_path(&"a".repeat(2000)), Err(PathError::TooLong));
    }

    #[test]
    fn lookup_is_relative_to_the_index_folder() {
        let mut index = SiteIndex::new();
        index.files.insert("img/a%20b.png".into(), file(3));
        let found = index.lookup("/game/peerpage.json", "/game/img/a%20b.png");
        assert_eq!(found.map(|(p, f)| (p, f.size)), Some(("img/a%20b.png", 3)));
        assert!(index
            .lookup("/peerpage.json", "/game/img/a%20b.png")
            .is_none());
        assert!(index
            .lookup("/game/peerpage.json", "/img/a%20b.png")
            .is_none());
        let mut root = SiteIndex::new();
        root.files.insert("big.bin".into(), file(9));
        assert!(root.lookup("/peerpage.json", "/big.bin").is_some());
    }

    #[test]
    fn round_trips_and_refuses_what_no_publisher_wrote() {
        let mut index = SiteIndex::new();
        index.files.insert("a.png".into(), file(3));
        assert_eq!(SiteIndex::parse(&index.to_bytes()), Ok(index.clone()));
        for bad in ["/abs.png", "a/../b.png", "a b.png", "a\\b", ""] {
            let mut i = SiteIndex::new();
            i.files.insert(bad.into(), file(1));
            assert!(SiteIndex::parse(&i.to_bytes()).is_err(), "{bad:?}");
        }
        let mut huge = SiteIndex::new();
        huge.files.insert("x".into(), file(MAX_SIZE + 1));
        assert!(SiteIndex::parse(&huge.to_bytes()).is_err());
        assert!(SiteIndex::parse(b"{\"v\":2,\"files\":{}}").is_err());
        assert!(SiteIndex::parse(b"{\"v\":1,\"files\":{},\"x\":1}").is_err());
        assert_eq!(
            SiteIndex::parse(&vec![b' '; MAX_INDEX_BYTES + 1]),
            Err(IndexError::TooLarge(MAX_INDEX_BYTES + 1))
        );
    }
}
