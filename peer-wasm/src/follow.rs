//! `peer.followSite(indexUrl, publicKey)`: a site's signed releases (see
//! `protocol::release`), checked before anything of them is used.
//!
//! A record is refused, with a `warning` event that says why, when its
//! signature does not verify for the followed key, when its `seq` is lower
//! than the highest this browser has seen for the site (kept in
//! `localStorage`, so across reloads), when its `seq` is that one but its
//! bytes differ, when it has expired, or when its index does not match the
//! address it names. The release in use stays in use. Once a release is
//! verified, `fetchUrl` serves the site's files from its index, and only
//! from a verified release's.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::{Rc, Weak};

use js_sys::{Object, Promise, Reflect};
use protocol::release::{SignedRelease, SiteKey, MAX_RECORD_BYTES};
use protocol::site::SiteIndex;
use sha2::{Digest, Sha256};
use wasm_bindgen::JsValue;

use crate::events::Event;
use crate::peer::Inner;
use crate::signature::verify_release;
use crate::site::{get_fresh, release_index, Indexes};

/// The highest release seen of `site`: its `seq` and the SHA-256 of its
/// record's canonical bytes.
fn seen(site: &SiteKey) -> Option<(u64, String)> {
    let storage = web_sys::window()?.local_storage().ok()??;
    let value = storage.get_item(&storage_key(site)).ok()??;
    let (seq, hash) = value.split_once(':')?;
    Some((seq.parse().ok()?, hash.to_owned()))
}

fn remember(site: &SiteKey, seq: u64, hash: &str) {
    let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
    if let Some(storage) = storage {
        let _ = storage.set_item(&storage_key(site), &format!("{seq}:{hash}"));
    }
}

fn storage_key(site: &SiteKey) -> String {
    format!("peerpage-release:{site}")
}

/// Seconds since the Unix epoch, by this browser's clock.
fn now_seconds() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Why `record` may not replace what this browser saw of its site.
fn refusal(record: &SignedRelease, hash: &str) -> Option<String> {
    let release = &record.release;
    if release.expires <= now_seconds() {
        return Some(format!(
            "release {} has expired (at {} Unix time); the site must publish a new one",
            release.seq, release.expires
        ));
    }
    match seen(&release.site) {
        Some((highest, _)) if release.seq < highest => Some(format!(
            "release {} is older than release {highest}, already seen here: refused as a \
             rollback",
            release.seq
        )),
        Some((highest, seen_hash)) if release.seq == highest && seen_hash != hash => Some(format!(
            "release {} differs from the release {highest} already seen here: refused",
            release.seq
        )),
        _ => None,
    }
}

/// Follows the site whose record is at `index_url`, signed by `key`:
/// fetches and checks its release and, if it is newer, applies it; from
/// then on the broker pushes newer ones too.
pub fn follow_site(
    inner: Weak<RefCell<Inner>>,
    indexes: Rc<RefCell<Indexes>>,
    index_url: String,
    key: String,
) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let site = SiteKey::parse(&key).ok_or_else(|| {
            js_sys::Error::new(&format!(
                "{key:?} is not a site key (32 bytes in base64url, as `peerpage keygen` prints)"
            ))
        })?;
        let base = web_sys::window().ok_or("no window")?.location().href()?;
        let url = web_sys::Url::new_with_base(&index_url, &base)?.href();
        indexes
            .borrow_mut()
            .followed
            .entry(url.clone())
            .or_insert(None);
        if let Some(inner) = inner.upgrade() {
            inner.borrow_mut().follow(site, url.clone());
        }
        let bytes = get_fresh(&url, MAX_RECORD_BYTES)
            .await
            .map_err(|e| warn(&inner, &site, format!("cannot get the release record: {e}")))?
            .ok_or_else(|| warn(&inner, &site, format!("{url} has no release record")))?;
        let record =
            SignedRelease::parse(&bytes).map_err(|e| warn(&inner, &site, e.to_string()))?;
        if record.release.site != site {
            return Err(warn(
                &inner,
                &site,
                format!(
                    "the release is of site {}, not of the followed site {site}",
                    record.release.site
                ),
            ));
        }
        apply(&inner, &indexes, &url, record).await
    })
}

/// Tells the page why a release of `site` was refused; the error to
/// reject with.
fn warn(inner: &Weak<RefCell<Inner>>, site: &SiteKey, message: String) -> JsValue {
    if let Some(inner) = inner.upgrade() {
        inner.borrow().emit(Event::SiteWarning {
            site: site.to_string(),
            message: message.clone(),
        });
    }
    JsValue::from(js_sys::Error::new(&message))
}

/// Checks `record` of the followed site whose record is at `url` (from
/// the origin, or pushed by the broker) and, if it passes, applies it:
/// resolves with `{site, seq, created, expires, index}`.
pub async fn apply(
    inner: &Weak<RefCell<Inner>>,
    indexes: &Rc<RefCell<Indexes>>,
    url: &str,
    record: SignedRelease,
) -> Result<JsValue, JsValue> {
    let site = record.release.site;
    verify_release(&record, &site)
        .await
        .map_err(|e| warn(inner, &site, e.to_string()))?;
    let hash = hex::encode(Sha256::digest(record.release.signing_bytes()));
    if let Some(why) = refusal(&record, &hash) {
        return Err(warn(inner, &site, why));
    }
    let index = release_index(url, &record)
        .await
        .map_err(|e| warn(inner, &site, format!("release {}: {e}", record.release.seq)))?;
    let before = indexes.borrow().followed.get(url).cloned().flatten();
    let changed = changed_paths(before.as_deref(), &index);
    let first_time =
        seen(&site).is_none_or(|(seq, _)| seq < record.release.seq) || before.is_none();
    remember(&site, record.release.seq, &hash);
    indexes
        .borrow_mut()
        .followed
        .insert(url.to_owned(), Some(Rc::new(index)));
    if first_time {
        if let Some(inner) = inner.upgrade() {
            inner.borrow().emit(Event::Release {
                site: site.to_string(),
                seq: record.release.seq,
                changed,
            });
        }
    }
    let out = Object::new();
    let release = &record.release;
    Reflect::set(&out, &"site".into(), &site.to_string().into())?;
    Reflect::set(&out, &"seq".into(), &(release.seq as f64).into())?;
    Reflect::set(&out, &"created".into(), &(release.created as f64).into())?;
    Reflect::set(&out, &"expires".into(), &(release.expires as f64).into())?;
    Reflect::set(&out, &"index".into(), &release.index.to_string().into())?;
    Ok(out.into())
}

/// Paths whose address differs between `before` and `after` (every path
/// of `after` without a `before`), or that one of them lacks.
fn changed_paths(before: Option<&SiteIndex>, after: &SiteIndex) -> Vec<String> {
    let Some(before) = before else {
        return after.files.keys().cloned().collect();
    };
    let paths: BTreeSet<&String> = before.files.keys().chain(after.files.keys()).collect();
    paths
        .into_iter()
        .filter(|p| {
            before.files.get(*p).map(|f| f.address) != after.files.get(*p).map(|f| f.address)
        })
        .cloned()
        .collect()
}
