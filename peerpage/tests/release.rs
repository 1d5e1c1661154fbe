//! `peerpage keygen` and `peerpage release`, run as a publisher runs them.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::{text, Dir};

use protocol::manifest::Manifest;
use protocol::release::{index_path, SignedRelease};
use protocol::site::SiteIndex;

use common::run as peerpage;

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = peerpage(&["keygen"], &[&key]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    (key, public)
}

fn record(site: &Path) -> SignedRelease {
    SignedRelease::parse(&std::fs::read(site.join("peerpage.json")).unwrap()).unwrap()
}

#[test]
fn keygen_keeps_the_secret_private_and_never_overwrites_it() {
    let dir = Dir::new("rel-keygen");
    let (key, public) = keygen(&dir.0, "site.key");
    assert_eq!(
        public.len(),
        43,
        "32 bytes, base64url without padding: {public}"
    );
    assert!(public
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = peerpage(&["keygen"], &[&key]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("never overwritten"),
        "{}",
        text(&again)
    );
}

#[test]
fn releases_are_signed_numbered_and_carry_their_index_as_content() {
    let keys = Dir::new("rel-keys");
    let site = Dir::new("rel-site");
    std::fs::write(site.0.join("a.txt"), b"one").unwrap();
    std::fs::write(site.0.join("b.bin"), vec![7u8; 300 * 1024]).unwrap();
    let (key, public) = keygen(&keys.0, "site.key");

    let out = peerpage(
        &["release", "--key", key.to_str().unwrap(), "--expires", "1h"],
        &[&site.0],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = record(&site.0);
    assert_eq!(first.release.seq, 1);
    assert_eq!(first.release.site.to_string(), public);
    assert_eq!(first.release.expires - first.release.created, 3600);
    // The index is content: its manifest and bytes beside the files.
    let manifest_bytes = std::fs::read(
        site.0
            .join(".peerpage")
            .join(first.release.index.to_string()),
    )
    .unwrap();
    let manifest = Manifest::verify(&first.release.index, &manifest_bytes).unwrap();
    let index_bytes = std::fs::read(site.0.join(index_path(&first.release.index))).unwrap();
    assert!((0..manifest.chunk_count()).all(|i| {
        let start = i as usize * manifest.chunk_size as usize;
        let end = start + manifest.chunk_len(i);
        manifest.chunk_matches(i, &index_bytes[start..end])
    }));
    let index = SiteIndex::parse(&index_bytes).unwrap();
    assert_eq!(index.files.keys().collect::<Vec<_>>(), ["a.txt", "b.bin"]);
    let check = peerpage(&["manifest", "--check"], &[&site.0]);
    assert!(check.status.success(), "{}", text(&check));

    // A changed file: the next release, a new index.
    std::fs::write(site.0.join("a.txt"), b"two").unwrap();
    let out = peerpage(&["release", "--key", key.to_str().unwrap()], &[&site.0]);
    assert!(out.status.success(), "{}", text(&out));
    let second = record(&site.0);
    assert_eq!(second.release.seq, 2);
    assert_ne!(second.release.index, first.release.index);

    // Another key may not continue this site's releases.
    let (other, _) = keygen(&keys.0, "other.key");
    let refused = peerpage(&["release", "--key", other.to_str().unwrap()], &[&site.0]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("signed by another key"),
        "{}",
        text(&refused)
    );
    assert_eq!(record(&site.0), second, "nothing was written");

    // A record edited by hand no longer verifies.
    let edited = String::from_utf8(std::fs::read(site.0.join("peerpage.json")).unwrap())
        .unwrap()
        .replace("\"seq\": 2", "\"seq\": 9");
    std::fs::write(site.0.join("peerpage.json"), edited).unwrap();
    let check = peerpage(&["manifest", "--check"], &[&site.0]);
    assert!(!check.status.success());
    assert!(
        text(&check).contains("signature does not verify"),
        "{}",
        text(&check)
    );
}
