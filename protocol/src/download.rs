//! The wanter's side of a transfer, as a state machine without I/O:
//! want -> connect -> receive -> verify -> hold.
//!
//! The browser layer feeds it [`Input`]s (introductions, channel events,
//! frames, clock ticks) and carries out the [`Action`]s it returns (open a
//! connection, send a request, drop a holder, ask the broker for more
//! holders, hand over the verified content). Nothing reaches `Complete`
//! without passing the manifest check against the address and the hash
//! check of every chunk.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use crate::ids::{ChunkHash, ContentId, PeerId};
use crate::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::transfer::{Assembly, Frame, FrameKind, Reply, Request};

/// Most holders a download draws from at once.
pub const MAX_SOURCES: usize = 4;
/// Chunks requested from one holder before the first of them arrives.
pub const PIPELINE: usize = 4;
/// Leading chunks asked to come along with the manifest.
pub const PREFETCH: u32 = 4;
/// A holder whose data channel is not open after this long is dropped.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// A holder that owes data and sends nothing for this long is dropped.
pub const STALL_TIMEOUT_MS: u64 = 5_000;
/// With holders online but none connected, ask the broker again this often.
pub const WANT_RETRY_MS: u64 = 2_000;

/// Something that happened, reported by the browser layer.
#[derive(Debug)]
pub enum Input<'a> {
    /// The broker introduced a holder.
    Introduced(PeerId),
    /// The data channel to a holder opened.
    Opened(PeerId),
    /// A binary message from a holder.
    Frame(PeerId, &'a [u8]),
    /// A text message from a holder.
    Reply(PeerId, Reply),
    /// The connection to a holder failed or closed.
    Lost(PeerId, String),
    /// The broker's holder count for this content.
    Holders(u32),
    /// Time passed (for timeouts).
    Tick,
}

/// Something the browser layer must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a WebRTC connection to this holder (we make the offer).
    Connect(PeerId),
    /// Send a request over the holder's data channel.
    Send(PeerId, Request),
    /// Close the connection to this holder. `reason` is set when the holder
    /// misbehaved or failed, for the user's log.
    Disconnect {
        /// Holder to drop.
        peer: PeerId,
        /// Why, if it was not a normal end.
        reason: Option<String>,
    },
    /// Ask the broker to introduce this many more holders.
    Want(u8),
    /// Every byte arrived and was verified.
    Complete {
        /// The verified manifest.
        manifest: Manifest,
        /// Its exact bytes (their hash is the address).
        manifest_bytes: Vec<u8>,
        /// The verified content.
        data: Vec<u8>,
    },
}

/// What the user should see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Asking the broker for holders.
    Looking,
    /// Nobody holds the content now; waiting for a holder to appear.
    Gone,
    /// Opening a connection to a holder.
    Connecting,
    /// Data is arriving.
    Receiving {
        /// Verified bytes so far.
        received: u64,
        /// Total bytes (0 until the manifest arrived).
        total: u64,
        /// Holders currently connected.
        sources: u32,
    },
    /// Everything arrived and matched the address.
    Verified,
}

#[derive(Debug)]
enum Slot {
    Missing,
    Requested,
    Done(Vec<u8>),
}

#[derive(Debug)]
struct Source {
    open: bool,
    /// When it was introduced, or last delivered data.
    last_progress: u64,
    /// Chunk indices requested and not yet delivered, in request order.
    in_flight: Vec<u32>,
    /// The object currently arriving from this holder.
    assembly: Option<Assembly>,
    /// SHA-256 of the chunk arriving so far: hashing frame by frame leaves
    /// little to do when the last frame lands.
    hasher: Sha256,
}

/// One download. See the module docs.
#[derive(Debug)]
pub struct Download {
    content: ContentId,
    manifest: Option<(Manifest, Vec<u8>)>,
    manifest_from: Option<PeerId>,
    slots: Vec<Slot>,
    verified_bytes: u64,
    sources: BTreeMap<PeerId, Source>,
    banned: HashSet<PeerId>,
    holders_online: Option<u32>,
    last_want: u64,
    complete: bool,
}

