//! Where a download stands, as the user should see it.

use super::{scheduler, Download, Slot};

/// What the user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Asking the broker for holders.
    Looking,
    /// Nobody holds the content now; waiting for a holder to appear.
    Gone,
    /// Opening a connection to a holder.
    Connecting,
    /// Data is arriving, or waiting for a holder of what is missing.
    Receiving {
        /// Verified bytes so far.
        received: u64,
        /// Total bytes (0 until the manifest arrived).
        total: u64,
        /// Holders currently connected.
        sources: u32,
        /// Holders with chunks requested and not yet delivered.
        sending: u32,
        /// While nothing arrives (`sending` is 0): the `[start, end)` byte
        /// ranges that no connected holder has; the download waits for a
        /// holder of them to appear.
        missing: Vec<(u64, u64)>,
    },
    /// The manifest is verified and the content is bigger than the page
    /// wants without asking: waiting for the user's yes
    /// ([`Download::confirm`]). Name and type are made safe to show (see
    /// [`crate::display`]).
    Confirm {
        /// Size in bytes, as the verified manifest says.
        total: u64,
        /// File name, if any.
        name: Option<String>,
        /// Media type.
        media_type: String,
    },
    /// Everything arrived and matched the address.
    Verified,
}

impl Status {
    /// Whether `self` differs from `earlier` only in bytes received: a
    /// change the page may be told of less often.
    pub fn only_progress_since(&self, earlier: &Status) -> bool {
        match (earlier, self) {
            (
                Status::Receiving {
                    total,
                    sources,
                    sending,
                    missing,
                    ..
                },
                Status::Receiving {
                    total: t,
                    sources: s,
                    sending: n,
                    missing: m,
                    ..
                },
            ) => total == t && sources == s && sending == n && missing == m,
            _ => false,
        }
    }
}

impl Download {
    /// What the user should see now.
    pub fn status(&self) -> Status {
        if self.complete {
            return Status::Verified;
        }
        if let Some(m) = self.manifest.as_ref().filter(|_| self.gated) {
            return Status::Confirm {
                total: m.size,
                name: m.shown_name(),
                media_type: m.shown_type(),
            };
        }
        let open = self.holders.count(|h| h.is_open());
        if self.manifest.is_some() || open > 0 {
            let sending = self.holders.count(|h| h.is_sending());
            return Status::Receiving {
                received: self.verified_bytes,
                total: self.manifest.as_ref().map_or(0, |m| m.size),
                sources: open,
                sending,
                // Only worth its cost (a pass over every chunk, on every
                // frame) once nothing arrives.
                missing: if sending == 0 {
                    self.missing()
                } else {
                    Vec::new()
                },
            };
        }
        if self.holders.len() > 0 {
            return Status::Connecting;
        }
        match self.holders_online {
            Some(0) => Status::Gone,
            _ => Status::Looking,
        }
    }

    /// Byte ranges no connected holder has, once every connected holder
    /// said what it has (before that, nothing is known to be missing).
    fn missing(&self) -> Vec<(u64, u64)> {
        let Some(m) = &self.manifest else {
            return Vec::new();
        };
        let holders = || self.holders.map.values();
        if holders().any(|h| h.has.is_none()) {
            return Vec::new();
        }
        let unheld = (0..m.chunk_count())
            .filter(|&i| self.slots[i as usize] == Slot::Missing && !holders().any(|h| h.has(i)));
        let chunk = m.chunk_size as u64;
        scheduler::ranges(unheld)
            .into_iter()
            .map(|(a, b)| (a as u64 * chunk, (b as u64 * chunk).min(m.size)))
            .collect()
    }
}
