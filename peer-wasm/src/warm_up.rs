//! A dry run of the receive path on made-up content (see
//! `Inner::warm_up_once`).

use protocol::availability::Have;
use protocol::download::{Action, Conn, Download, Input};
use protocol::transfer::{Frame, FrameKind, Reply, Request};
use protocol::{Manifest, PeerId};

/// Downloads 2 KB from an imaginary holder, entirely in memory: enough to
/// compile every function on the path, little enough to leave the main
/// thread free for the handshake running meanwhile.
pub fn run() {
    let data = vec![0x5a_u8; 2_000];
    let manifest = Manifest::describe(&data, "text/plain; charset=utf-8", None);
    let manifest_bytes = manifest.to_bytes();
    let content = manifest.address();
    let holder = PeerId(uuid::Uuid::nil());
    let mut download = Download::new(content, 0, 0);
    let mut pending = download.handle(Input::Introduced(holder.into()), 0);
    let conn = Conn::first(holder);
    pending.extend(download.handle(Input::Opened(conn), 0));
    while let Some(action) = pending.pop() {
        match action {
            Action::Send(_, Request::Manifest { .. }) => {
                for frame in Frame::encode_all(FrameKind::Manifest, 0, &manifest_bytes) {
                    pending.extend(download.handle(Input::Frame(conn, &frame), 0));
                }
                let has = Reply::Has {
                    content,
                    chunks: Have::All,
                };
                pending.extend(download.handle(Input::Reply(conn, has), 0));
                for frame in Frame::encode_all(FrameKind::Chunk, 0, &data) {
                    pending.extend(download.handle(Input::Frame(conn, &frame), 0));
                }
            }
            // Its one frame is the whole chunk: hash it as the peer would.
            Action::Verify { index, .. } => {
                let hash = protocol::ids::ChunkHash::of(&data);
                pending.extend(download.handle(Input::Hashed { index, hash }, 0));
            }
            Action::Complete => return,
            _ => continue,
        }
    }
}