impl Download {
    /// Starts a download. The caller has sent (or is sending) a `want` for
    /// one holder; `now` is a millisecond clock.
    pub fn new(content: ContentId, now: u64) -> Self {
        Download {
            content,
            manifest: None,
            manifest_from: None,
            slots: Vec::new(),
            verified_bytes: 0,
            sources: BTreeMap::new(),
            banned: HashSet::new(),
            holders_online: None,
            last_want: now,
            complete: false,
        }
    }

    /// The address being downloaded.
    pub fn content(&self) -> ContentId {
        self.content
    }

    /// The verified manifest, once it arrived.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref().map(|(m, _)| m)
    }

    /// Whether this holder was caught sending bad data.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains(peer)
    }

    /// What the user should see now.
    pub fn status(&self) -> Status {
        if self.complete {
            return Status::Verified;
        }
        let open = self.sources.values().filter(|s| s.open).count() as u32;
        if open > 0 {
            let total = self.manifest().map_or(0, |m| m.size);
            return Status::Receiving {
                received: self.verified_bytes,
                total,
                sources: open,
            };
        }
        if !self.sources.is_empty() {
            return Status::Connecting;
        }
        match self.holders_online {
            Some(0) => Status::Gone,
            _ => Status::Looking,
        }
    }

    /// Decides now what to ask of a holder that answers before its channel
    /// opens: one introduced with a ready offer, whose answer carries the
    /// first request so that the holder sends as soon as the channel opens.
    /// The request counts as sent; `None` if there is nothing to ask yet.
    pub fn request_ahead(&mut self, peer: PeerId, now: u64) -> Option<Request> {
        let src = self.sources.get_mut(&peer).filter(|s| !s.open)?;
        if self.manifest.is_none() {
            if self.manifest_from.is_some() {
                return None;
            }
            self.manifest_from = Some(peer);
            return Some(Request::Manifest {
                content: self.content,
                prefetch: PREFETCH,
            });
        }
        let mut indices = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if src.in_flight.len() + indices.len() >= PIPELINE {
                break;
            }
            if matches!(slot, Slot::Missing) {
                *slot = Slot::Requested;
                indices.push(i as u32);
            }
        }
        if indices.is_empty() {
            return None;
        }
        src.last_progress = now;
        src.in_flight.extend_from_slice(&indices);
        Some(Request::Chunks {
            content: self.content,
            indices,
        })
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input<'_>, now: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.complete {
            // Late events after completion only need their connection closed.
            if let Input::Introduced(peer) | Input::Opened(peer) = input {
                out.push(Action::Disconnect { peer, reason: None });
            }
            return out;
        }
        match input {
            Input::Introduced(peer) => {
                if !self.banned.contains(&peer)
                    && !self.sources.contains_key(&peer)
                    && self.sources.len() < MAX_SOURCES
                {
                    self.sources.insert(
                        peer,
                        Source {
                            open: false,
                            last_progress: now,
                            in_flight: Vec::new(),
                            assembly: None,
                            hasher: Sha256::new(),
                        },
                    );
                    out.push(Action::Connect(peer));
                }
            }
            Input::Opened(peer) => {
                if let Some(src) = self.sources.get_mut(&peer) {
                    src.open = true;
                    src.last_progress = now;
                    self.schedule(now, &mut out);
                }
            }
            Input::Frame(peer, bytes) => {
                if self.sources.contains_key(&peer) {
                    if let Err(why) = self.on_frame(peer, bytes, now, &mut out) {
                        self.ban(peer, why, now, &mut out);
                    }
                }
            }
            Input::Reply(peer, reply) => {
                if self.sources.contains_key(&peer) {
                    let why = match reply {
                        Reply::Missing { .. } => "the holder no longer has this content".to_owned(),
                        Reply::Refused { message } => format!("the holder refused: {message}"),
                    };
                    self.drop_source(peer, Some(why), now, &mut out);
                }
            }
            Input::Lost(peer, _why) => {
                if self.sources.contains_key(&peer) {
                    // The connection is already gone; nothing to close.
                    self.forget(peer);
                    self.after_loss(now, &mut out);
                }
            }
            Input::Holders(count) => {
                self.holders_online = Some(count);
            }
            Input::Tick => self.check_timeouts(now, &mut out),
        }
        out
    }

    fn on_frame(
        &mut self,
        peer: PeerId,
        bytes: &[u8],
        now: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), String> {
        let frame = Frame::decode(bytes).map_err(|e| e.to_string())?;
        let src = self.sources.get_mut(&peer).expect("checked by caller");
        src.last_progress = now;
        match frame.kind {
            FrameKind::Manifest => {
                if self.manifest.is_some() || self.manifest_from != Some(peer) {
                    return Err("sent a manifest nobody asked for".into());
                }
                let asm = match &mut src.assembly {
                    Some(asm) => asm,
                    slot => slot.insert(
                        Assembly::new(frame.total, MAX_MANIFEST_BYTES)
                            .map_err(|e| e.to_string())?,
                    ),
                };
                if let Some(bytes) = asm.push(&frame).map_err(|e| e.to_string())? {
                    src.assembly = None;
                    let manifest =
                        Manifest::verify(&self.content, &bytes).map_err(|e| e.to_string())?;
                    self.slots = (0..manifest.chunk_count()).map(|_| Slot::Missing).collect();
                    // The holder sends the leading chunks along unasked.
                    let prefetched = manifest.chunk_count().min(PREFETCH);
                    src.in_flight = (0..prefetched).collect();
                    for slot in &mut self.slots[..prefetched as usize] {
                        *slot = Slot::Requested;
                    }
                    let many = manifest.chunk_count() > 1;
                    self.manifest = Some((manifest, bytes));
                    if many && self.sources.len() < MAX_SOURCES {
                        // Big content: draw from several holders at once.
                        out.push(Action::Want((MAX_SOURCES - self.sources.len()) as u8));
                    }
                    self.schedule(now, out);
                }
            }
            FrameKind::Chunk => {
                let Some((manifest, _)) = &self.manifest else {
                    return Err("sent a chunk before the manifest".into());
                };
                if src.in_flight.first() != Some(&frame.index) {
                    return Err(format!(
                        "sent chunk {} which was not requested next",
                        frame.index
                    ));
                }
                let len = manifest.chunk_len(frame.index);
                if frame.total as usize != len {
                    return Err(format!("chunk {} has the wrong length", frame.index));
                }
                if src.assembly.is_none() {
                    src.assembly =
                        Some(Assembly::new(frame.total, len).map_err(|e| e.to_string())?);
                    src.hasher = Sha256::new();
                }
                let asm = src.assembly.as_mut().expect("set above");
                let done = asm.push(&frame).map_err(|e| e.to_string())?;
                src.hasher.update(frame.bytes);
                if let Some(bytes) = done {
                    src.assembly = None;
                    let digest = ChunkHash(std::mem::take(&mut src.hasher).finalize().into());
                    if manifest.chunks.get(frame.index as usize) != Some(&digest) {
                        return Err(format!("chunk {} failed verification", frame.index));
                    }
                    src.in_flight.remove(0);
                    self.verified_bytes += bytes.len() as u64;
                    self.slots[frame.index as usize] = Slot::Done(bytes);
                    self.schedule(now, out);
                }
            }
        }
        Ok(())
    }

    /// Hands out missing chunks (lowest index first, so text and media can
    /// show early) to open holders with room in their pipeline, or asks for
    /// the manifest first.
    fn schedule(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.manifest.is_none() {
            if self.manifest_from.is_none() {
                if let Some((&peer, _)) = self.sources.iter().find(|(_, s)| s.open) {
                    self.manifest_from = Some(peer);
                    out.push(Action::Send(
                        peer,
                        Request::Manifest {
                            content: self.content,
                            prefetch: PREFETCH,
                        },
                    ));
                }
            }
            return;
        }
        if self.slots.iter().all(|s| matches!(s, Slot::Done(_))) {
            self.finish(out);
            return;
        }
        let mut next = 0usize;
        for (&peer, src) in self.sources.iter_mut().filter(|(_, s)| s.open) {
            let mut indices = Vec::new();
            while src.in_flight.len() + indices.len() < PIPELINE {
                while next < self.slots.len() && !matches!(self.slots[next], Slot::Missing) {
                    next += 1;
                }
                if next == self.slots.len() {
                    break;
                }
                self.slots[next] = Slot::Requested;
                indices.push(next as u32);
            }
            if !indices.is_empty() {
                if src.in_flight.is_empty() {
                    // Stall timing starts when the holder owes us something.
                    src.last_progress = now;
                }
                src.in_flight.extend_from_slice(&indices);
                out.push(Action::Send(
                    peer,
                    Request::Chunks {
                        content: self.content,
                        indices,
                    },
                ));
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        let (manifest, manifest_bytes) = self.manifest.take().expect("finish needs the manifest");
        let mut data = Vec::new();
        for slot in self.slots.drain(..) {
            if let Slot::Done(bytes) = slot {
                if data.is_empty() {
                    // One chunk (a typical page): no copy.
                    data = bytes;
                } else {
                    data.extend_from_slice(&bytes);
                }
            }
        }
        self.complete = true;
        for peer in std::mem::take(&mut self.sources).into_keys() {
            out.push(Action::Disconnect { peer, reason: None });
        }
        out.push(Action::Complete {
            manifest,
            manifest_bytes,
            data,
        });
    }

    fn ban(&mut self, peer: PeerId, why: String, now: u64, out: &mut Vec<Action>) {
        self.banned.insert(peer);
        self.drop_source(peer, Some(why), now, out);
    }

    fn drop_source(&mut self, peer: PeerId, why: Option<String>, now: u64, out: &mut Vec<Action>) {
        self.forget(peer);
        out.push(Action::Disconnect { peer, reason: why });
        self.after_loss(now, out);
    }

    /// Removes a holder and puts its unfinished chunks back up for grabs.
    fn forget(&mut self, peer: PeerId) {
        if let Some(src) = self.sources.remove(&peer) {
            for index in src.in_flight {
                self.slots[index as usize] = Slot::Missing;
            }
        }
        if self.manifest_from == Some(peer) {
            self.manifest_from = None;
        }
    }

    fn after_loss(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.sources.is_empty() {
            self.last_want = now;
            out.push(Action::Want(1));
        }
        self.schedule(now, out);
    }

    fn check_timeouts(&mut self, now: u64, out: &mut Vec<Action>) {
        let late: Vec<(PeerId, String)> = self
            .sources
            .iter()
            .filter_map(|(peer, s)| {
                let idle = now.saturating_sub(s.last_progress);
                if !s.open && idle > CONNECT_TIMEOUT_MS {
                    Some((*peer, "could not connect in time".to_owned()))
                } else if s.open && self.owes_data(peer, s) && idle > STALL_TIMEOUT_MS {
                    Some((*peer, "stalled: sent nothing for 5 s".to_owned()))
                } else {
                    None
                }
            })
            .collect();
        for (peer, why) in late {
            // A stalled holder is not trusted again during this download.
            self.ban(peer, why, now, out);
        }
        if self.sources.is_empty()
            && self.holders_online.is_some_and(|n| n > 0)
            && now.saturating_sub(self.last_want) >= WANT_RETRY_MS
        {
            self.last_want = now;
            out.push(Action::Want(1));
        }
    }

    fn owes_data(&self, peer: &PeerId, src: &Source) -> bool {
        !src.in_flight.is_empty() || (self.manifest.is_none() && self.manifest_from == Some(*peer))
    }
}

#[cfg(test)]
mod tests;
