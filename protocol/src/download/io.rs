//! What goes into a download and what comes out: [`Input`]s the caller
//! reports, [`Action`]s it carries out, and why a holder was dropped.

use crate::availability::HaveError;
use crate::ids::ChunkHash;
use crate::manifest::{Manifest, ManifestError};
use crate::transfer::{FrameError, FrameHead, Reply, Request};

use super::{Conn, HolderId};

/// Something that happened, reported by the caller.
#[derive(Debug)]
pub enum Input<'a> {
    /// A holder was introduced (by the broker, for a peer).
    Introduced(HolderId),
    /// The data channel of a connection to a holder opened.
    Opened(Conn),
    /// A binary message from a holder, whole. Manifest frames are read
    /// from it; of a chunk frame only the header is read, as for
    /// [`Input::ChunkFrame`], and the payload stays with the caller.
    Frame(Conn, &'a [u8]),
    /// The header of a chunk frame from a holder. The caller holds its
    /// payload, to keep or drop as the actions say.
    ChunkFrame(Conn, FrameHead),
    /// A binary message from a holder that could not be read (see
    /// [`crate::transfer::Reader`]): the holder is dropped.
    BadFrame(Conn, FrameError),
    /// The SHA-256 of the bytes kept for chunk `index`, which an
    /// [`Action::Verify`] asked for.
    Hashed {
        /// Chunk index.
        index: u32,
        /// What the caller computed.
        hash: ChunkHash,
    },
    /// A text message from a holder.
    Reply(Conn, Reply),
    /// A connection to a holder failed or closed.
    Lost(Conn),
    /// The broker's holder count for this content.
    Holders(u32),
    /// The clock reached the download's next deadline (see
    /// [`super::Download::next_deadline`]); harmless at any other time.
    Tick,
}

/// Something the caller must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Open this connection to a holder (we make the offer, or answer the
    /// holder's ready offer on lane 0).
    Connect(Conn),
    /// Send a request over this connection.
    Send(Conn, Request),
    /// Close this connection. `reason` is set when the holder misbehaved
    /// or failed, for the user's log.
    Disconnect {
        /// Connection to drop.
        conn: Conn,
        /// Why, if it was not a normal end.
        reason: Option<DropReason>,
    },
    /// Ask the broker to introduce this many more holders.
    Want(u8),
    /// The manifest arrived and matches the address: set up storage. From
    /// now on this peer can serve the manifest and the chunks it stores.
    Manifest {
        /// The verified manifest.
        manifest: Manifest,
        /// Its exact bytes (their hash is the address).
        manifest_bytes: Vec<u8>,
    },
    /// Keep the payload of the chunk frame just handed in, at `offset` of
    /// chunk `index` arriving over `conn`. Offset 0 starts the chunk (once:
    /// every frame carries bytes, so no later frame of it is at 0).
    Keep {
        /// The connection it came over.
        conn: Conn,
        /// Chunk index.
        index: u32,
        /// Where the payload goes in the chunk.
        offset: u32,
    },
    /// Drop what is kept of the chunk arriving over `conn`: another copy
    /// of it is whole (see [`super::ENDGAME_LATE_MS`]). Its remaining
    /// frames are not kept.
    Abandon {
        /// The connection it is arriving over.
        conn: Conn,
    },
    /// Every byte of chunk `index` from `conn` is kept: hash it and report
    /// with [`Input::Hashed`]. Nothing may use the bytes before that.
    Verify {
        /// The connection it came over.
        conn: Conn,
        /// Chunk index.
        index: u32,
    },
    /// Chunk `index` matches its hash: store its kept bytes, and tell the
    /// peers we serve.
    Store {
        /// Chunk index.
        index: u32,
    },
    /// Chunk `index` does not match its hash: drop its kept bytes (its
    /// holder is dropped too, and the chunk asked of another).
    Discard {
        /// Chunk index.
        index: u32,
    },
    /// Every chunk was verified and stored.
    Complete,
}

/// Why a holder (or one of its connections) was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Its data channel did not open within
    /// [`super::CONNECT_TIMEOUT_MS`].
    #[error("could not connect in time")]
    ConnectTimeout,
    /// It owed data and made no progress for [`super::STALL_TIMEOUT_MS`]:
    /// delivered less than [`super::MIN_PROGRESS_BYTES`] and finished
    /// nothing.
    #[error(
        "stalled: delivered under {} KiB in {} s; its chunks are asked of other holders",
        super::MIN_PROGRESS_BYTES / 1024,
        super::STALL_TIMEOUT_MS / 1000
    )]
    Stalled,
    /// It sent a frame without payload: never part of an object, it only
    /// costs the receiver (a holder that keeps sending them would keep a
    /// stall timer from ever firing).
    #[error(
        "sent a frame with no payload (no manifest or chunk has one); its chunks are asked of other holders"
    )]
    EmptyFrame,
    /// It sent a manifest nobody asked it for.
    #[error("sent a manifest nobody asked for")]
    UnaskedManifest,
    /// It sent a chunk before the manifest.
    #[error("sent a chunk before the manifest")]
    ChunkBeforeManifest,
    /// It sent a chunk other than the one requested next.
    #[error("sent chunk {0} which was not requested next")]
    UnaskedChunk(u32),
    /// A chunk's frames say it has a length other than the manifest's.
    #[error("chunk {0} has the wrong length")]
    WrongLength(u32),
    /// A binary message that could not be read, or frames out of order.
    #[error("{0}")]
    BadFrame(FrameError),
    /// The manifest does not match the address (or does not parse).
    #[error("{0}")]
    BadManifest(ManifestError),
    /// It said what it has before the manifest arrived.
    #[error("said what it has before the manifest")]
    HasBeforeManifest,
    /// Its availability does not fit the manifest.
    #[error("{0}")]
    BadAvailability(HaveError),
    /// It said it gained a chunk that does not exist.
    #[error("said it gained chunk {0}, which does not exist")]
    GainedUnknownChunk(u32),
    /// A chunk it sent does not match the manifest.
    #[error("chunk {0} failed verification")]
    FailedVerification(u32),
    /// It said what it has a second time: what a holder gains comes one
    /// chunk at a time (`Reply::Got`), and every `Has` costs the receiver
    /// a pass over all chunks.
    #[error(
        "said what it has twice (what a holder gains is sent as `got`); its chunks are asked of other holders"
    )]
    RepeatedHas,
    /// It has none of the chunks still missing or owed while another
    /// holder waits for its place (one of [`super::MAX_SOURCES`]). Not
    /// banned: it may be introduced again once it gained some.
    #[error(
        "has none of the chunks still needed; its place goes to another holder (it may come back once it has more)"
    )]
    NothingToOffer,
    /// It no longer holds the content (`Reply::Missing`): not its fault.
    #[error("the holder no longer has this content")]
    NoLongerHolds,
    /// It refused a request, saying why.
    #[error("the holder refused: {0}")]
    Refused(String),
}
