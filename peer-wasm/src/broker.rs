//! The WebSocket to the broker: connect, send, and report what arrives.
//! Reconnection policy lives with the owner; this only tracks backoff.

use std::rc::Rc;

use gloo_events::EventListener;
use protocol::ClientMsg;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::error::Result;

/// What the socket reports to its owner.
pub enum BrokerEvent {
    /// A text frame.
    Text(String),
    /// The socket closed (or never opened), with the close reason if any.
    Closed(String),
}

/// Callback for socket events.
pub type OnEvent = Rc<dyn Fn(BrokerEvent)>;

/// First reconnection delay; doubles up to [`MAX_BACKOFF_MS`].
const MIN_BACKOFF_MS: u32 = 250;
const MAX_BACKOFF_MS: u32 = 8_000;

/// One socket to the broker, plus the backoff to use when it drops.
pub struct BrokerSocket {
    ws: Option<WebSocket>,
    listeners: Vec<EventListener>,
    backoff_ms: u32,
}

impl Default for BrokerSocket {
    fn default() -> Self {
        BrokerSocket {
            ws: None,
            listeners: Vec::new(),
            backoff_ms: MIN_BACKOFF_MS,
        }
    }
}

impl BrokerSocket {
    /// Opens a socket to `url`, replacing any previous one.
    pub fn open(&mut self, url: &str, on_event: OnEvent) -> Result<()> {
        let ws = WebSocket::new(url)?;
        self.adopt(ws, on_event);
        Ok(())
    }

    /// Takes over a socket opened elsewhere (by the page, before the wasm
    /// loaded), replacing any previous one. The caller replays whatever
    /// arrived on it before.
    pub fn adopt(&mut self, ws: WebSocket, on_event: OnEvent) {
        self.close();
        ws.set_onmessage(None);
        let on = on_event.clone();
        self.listeners
            .push(EventListener::new(&ws, "message", move |e| {
                if let Some(text) = e
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                {
                    on(BrokerEvent::Text(text));
                }
            }));
        let on = on_event;
        self.listeners
            .push(EventListener::new(&ws, "close", move |e| {
                let reason = e
                    .dyn_ref::<CloseEvent>()
                    .map(|c| format!("{} {}", c.code(), c.reason()))
                    .unwrap_or_default();
                on(BrokerEvent::Closed(reason));
            }));
        self.ws = Some(ws);
    }

    /// Whether the socket is closed or closing (an adopted socket may be).
    pub fn is_closed(&self) -> bool {
        self.ws
            .as_ref()
            .is_none_or(|ws| ws.ready_state() >= WebSocket::CLOSING)
    }

    /// Sends a message if the socket is open. Messages sent while offline
    /// are dropped: what matters (holdings, wants) is re-announced on
    /// reconnect, and handshakes in flight time out and retry.
    pub fn send(&self, msg: &ClientMsg) -> bool {
        match &self.ws {
            Some(ws) if ws.ready_state() == WebSocket::OPEN => {
                let text = serde_json::to_string(msg).expect("client messages serialize");
                ws.send_with_str(&text).is_ok()
            }
            _ => false,
        }
    }

    /// Called when the broker welcomed us: the connection works again.
    pub fn reset_backoff(&mut self) {
        self.backoff_ms = MIN_BACKOFF_MS;
    }

    /// The delay before the next reconnection attempt, with jitter so that
    /// a restarted broker is not hit by every peer at the same instant.
    pub fn next_delay(&mut self) -> u32 {
        let base = self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        base + (js_sys::Math::random() * base as f64 / 2.0) as u32
    }

    /// Closes the socket without reporting it.
    pub fn close(&mut self) {
        self.listeners.clear();
        if let Some(ws) = self.ws.take() {
            let _ = ws.close();
        }
    }
}

impl Drop for BrokerSocket {
    fn drop(&mut self) {
        self.close();
    }
}
