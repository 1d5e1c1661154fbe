//! The app as released: its files read once at startup and named by a
//! release id, a hash of them all, so that browsers cache them for good
//! and a page never meets scripts or wasm from another build.
//!
//! The page (`index.html`) is served at `/`, `/index.html` and share links
//! with `no-cache` (revalidated on every open; its ETag is the release).
//! Its references to the app's own files (`"/app.js"`, `"/pkg/…"`) are
//! rewritten to `/r/<release>/…`, which are served from memory as
//! `immutable`. The app's files import each other by relative URLs, so they
//! stay inside their release too. A request for another release's files (a
//! page loaded before the broker restarted with a new build) gets a 404
//! asking for a reload. A folder with its own `peerpage.json` is a site
//! (such as `www/demo/`), not part of the app: it stays on disk.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG};
use warp::http::{HeaderValue, Response, StatusCode};

/// Most bytes read from `--www` into memory: the app is a few MB.
pub const MAX_RELEASE_BYTES: u64 = 256 << 20;
/// Most files read from `--www`.
pub const MAX_RELEASE_FILES: usize = 4096;
/// Where released files live: `/r/<release>/<path>`.
pub const RELEASE_PREFIX: &str = "r";

/// Cache policy of released files: their URL changes when they do.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of the page and of files under their own names.
pub const REVALIDATE: &str = "no-cache";

/// Why `--www` could not be released.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "--www holds more than {MAX_RELEASE_FILES} files or {} MiB; point it at the app's \
         own folder (index.html, app.js, pkg/)",
        MAX_RELEASE_BYTES >> 20
    )]
    TooBig,
}

/// One released file.
#[derive(Debug)]
struct File {
    body: Bytes,
    content_type: HeaderValue,
}

/// The app's files as read at startup.
#[derive(Debug)]
pub struct AppRelease {
    id: String,
    /// `index.html` with its references rewritten; `None` if there is none.
    page: Option<Bytes>,
    /// By path relative to `--www`, `/`-separated.
    files: HashMap<String, File>,
}

impl AppRelease {
    /// Reads every file under `www` (a missing folder is an empty app).
    pub fn load(www: &Path) -> Result<AppRelease, ReleaseError> {
        let mut found = Vec::new();
        let mut total = 0;
        if www.is_dir() {
            read_tree(www, "", &mut found, &mut total)?;
        }
        Ok(AppRelease::from_files(found))
    }

    /// The release of `files` (path, contents).
    pub fn from_files(mut files: Vec<(String, Vec<u8>)>) -> AppRelease {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut hasher = Sha256::new();
        for (path, body) in &files {
            // Lengths first, so no two different trees hash alike.
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update((body.len() as u64).to_le_bytes());
            hasher.update(body);
        }
        let id = hasher.finalize()[..8]
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
        let mut page = None;
        let mut served = HashMap::new();
        for (path, body) in files {
            if path == "index.html" {
                page = Some(body);
                continue;
            }
            let content_type = mime_guess::from_path(&path).first_or_octet_stream();
            let content_type = HeaderValue::from_str(content_type.as_ref())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            served.insert(
                path,
                File {
                    body: Bytes::from(body),
                    content_type,
                },
            );
        }
        let page = page.map(|html| {
            let html = String::from_utf8_lossy(&html);
            Bytes::from(rewrite_references(&html, &id, served.keys()))
        });
        AppRelease {
            id,
            page,
            files: served,
        }
    }

    /// The release id: 16 hex digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The page as served, references rewritten (empty if there is none).
    pub fn page_html(&self) -> &str {
        self.page
            .as_deref()
            .map(|b| std::str::from_utf8(b).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Whether there is a page to serve.
    pub fn has_page(&self) -> bool {
        self.page.is_some()
    }

    /// The page, or 304 if the browser's copy (`if_none_match`) is current.
    pub fn page(&self, if_none_match: Option<&str>) -> Response<Bytes> {
        let etag = format!("\"{}\"", self.id);
        let builder = Response::builder()
            .header(CACHE_CONTROL, REVALIDATE)
            .header(ETAG, &etag);
        let fresh = if_none_match.is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*")
        });
        if fresh {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Bytes::new())
                .expect("valid response");
        }
        builder
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .body(self.page.clone().unwrap_or_default())
            .expect("valid response")
    }

    /// `/r/<release>/<path>`: the file, or a 404 that says why.
    pub fn released(&self, release: &str, path: &str) -> Response<Bytes> {
        if release != self.id {
            return not_found(format!(
                "these files belong to release {release} of the app; this broker serves {}: \
                 reload the page\n",
                self.id
            ));
        }
        match self.files.get(path) {
            Some(file) => Response::builder()
                .header(CACHE_CONTROL, IMMUTABLE)
                .header(CONTENT_TYPE, file.content_type.clone())
                .body(file.body.clone())
                .expect("valid response"),
            None => not_found(format!("release {release} has no file {path}\n")),
        }
    }
}

