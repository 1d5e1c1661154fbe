//! One error type for everything the browser layer can fail at.

use wasm_bindgen::JsValue;

/// A failed browser call or a refused request.
#[derive(Debug)]
pub enum PeerError {
    /// A Web API threw or rejected.
    Js(JsValue),
    /// A request this peer refuses, with a message for the user.
    Refused(String),
}

impl From<JsValue> for PeerError {
    fn from(v: JsValue) -> Self {
        PeerError::Js(v)
    }
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Js(v) => match v.as_string() {
                Some(s) => f.write_str(&s),
                None => write!(f, "{v:?}"),
            },
            PeerError::Refused(s) => f.write_str(s),
        }
    }
}

impl From<PeerError> for JsValue {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::Js(v) => v,
            PeerError::Refused(s) => js_sys::Error::new(&s).into(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = PeerError> = std::result::Result<T, E>;

/// Logs a failure that has no caller to return to (event handlers).
pub fn log_error(context: &str, e: &PeerError) {
    web_sys::console::warn_2(
        &JsValue::from_str(context),
        &JsValue::from_str(&e.to_string()),
    );
}
