//! Ed25519 signatures of sites' releases, checked with WebCrypto (native
//! code in the browser; no curve arithmetic in the module). The publisher's
//! tool signs with ed25519-dalek; both agree on RFC 8032's test vectors
//! (`browser_tests`, and `peerpage`'s own tests).

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use protocol::release::{SignedRelease, SiteKey};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::error::{PeerError, Result};

/// `crypto.subtle` of this page (or worker).
fn subtle() -> Result<Object> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into())?;
    let subtle = Reflect::get(&crypto, &"subtle".into())?;
    subtle.dyn_into::<Object>().map_err(|_| {
        PeerError::Refused(
            "no WebCrypto here (a page served over plain http from another host): \
             releases cannot be checked"
                .into(),
        )
    })
}

/// Calls `subtle.<method>(args…)` and waits for its promise.
async fn call(subtle: &Object, method: &str, args: &Array) -> Result<JsValue> {
    let f: Function = Reflect::get(subtle, &method.into())?.dyn_into()?;
    let promise: Promise = Reflect::apply(&f, subtle, args)?.dyn_into()?;
    Ok(JsFuture::from(promise).await?)
}

/// Whether `signature` is `public`'s Ed25519 signature of `message`.
pub async fn verify_ed25519(
    public: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<bool> {
    let subtle = subtle()?;
    let algorithm = Object::new();
    Reflect::set(&algorithm, &"name".into(), &"Ed25519".into())?;
    let usages = Array::of1(&"verify".into());
    let import = Array::of5(
        &"raw".into(),
        &Uint8Array::from(&public[..]),
        &algorithm,
        &false.into(),
        &usages,
    );
    let key = call(&subtle, "importKey", &import).await.map_err(|e| {
        PeerError::Refused(format!(
            "this browser cannot check Ed25519 signatures ({e})"
        ))
    })?;
    let verify = Array::of4(
        &algorithm,
        &key,
        &Uint8Array::from(&signature[..]),
        &Uint8Array::from(message),
    );
    Ok(call(&subtle, "verify", &verify).await?.is_truthy())
}

/// Checks that `record` is signed by `followed`, the key the page follows.
pub async fn verify_release(record: &SignedRelease, followed: &SiteKey) -> Result<()> {
    if record.release.site != *followed {
        return Err(PeerError::Refused(format!(
            "the release is of site {}, not of the followed site {followed}",
            record.release.site
        )));
    }
    let signature = record
        .signature_bytes()
        .ok_or_else(|| PeerError::Refused("the signature is not 64 bytes".into()))?;
    if verify_ed25519(&followed.0, &record.release.signing_bytes(), &signature).await? {
        Ok(())
    } else {
        Err(PeerError::Refused(
            "the release's signature does not verify for the followed site's key".into(),
        ))
    }
}
