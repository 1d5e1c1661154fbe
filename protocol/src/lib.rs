//! The one place where the wire format is defined, and the parts of both
//! ends that need no I/O: the download and serving state machines.
//!
//! * [`ids`]: `PeerId` (assigned by the broker) and `ContentId` (a content
//!   address: the SHA-256 of a [`manifest::Manifest`]).
//! * [`signaling`]: messages between a peer and the broker (`ClientMsg`,
//!   `ServerMsg`). None of them can carry content.
//! * [`display`]: text from peers made safe to show (one rule for all).
//! * [`availability`]: which chunks a peer holds, as peers tell each other.
//! * [`transfer`]: messages between two peers over an RTCDataChannel.
//! * [`links`]: which connection between two peers is which (peer, side,
//!   lane), and the table that keeps late work off a newer connection.
//! * [`serve`]: the serving side's plan: which request becomes which reads
//!   and sends, in what order, within what send budget (sans IO).
//! * [`site`]: a site's index (`peerpage.json`): which of its files
//!   visitors take from each other, by URL path.
//! * [`release`]: a site's signed release record (which index is
//!   current, signed by the site's key).
//! * [`download`]: the want -> connect -> receive -> verify -> hold state
//!   machine, free of browser types so that it is tested natively.

pub mod availability;
pub mod display;
pub mod download;
pub mod ids;
pub mod links;
pub mod manifest;
pub mod release;
pub mod serve;
pub mod signaling;
pub mod site;
pub mod transfer;

pub use ids::{ContentId, PeerId};
pub use manifest::Manifest;
pub use signaling::{ClientMsg, ErrorCode, IceServer, ServerMsg};
