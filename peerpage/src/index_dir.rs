//! `peerpage manifest DIR` and `peerpage manifest --check DIR`: the index
//! and the manifests of a published folder, written or verified.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use protocol::manifest::Manifest;
use protocol::site::{url_path, SiteFile, SiteIndex, INDEX_FILE, MANIFEST_DIR};
use protocol::ContentId;

use crate::hash_file::{manifest_of, media_type_of};
use crate::state::{mtime_ns, Seen, State};
use crate::walk::{files, Filter, Found};

/// A file hashed (or found unchanged) for the index.
struct Listed {
    relative: String,
    url: String,
    seen: Seen,
    /// Its manifest's bytes, if hashed now.
    manifest: Option<Vec<u8>>,
}

/// An index made of a folder, its manifests and cache written.
pub struct Built {
    pub index: SiteIndex,
    /// What was done, for the user.
    pub summary: String,
}

/// Indexes `dir`: hashes what changed, writes the manifests, the index
/// and the cache. Writes nothing if any file cannot be listed.
pub fn write(dir: &Path, include: &[String]) -> anyhow::Result<String> {
    let built = build(dir, include)?;
    let index_path = dir.join(INDEX_FILE);
    write_atomically(&index_path, &built.index.to_bytes())
        .with_context(|| format!("cannot write {}", index_path.display()))?;
    Ok(format!("{}: {}", built.summary, index_path.display()))
}

/// Indexes `dir` as [`write`] does, without writing the index itself.
pub fn build(dir: &Path, include: &[String]) -> anyhow::Result<Built> {
    let manifests = dir.join(MANIFEST_DIR);
    let old = State::load(&manifests);
    let (listed, hashed) = list(dir, include, |found| {
        old.files
            .get(&found.relative)
            .filter(|seen| seen.matches(&found.meta))
            .filter(|seen| manifests.join(seen.address.to_string()).is_file())
            .cloned()
    })?;
    std::fs::create_dir_all(&manifests)
        .with_context(|| format!("cannot make {}", manifests.display()))?;
    let mut index = SiteIndex::new();
    let mut state = State::default();
    let mut bytes = 0;
    for file in listed {
        if let Some(manifest) = &file.manifest {
            let path = manifests.join(file.seen.address.to_string());
            write_atomically(&path, manifest)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        bytes += file.seen.size;
        index.files.insert(
            file.url,
            SiteFile {
                address: file.seen.address,
                size: file.seen.size,
                media_type: file.seen.media_type.clone(),
            },
        );
        state.files.insert(file.relative, file.seen);
    }
    // Only a cache: a failure costs the next run a rehash, nothing more.
    if let Err(e) = state.save(&manifests) {
        eprintln!(
            "peerpage: cannot save the cache of hashes ({e}); the next run hashes every file"
        );
    }
    let count = index.files.len();
    let summary = format!(
        "indexed {count} files, {} ({hashed} hashed, {} unchanged)",
        human(bytes),
        count - hashed,
    );
    Ok(Built { index, summary })
}

/// Verifies `dir`'s index: every file rehashed and compared with it, each
/// listed manifest present and matching its address, nothing unlisted.
pub fn check(dir: &Path, include: &[String]) -> anyhow::Result<String> {
    let index_path = dir.join(INDEX_FILE);
    let bytes = std::fs::read(&index_path).with_context(|| {
        format!(
            "cannot read {} (run `peerpage manifest` first)",
            index_path.display()
        )
    })?;
    let mut problems = Vec::new();
    let index = match protocol::release::SignedRelease::parse(&bytes) {
        // A released folder: the index is content of the release.
        Ok(record) => {
            if let Err(why) = record.verify() {
                problems.push(format!("{INDEX_FILE}: {why}"));
            }
            let path = dir.join(protocol::release::index_path(&record.release.index));
            let bytes = std::fs::read(&path)
                .with_context(|| format!("cannot read the release's index {}", path.display()))?;
            SiteIndex::parse(&bytes).with_context(|| path.display().to_string())?
        }
        Err(_) => SiteIndex::parse(&bytes).with_context(|| index_path.display().to_string())?,
    };
    let (listed, _) = list(dir, include, |_| None)?;
    for file in &listed {
        match index.files.get(&file.url) {
            None => problems.push(format!("{}: not in the index", file.relative)),
            Some(f) if f.address != file.seen.address || f.size != file.seen.size => {
                problems.push(format!("{}: changed since it was indexed", file.relative));
            }
            Some(f) if f.media_type != file.seen.media_type => problems.push(format!(
                "{}: indexed as {}, served as {}",
                file.relative, f.media_type, file.seen.media_type
            )),
            Some(_) => {}
        }
    }
    for (url, f) in &index.files {
        if !listed.iter().any(|l| &l.url == url) {
            problems.push(format!("{url}: in the index, but no such file"));
        }
        let path = dir.join(MANIFEST_DIR).join(f.address.to_string());
        match std::fs::read(&path) {
            Ok(bytes) => {
                if let Err(e) = Manifest::verify(&f.address, &bytes) {
                    problems.push(format!("{url}: its manifest {}: {e}", path.display()));
                }
            }
            Err(e) => problems.push(format!("{url}: its manifest {}: {e}", path.display())),
        }
    }
    if problems.is_empty() {
        return Ok(format!(
            "ok: {} files match {}",
            index.files.len(),
            index_path.display()
        ));
    }
    anyhow::bail!(
        "{} does not match the files:\n  {}\nrun `peerpage manifest {}` again",
        index_path.display(),
        problems.join("\n  "),
        dir.display()
    )
}

/// The files of `dir` to list, each hashed unless `cached` knows it; and
/// how many were hashed. Fails, naming each, if any cannot be listed.
fn list(
    dir: &Path,
    include: &[String],
    cached: impl Fn(&Found) -> Option<Seen>,
) -> anyhow::Result<(Vec<Listed>, usize)> {
    let (found, mut errors) = files(dir, &Filter::new(include)?)?;
    let mut listed = Vec::new();
    let mut hashed = 0;
    for file in found {
        let url = match url_path(&file.relative) {
            Ok(url) => url,
            Err(why) => {
                errors.push(format!(
                    "{}: the name {why}, so no URL path: rename it",
                    file.relative
                ));
                continue;
            }
        };
        if let Some(seen) = cached(&file) {
            listed.push(Listed {
                relative: file.relative,
                url,
                seen,
                manifest: None,
            });
            continue;
        }
        let media_type = media_type_of(&file.path);
        let name = file.relative.rsplit('/').next().unwrap_or(&file.relative);
        let manifest = match manifest_of(&file.path, &media_type, name) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{}: cannot read it: {e}", file.relative));
                continue;
            }
        };
        if let Err(e) = manifest.check() {
            errors.push(format!("{}: {e}", file.relative));
            continue;
        }
        hashed += 1;
        let bytes = manifest.to_bytes();
        listed.push(Listed {
            relative: file.relative,
            url,
            seen: Seen {
                size: manifest.size,
                mtime_ns: mtime_ns(&file.meta).unwrap_or_default(),
                media_type,
                address: ContentId::of_manifest_bytes(&bytes),
            },
            manifest: Some(bytes),
        });
    }
    if !errors.is_empty() {
        anyhow::bail!(
            "cannot index {} ({} problem{}; nothing was written):\n  {}",
            dir.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n  ")
        );
    }
    Ok((listed, hashed))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// server never serves half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
