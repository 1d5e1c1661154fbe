//! `peerpage manifest`, run as the publisher runs it, on real folders.

mod common;

use std::path::Path;
use std::process::Output;

use common::{text, Dir};
use protocol::manifest::Manifest;

fn peerpage(args: &[&str], dir: &Path) -> Output {
    common::run(args, &[dir])
}

fn big(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

#[test]
fn lists_every_file_by_url_path_with_a_manifest_each() {
    let dir = Dir::new("list");
    dir.write("index.html", b"<h1>hi</h1>");
    dir.write("img/a b.png", b"\x89PNG....");
    dir.write("assets/level1.bin", &big(600 * 1024));
    let out = peerpage(&["manifest"], &dir.0);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("indexed 3 files"), "{}", text(&out));
    let index = dir.index();
    let paths: Vec<&str> = index.files.keys().map(String::as_str).collect();
    assert_eq!(paths, ["assets/level1.bin", "img/a%20b.png", "index.html"]);
    for (relative, url, media_type) in [
        (
            "assets/level1.bin",
            "assets/level1.bin",
            "application/octet-stream",
        ),
        ("img/a b.png", "img/a%20b.png", "image/png"),
        ("index.html", "index.html", "text/html"),
    ] {
        let file = &index.files[url];
        let data = std::fs::read(dir.0.join(relative)).unwrap();
        let name = relative.rsplit('/').next();
        let expected = Manifest::describe(&data, media_type, name);
        assert_eq!(file.address, expected.address(), "{relative}");
        assert_eq!(file.size, data.len() as u64);
        assert_eq!(file.media_type, media_type);
        let manifest =
            std::fs::read(dir.0.join(".peerpage").join(file.address.to_string())).unwrap();
        assert_eq!(Manifest::verify(&file.address, &manifest), Ok(expected));
    }
    // Its own files are not listed on a second run.
    let again = peerpage(&["manifest"], &dir.0);
    assert!(again.status.success());
    assert_eq!(dir.index().files.len(), 3);
}

#[test]
fn a_rerun_hashes_only_what_changed() {
    let dir = Dir::new("rerun");
    dir.write("a.txt", b"one");
    dir.write("b.bin", &big(300 * 1024));
    dir.write("c.css", b"body{}");
    assert!(peerpage(&["manifest"], &dir.0).status.success());
    let before = dir.index();
    let out = peerpage(&["manifest"], &dir.0);
    assert!(
        text(&out).contains("(0 hashed, 3 unchanged)"),
        "{}",
        text(&out)
    );
    dir.write("a.txt", b"two!");
    let out = peerpage(&["manifest"], &dir.0);
    assert!(
        text(&out).contains("(1 hashed, 2 unchanged)"),
        "{}",
        text(&out)
    );
    let after = dir.index();
    assert_ne!(after.files["a.txt"].address, before.files["a.txt"].address);
    assert_eq!(after.files["b.bin"], before.files["b.bin"]);
    // A removed file leaves the index.
    std::fs::remove_file(dir.0.join("c.css")).unwrap();
    assert!(peerpage(&["manifest"], &dir.0).status.success());
    assert!(!dir.index().files.contains_key("c.css"));
}

#[test]
fn include_lists_only_matching_files() {
    let dir = Dir::new("include");
    dir.write("index.html", b"x");
    dir.write("img/a.png", b"png");
    dir.write("img/deep/b.png", b"png2");
    dir.write("dl/game.zip", b"zip");
    let out = peerpage(
        &["manifest", "--include", "*.png", "--include", "dl/*.zip"],
        &dir.0,
    );
    assert!(out.status.success(), "{}", text(&out));
    let paths: Vec<String> = dir.index().files.into_keys().collect();
    assert_eq!(paths, ["dl/game.zip", "img/a.png", "img/deep/b.png"]);
    let bad = peerpage(&["manifest", "--include", "[x"], &dir.0);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("is not a pattern"), "{}", text(&bad));
}

#[test]
fn check_rehashes_everything_and_names_what_differs() {
    let dir = Dir::new("check");
    dir.write("a.txt", b"same size");
    dir.write("b.txt", b"b");
    assert!(peerpage(&["manifest"], &dir.0).status.success());
    let ok = peerpage(&["manifest", "--check"], &dir.0);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("ok: 2 files"), "{}", text(&ok));
    // Same size, so only a rehash can tell; and a file added since.
    dir.write("a.txt", b"SAME SIZE");
    dir.write("new.txt", b"new");
    let bad = peerpage(&["manifest", "--check"], &dir.0);
    assert!(!bad.status.success());
    let said = text(&bad);
    assert!(
        said.contains("a.txt: changed since it was indexed"),
        "{said}"
    );
    assert!(said.contains("new.txt: not in the index"), "{said}");
    assert!(said.contains("run `peerpage manifest"), "{said}");
    assert!(!said.contains("b.txt"), "{said}");
    // A manifest that went missing is named too.
    assert!(peerpage(&["manifest"], &dir.0).status.success());
    let b = dir.index().files["b.txt"].address;
    std::fs::remove_file(dir.0.join(".peerpage").join(b.to_string())).unwrap();
    let said = text(&peerpage(&["manifest", "--check"], &dir.0));
    assert!(said.contains("b.txt: its manifest"), "{said}");
}

#[test]
fn what_cannot_be_listed_is_named_and_nothing_is_written() {
    let dir = Dir::new("errors");
    let outside = Dir::new("outside");
    outside.write("secret.txt", b"private");
    dir.write("ok.txt", b"fine");
    dir.write("50%.png", b"percent");
    std::os::unix::fs::symlink(outside.0.join("secret.txt"), dir.0.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("nowhere"), dir.0.join("broken.txt")).unwrap();
    // A link inside the folder is fine.
    std::os::unix::fs::symlink(dir.0.join("ok.txt"), dir.0.join("alias.txt")).unwrap();
    let out = peerpage(&["manifest"], &dir.0);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("leak.txt: a symlink out of the folder"),
        "{said}"
    );
    assert!(said.contains("broken.txt: cannot read it"), "{said}");
    assert!(said.contains("50%.png: the name has `%`"), "{said}");
    assert!(said.contains("3 problems; nothing was written"), "{said}");
    assert!(!said.contains("alias.txt"), "{said}");
    assert!(!dir.0.join("peerpage.json").exists());
    // Fixed, it indexes.
    for f in ["leak.txt", "broken.txt", "50%.png"] {
        std::fs::remove_file(dir.0.join(f)).unwrap();
    }
    let out = peerpage(&["manifest"], &dir.0);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dir.index().files.len(), 2);
    let missing = peerpage(&["manifest"], &dir.0.join("no-such-folder"));
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no-such-folder"),
        "{}",
        text(&missing)
    );
}
