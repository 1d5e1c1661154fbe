//! Time for the peer: a monotonic clock, and one timer armed for the
//! earliest deadline any part names (downloads, status throttling, serving
//! links that never opened, ready-offer retries) instead of a periodic
//! tick.

use gloo_timers::callback::Timeout;

/// Milliseconds on the page's monotonic clock (`performance.now()`): wall
/// clock changes (`Date.now()` jumps) must not fire or delay timeouts.
pub fn now() -> f64 {
    thread_local! {
        static PERFORMANCE: Option<web_sys::Performance> =
            web_sys::window().and_then(|w| w.performance());
    }
    PERFORMANCE.with(|p| p.as_ref().map_or_else(js_sys::Date::now, |p| p.now()))
}

/// One timer for the earliest deadline.
///
/// It is re-armed only when a deadline comes earlier than the armed one:
/// deadlines that move later (a stall timeout pushed back by every chunk)
/// would otherwise reset a browser timer on every message. When it fires
/// early for what moved, the owner finds nothing due and arms it again.
#[derive(Default)]
pub struct Wake {
    armed: Option<(f64, Timeout)>,
}

impl Wake {
    /// Makes sure the timer fires by `deadline` (clock ms), calling `fire`;
    /// `None` means nothing is due and leaves an armed timer alone.
    pub fn arm(&mut self, deadline: Option<f64>, fire: impl FnOnce() + 'static) {
        let Some(at) = deadline else { return };
        if self.armed.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        // A millisecond late rather than early: the clock's integer
        // milliseconds must have reached the deadline when it fires.
        let delay = (at - now()).max(0.0).ceil() as u32 + 1;
        self.armed = Some((at, Timeout::new(delay, fire)));
    }

    /// The timer fired: nothing is armed any more.
    pub fn fired(&mut self) {
        self.armed = None;
    }

    /// Cancels the timer.
    pub fn cancel(&mut self) {
        self.armed = None;
    }
}
