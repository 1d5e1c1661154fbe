//! Events for the embedding page: holder counts, download progress,
//! warnings. Delivered on a later microtask so that a handler may call back
//! into the peer without finding it busy.

use js_sys::{Array, Function, Object, Reflect};
use protocol::display::{holder_says, safe_text};
use protocol::download::{DropReason, Status};
use protocol::ContentId;
use wasm_bindgen::JsValue;

/// Something the page may want to show.
#[derive(Clone, Debug)]
pub enum Event {
    /// Connected to the broker, with this id.
    Connected(String),
    /// Lost the broker; reconnecting.
    Disconnected,
    /// A new holder count for an address this peer holds or wants.
    Holders(ContentId, u32),
    /// Download progress; for a site's file, payload bytes so far from
    /// peers and from the origin.
    Status(ContentId, Status, Option<(u64, u64)>),
    /// Something went wrong with a holder, but the download goes on.
    /// Shown made safe (see [`protocol::display`]): it may quote a holder.
    Warning(ContentId, String),
    /// A followed site's release was refused (the previous one stays in
    /// use), or could not be fetched.
    SiteWarning {
        /// The site's key.
        site: String,
        /// Why.
        message: String,
    },
    /// A followed site's newer release was verified and applied.
    Release {
        /// The site's key.
        site: String,
        /// Its `seq`.
        seq: u64,
        /// Paths whose files changed since the release before (all, for
        /// the first one this page saw).
        changed: Vec<String>,
    },
    /// A file being shared was hashed up to `done` of `total` bytes.
    Preparing {
        /// File name, as the page gave it (handed back as it is, so that
        /// the page recognises its own file).
        name: String,
        /// Bytes hashed.
        done: u64,
        /// File size.
        total: u64,
    },
}

fn set(obj: &Object, key: &str, value: JsValue) {
    // Setting a plain property on a fresh object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), &value);
}

impl Event {
    /// The JS object handed to `onevent`: always a `type`, plus fields.
    pub fn to_js(&self) -> JsValue {
        let obj = Object::new();
        match self {
            Event::Connected(id) => {
                set(&obj, "type", "connected".into());
                set(&obj, "id", id.as_str().into());
            }
            Event::Disconnected => set(&obj, "type", "disconnected".into()),
            Event::Holders(c, n) => {
                set(&obj, "type", "holders".into());
                set(&obj, "address", c.to_string().into());
                set(&obj, "count", (*n).into());
            }
            Event::Status(c, status, sources) => {
                set(&obj, "type", "status".into());
                set(&obj, "address", c.to_string().into());
                if let Some((peers, origin)) = sources {
                    set(&obj, "fromPeers", (*peers as f64).into());
                    set(&obj, "fromOrigin", (*origin as f64).into());
                }
                let state = match status {
                    Status::Looking => "looking",
                    Status::Gone => "gone",
                    Status::Connecting => "connecting",
                    Status::Receiving {
                        received,
                        total,
                        sources,
                        sending,
                        missing,
                    } => {
                        set(&obj, "received", (*received as f64).into());
                        set(&obj, "total", (*total as f64).into());
                        set(&obj, "sources", (*sources).into());
                        set(&obj, "sending", (*sending).into());
                        let ranges: Array = missing
                            .iter()
                            .map(|(a, b)| Array::of2(&(*a as f64).into(), &(*b as f64).into()))
                            .collect();
                        set(&obj, "missing", ranges.into());
                        "receiving"
                    }
                    Status::Confirm {
                        total,
                        name,
                        media_type,
                    } => {
                        set(&obj, "total", (*total as f64).into());
                        if let Some(name) = name {
                            set(&obj, "name", name.as_str().into());
                        }
                        set(&obj, "mediaType", media_type.as_str().into());
                        "confirm"
                    }
                    Status::Verified => "verified",
                };
                set(&obj, "state", state.into());
            }
            Event::Preparing { name, done, total } => {
                set(&obj, "type", "preparing".into());
                set(&obj, "name", name.as_str().into());
                set(&obj, "done", (*done as f64).into());
                set(&obj, "total", (*total as f64).into());
            }
            Event::SiteWarning { site, message } => {
                set(&obj, "type", "warning".into());
                set(&obj, "site", site.as_str().into());
                set(&obj, "message", safe_text(message, WARNING_CHARS).into());
            }
            Event::Release { site, seq, changed } => {
                set(&obj, "type", "release".into());
                set(&obj, "site", site.as_str().into());
                set(&obj, "seq", (*seq as f64).into());
                let paths: Array = changed.iter().map(|p| JsValue::from_str(p)).collect();
                set(&obj, "changed", paths.into());
            }
            Event::Warning(c, message) => {
                set(&obj, "type", "warning".into());
                set(&obj, "address", c.to_string().into());
                set(&obj, "message", safe_text(message, WARNING_CHARS).into());
            }
        }
        obj.into()
    }
}

/// Most characters of a warning that are shown.
const WARNING_CHARS: usize = 400;

/// The page's line for a holder dropped for `reason`. A holder's own words
/// (why it refused) are its claim: quoted, made safe and capped.
pub fn dropped_holder(reason: &DropReason) -> String {
    match reason {
        DropReason::Refused(words) => {
            format!(
                "dropped a holder that refused a request; {}",
                holder_says(words)
            )
        }
        other => format!("dropped a holder: {other}"),
    }
}

/// Calls `handler(event)` on a later microtask.
pub fn dispatch(handler: &Option<Function>, event: Event) {
    if let Some(f) = handler.clone() {
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(e) = f.call1(&JsValue::NULL, &event.to_js()) {
                web_sys::console::error_2(&"onevent handler threw".into(), &e);
            }
        });
    }
}
