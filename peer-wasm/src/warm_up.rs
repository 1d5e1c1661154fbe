//! A dry run of the receive path on made-up content (see
//! `Inner::warm_up_once`).

use protocol::download::{Action, Download, Input};
use protocol::transfer::{Frame, FrameKind, Request};
use protocol::{Manifest, PeerId};

/// Downloads 2 KB from an imaginary holder, entirely in memory: enough to
/// compile every function on the path, little enough to leave the main
/// thread free for the handshake running meanwhile.
pub fn run() {
    let data = vec![0x5a_u8; 2_000];
    let manifest = Manifest::describe(&data, "text/plain; charset=utf-8", None);
    let manifest_bytes = manifest.to_bytes();
    let holder = PeerId(uuid::Uuid::nil());
    let mut download = Download::new(manifest.address(), 0);
    let mut pending = download.handle(Input::Introduced(holder), 0);
    pending.extend(download.handle(Input::Opened(holder), 0));
    while let Some(action) = pending.pop() {
        let frames: Vec<Vec<u8>> = match action {
            Action::Send(_, Request::Manifest { .. }) => {
                let mut frames: Vec<_> =
                    Frame::encode_all(FrameKind::Manifest, 0, &manifest_bytes).collect();
                frames.extend(Frame::encode_all(FrameKind::Chunk, 0, &data));
                frames
            }
            Action::Complete { .. } => return,
            _ => continue,
        };
        for frame in frames {
            pending.extend(download.handle(Input::Frame(holder, &frame), 0));
        }
    }
}
