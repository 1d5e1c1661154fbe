//! Per-connection message rate limit: a token bucket that may go into
//! debt, so that a peer which keeps sending past its refusals is found out
//! and disconnected, while one that only bursts briefly is just refused.

use std::time::Instant;

/// What to do with one incoming message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Accept,
    /// Over the limit: refuse this message, keep the connection.
    Refuse,
    /// Far over the limit for too long: close the connection.
    Disconnect,
}

/// One connection's bucket.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// `rate` messages per second on average, `burst` at once.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Accounts for one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Verdict::Accept
        } else if self.tokens >= -self.burst {
            Verdict::Refuse
        } else {
            Verdict::Disconnect
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refuses_then_disconnects_a_flood() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(r.check(t0), Verdict::Accept);
        }
        for _ in 0..5 {
            assert_eq!(r.check(t0), Verdict::Refuse);
        }
        assert_eq!(r.check(t0), Verdict::Disconnect);
    }

    #[test]
    fn a_steady_sender_within_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 2, t0);
        for i in 0..1_000 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(r.check(t), Verdict::Accept, "message {i}");
        }
    }

    #[test]
    fn refusals_heal_with_time() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(10, 2, t0);
        r.check(t0);
        r.check(t0);
        assert_eq!(r.check(t0), Verdict::Refuse);
        // Debt of 1 plus one message: 0.2 s of refill.
        assert_eq!(r.check(t0 + Duration::from_millis(250)), Verdict::Accept);
    }
}
