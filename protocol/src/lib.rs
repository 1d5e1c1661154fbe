//! The one place where the wire format is defined.
//!
//! * [`ids`]: `PeerId` (assigned by the broker) and `ContentId` (a content
//!   address: the SHA-256 of a [`manifest::Manifest`]).
//! * [`signaling`]: messages between a peer and the broker (`ClientMsg`,
//!   `ServerMsg`). None of them can carry content.
//! * [`availability`]: which chunks a peer holds, as peers tell each other.
//! * [`transfer`]: messages between two peers over an RTCDataChannel.
//! * [`download`]: the want -> connect -> receive -> verify -> hold state
//!   machine, free of browser types so that it is tested natively.

pub mod availability;
pub mod download;
pub mod ids;
pub mod manifest;
pub mod signaling;
pub mod transfer;

pub use ids::{ContentId, PeerId};
pub use manifest::Manifest;
pub use signaling::{ClientMsg, ErrorCode, IceServer, ServerMsg};