fn not_found(text: String) -> Response<Bytes> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(CACHE_CONTROL, "no-store")
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Bytes::from(text))
        .expect("valid response")
}

/// Reads the files under `dir` (named `prefix…`) into `found`, within the
/// release's bounds.
fn read_tree(
    dir: &Path,
    prefix: &str,
    found: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), ReleaseError> {
    let read_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReleaseError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // Not a name a URL can carry.
        };
        let relative = format!("{prefix}{name}");
        // Symlinks are followed, as a static file server would.
        let meta = std::fs::metadata(&path).map_err(read_err(&path))?;
        if meta.is_dir() && path.join(protocol::site::INDEX_FILE).is_file() {
            // A site of its own (`peerpage manifest`), with files of any
            // size: served from disk under its own names, not released.
            continue;
        }
        if meta.is_dir() {
            read_tree(&path, &format!("{relative}/"), found, total)?;
        } else if meta.is_file() {
            *total += meta.len();
            if *total > MAX_RELEASE_BYTES || found.len() >= MAX_RELEASE_FILES {
                return Err(ReleaseError::TooBig);
            }
            found.push((relative, std::fs::read(&path).map_err(read_err(&path))?));
        }
    }
    Ok(())
}

/// `html` with every quoted absolute reference to one of `paths`
/// (`"/app.js"`, `'/pkg/x.js'`) pointing into release `id` instead.
fn rewrite_references<'a>(html: &str, id: &str, paths: impl Iterator<Item = &'a String>) -> String {
    let mut out = html.to_owned();
    for path in paths {
        for quote in ['"', '\''] {
            let from = format!("{quote}/{path}{quote}");
            let to = format!("{quote}/{RELEASE_PREFIX}/{id}/{path}{quote}");
            out = out.replace(&from, &to);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(app_js: &str) -> AppRelease {
        AppRelease::from_files(vec![
            (
                "index.html".into(),
                b"<script>import(\"/app.js\")</script><link href='/style.css'><a href=\"/other\">"
                    .to_vec(),
            ),
            ("app.js".into(), app_js.as_bytes().to_vec()),
            ("style.css".into(), b"body{}".to_vec()),
        ])
    }

    #[test]
    fn references_to_own_files_point_into_the_release() {
        let r = release("1");
        let id = r.id();
        assert_eq!(
            r.page_html(),
            format!(
                "<script>import(\"/r/{id}/app.js\")</script><link href='/r/{id}/style.css'>\
                 <a href=\"/other\">"
            )
        );
    }

    #[test]
    fn any_change_changes_the_release() {
        assert_eq!(release("1").id(), release("1").id());
        assert_ne!(release("1").id(), release("2").id());
        // Moving bytes between a name and its contents is a change too.
        let a = AppRelease::from_files(vec![("ab".into(), b"c".to_vec())]);
        let b = AppRelease::from_files(vec![("a".into(), b"bc".to_vec())]);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn the_page_revalidates_by_release() {
        let r = release("1");
        let etag = format!("\"{}\"", r.id());
        assert_eq!(r.page(None).status(), 200);
        assert_eq!(r.page(Some(&etag)).status(), 304);
        assert_eq!(
            r.page(Some("\"other\", W/".to_owned().as_str())).status(),
            200
        );
        assert_eq!(r.page(Some(&format!("\"x\", W/{etag}"))).status(), 304);
    }

    #[test]
    fn another_release_is_not_served() {
        let r = release("1");
        assert_eq!(r.released(r.id(), "app.js").status(), 200);
        assert_eq!(r.released(r.id(), "app.js").body().as_ref(), b"1");
        assert_eq!(r.released("0000000000000000", "app.js").status(), 404);
        assert_eq!(r.released(r.id(), "index.html").status(), 404);
        assert_eq!(r.released(r.id(), "missing.js").status(), 404);
    }
}
