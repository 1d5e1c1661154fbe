//! Security headers: a content security policy for the app, and the
//! headers every response carries.
//!
//! The policy allows the page's inline script by its SHA-256, computed at
//! startup from the page as served (see [`crate::app_release`]), so a
//! changed page needs a restart but never an edit here. What the app needs besides its own files: wasm
//! compilation (`'wasm-unsafe-eval'`), the disk worker started from a
//! `blob:` URL, previews of verified content as `blob:` (and SVG as
//! `data:`) URLs, and its broker's WebSocket, which `connect-src 'self'`
//! covers (`ws:`/`wss:` of the page's own host count as `'self'`).
//! `connect-src` also allows `blob:`: a page can read back only the
//! `blob:` URLs its own origin made (such as a saved file's), so it opens
//! no path to the network.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use warp::http::{HeaderMap, HeaderValue};

/// Headers for the app's responses and for all responses, made once.
#[derive(Clone, Debug)]
pub struct SecurityHeaders {
    app: HeaderMap,
    every: HeaderMap,
}

impl SecurityHeaders {
    /// Headers for an app whose `index.html` is `html`.
    pub fn for_page(html: &str) -> SecurityHeaders {
        let mut every = HeaderMap::new();
        every.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        // Share links are capabilities: never hand them to another site.
        every.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        let mut app = every.clone();
        let policy = content_security_policy(&inline_script_hashes(html));
        app.insert(
            "content-security-policy",
            HeaderValue::from_str(&policy).expect("the policy is ASCII"),
        );
        SecurityHeaders { app, every }
    }

    /// For the page and the static files (each route adds its own cache
    /// policy: see [`crate::app_release`]).
    pub fn app(&self) -> HeaderMap {
        self.app.clone()
    }

    /// For every response.
    pub fn every(&self) -> HeaderMap {
        self.every.clone()
    }
}

/// The page's content security policy, allowing the inline scripts whose
/// CSP hash sources (`'sha256-…'`) are `hashes`.
pub fn content_security_policy(hashes: &[String]) -> String {
    let mut script = String::from("'self' 'wasm-unsafe-eval'");
    for hash in hashes {
        script.push(' ');
        script.push_str(hash);
    }
    format!(
        "default-src 'none'; script-src {script}; style-src 'self'; \
         img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self' blob:; \
         worker-src blob:; manifest-src 'self'; frame-ancestors 'none'; \
         object-src 'none'; base-uri 'none'; form-action 'none'"
    )
}

/// `'sha256-<base64>'` of every inline `<script>` (one without `src`) in
/// `html`, in order: the text between the tags, as browsers hash it.
pub fn inline_script_hashes(html: &str) -> Vec<String> {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower`
    // index `html`.
    let lower = html.to_ascii_lowercase();
    let mut hashes = Vec::new();
    let mut at = 0;
    while let Some(open) = lower[at..].find("<script").map(|i| at + i) {
        let Some(tag_end) = lower[open..].find('>').map(|i| open + i) else {
            break;
        };
        let Some(close) = lower[tag_end..].find("</script").map(|i| tag_end + i) else {
            break;
        };
        let attributes = &lower[open + "<script".len()..tag_end];
        let has_src = attributes
            .split(|c: char| c.is_ascii_whitespace())
            .any(|a| a == "src" || a.starts_with("src="));
        if !has_src {
            let digest = Sha256::digest(&html.as_bytes()[tag_end + 1..close]);
            let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
            hashes.push(format!("'sha256-{b64}'"));
        }
        at = close;
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_skipped() {
        let html = "<head><script>a()</script><SCRIPT type=module src=/x.js></SCRIPT>\
                    <script type=\"module\">b()\n</script></head>";
        let hash = |s: &str| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s));
            format!("'sha256-{b64}'")
        };
        assert_eq!(inline_script_hashes(html), vec![hash("a()"), hash("b()\n")]);
        assert_eq!(
            inline_script_hashes("<p>no scripts</p>"),
            Vec::<String>::new()
        );
        // The well-known hash of an empty script.
        assert_eq!(
            inline_script_hashes("<script></script>"),
            vec!["'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='".to_owned()]
        );
    }

    #[test]
    fn the_policy_names_the_hashes() {
        let headers = SecurityHeaders::for_page("<script>go()</script>");
        let app = headers.app();
        let csp = app["content-security-policy"].to_str().unwrap();
        assert!(csp.contains(&inline_script_hashes("<script>go()</script>")[0]));
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        // Each route sets its own cache policy (see app_release).
        assert!(!app.contains_key("cache-control"));
        assert!(!headers.every().contains_key("content-security-policy"));
        assert_eq!(headers.every()["x-content-type-options"], "nosniff");
    }
}
