//! Sites' latest signed releases, kept so that a peer that follows a site
//! hears of its release at once, and passed on to its followers when a
//! newer one is announced. A record is kept only if its signature
//! verifies for the key it names, it has not expired and it is newer than
//! the one kept (see `protocol::release`); the broker still holds no
//! content, only these records of at most 4 KiB. Bounded: at most
//! [`MAX_SITES`] sites, [`MAX_FOLLOWS_PER_PEER`] follows per peer.
//!
//! Kept in this node's memory: followers on other nodes of a Redis
//! deployment do not hear of it yet.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use protocol::release::{SignedRelease, SiteKey};
use protocol::PeerId;

/// Most sites with a kept record or followers.
pub const MAX_SITES: usize = 10_000;
/// Most sites one peer follows.
pub const MAX_FOLLOWS_PER_PEER: usize = 16;

#[derive(Default)]
struct Site {
    record: Option<SignedRelease>,
    followers: HashSet<PeerId>,
}

/// See the module docs.
#[derive(Default)]
pub struct Sites {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sites: HashMap<SiteKey, Site>,
    follows: HashMap<PeerId, HashSet<SiteKey>>,
}

/// Why a follow or an announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("{0}")]
    Refused(String),
    #[error("a peer may follow at most {MAX_FOLLOWS_PER_PEER} sites")]
    TooManyFollows,
    #[error("the broker keeps at most {MAX_SITES} sites; try again later")]
    Full,
}

impl Sites {
    /// `peer` follows `site`; returns the record kept for it, if any.
    pub fn follow(&self, peer: PeerId, site: SiteKey) -> Result<Option<SignedRelease>, SiteError> {
        let mut inner = self.inner.lock().expect("sites lock");
        let Inner { sites, follows } = &mut *inner;
        let mine = follows.entry(peer).or_default();
        if !mine.contains(&site) && mine.len() >= MAX_FOLLOWS_PER_PEER {
            return Err(SiteError::TooManyFollows);
        }
        if !sites.contains_key(&site) && sites.len() >= MAX_SITES {
            return Err(SiteError::Full);
        }
        mine.insert(site);
        let entry = sites.entry(site).or_default();
        entry.followers.insert(peer);
        Ok(entry.record.clone())
    }

    /// Keeps `record` if it verifies, has not expired (`now`, seconds since
    /// the Unix epoch) and is newer than the one kept; returns the site's
    /// followers to pass it on to (none if it was the one kept already).
    pub fn announce(&self, record: &SignedRelease, now: u64) -> Result<Vec<PeerId>, SiteError> {
        record.verify().map_err(SiteError::Refused)?;
        let release = &record.release;
        if release.expires <= now {
            return Err(SiteError::Refused(format!(
                "release {} has expired; sign a new one",
                release.seq
            )));
        }
        let mut inner = self.inner.lock().expect("sites lock");
        if !inner.sites.contains_key(&release.site) && inner.sites.len() >= MAX_SITES {
            return Err(SiteError::Full);
        }
        let site = inner.sites.entry(release.site).or_default();
        if let Some(kept) = &site.record {
            if kept.release.seq > release.seq {
                return Err(SiteError::Refused(format!(
                    "release {} is older than release {} kept here",
                    release.seq, kept.release.seq
                )));
            }
            if kept.release.seq == release.seq {
                if kept == record {
                    return Ok(Vec::new());
                }
                return Err(SiteError::Refused(format!(
                    "release {} is kept here with other contents; a new release needs a new seq",
                    release.seq
                )));
            }
        }
        site.record = Some(record.clone());
        Ok(site.followers.iter().copied().collect())
    }

    /// `peer` is gone: it follows nothing any more.
    pub fn forget(&self, peer: PeerId) {
        let mut inner = self.inner.lock().expect("sites lock");
        let Inner { sites, follows } = &mut *inner;
        for site in follows.remove(&peer).unwrap_or_default() {
            if let Some(s) = sites.get_mut(&site) {
                s.followers.remove(&peer);
                if s.followers.is_empty() && s.record.is_none() {
                    sites.remove(&site);
                }
            }
        }
    }
}
