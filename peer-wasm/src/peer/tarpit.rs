//! A holder that wastes its fetchers' time, for the browser tests only
//! (the `test-hooks` feature): it sends the manifest and what it has as
//! usual, then serves the chunks it is asked for as a tarpit would,
//! slowly and forever, so that tests can show a download getting past it.

use std::collections::VecDeque;

use gloo_timers::callback::Interval;
use js_sys::Uint8Array;
use protocol::links::LinkRef;
use protocol::transfer::{Frame, FrameKind, HEADER};

use super::links::Role;
use super::{with_inner, Inner};

/// How often a tarpit sends.
const TICK_MS: u32 = 100;
/// Frames of the empty kind per tick.
const EMPTY_PER_TICK: usize = 20;
/// Payload bytes per tick of the trickling kind: 10 KiB/s, above the
/// download's minimum rate (`protocol::download::MIN_PROGRESS_BYTES`),
/// far below any real link.
const TRICKLE_BYTES: u32 = 1024;

/// How a tarpit serves chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 13-byte chunk frames (a header, no payload) for the first chunk
    /// asked, over and over.
    Empty,
    /// The real bytes, [`TRICKLE_BYTES`] per frame every [`TICK_MS`].
    Trickle,
}

impl Mode {
    /// `"empty"` or `"trickle"`.
    pub fn parse(name: &str) -> Option<Mode> {
        match name {
            "empty" => Some(Mode::Empty),
            "trickle" => Some(Mode::Trickle),
            _ => None,
        }
    }
}

/// One serving link's tarpit: the chunks asked for, in order, and the
/// timer that sends them.
pub struct Tarpit {
    mode: Mode,
    /// Chunk index and bytes.
    queue: VecDeque<(u32, Uint8Array)>,
    /// Bytes of the first chunk sent so far.
    sent: u32,
    _timer: Interval,
}

impl Tarpit {
    /// Whether chunks are still to be sent.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty()
    }
}

impl Inner {
    /// Queues chunk `index` (`bytes`) on `link`'s tarpit instead of
    /// sending it, starting the tarpit if need be.
    pub(super) fn tarpit_queue(
        &mut self,
        link: LinkRef,
        mode: Mode,
        index: u32,
        bytes: Uint8Array,
    ) {
        let weak = self.me.clone();
        let Some(Role::Serve(serving)) = self.links.current_mut(&link).map(|p| &mut p.role) else {
            return;
        };
        let tarpit = serving.tarpit.get_or_insert_with(|| Tarpit {
            mode,
            queue: VecDeque::new(),
            sent: 0,
            _timer: Interval::new(TICK_MS, move || {
                with_inner(&weak, move |i| i.tarpit_tick(link))
            }),
        });
        tarpit.queue.push_back((index, bytes));
    }

    fn tarpit_tick(&mut self, link: LinkRef) {
        let Some(p) = self.links.current_mut(&link) else {
            return;
        };
        let (Role::Serve(serving), Some(dc)) = (&mut p.role, p.link.channel.as_ref()) else {
            return;
        };
        let Some(tarpit) = serving.tarpit.as_mut() else {
            return;
        };
        let Some((index, bytes)) = tarpit.queue.front() else {
            return;
        };
        let (index, total) = (*index, bytes.length());
        p.last_active = super::clock::now();
        match tarpit.mode {
            Mode::Empty => {
                let header = Frame::header(FrameKind::Chunk, index, 0, total as usize);
                for _ in 0..EMPTY_PER_TICK {
                    let _ = dc.send_with_u8_array(&header);
                }
            }
            Mode::Trickle => {
                let (at, end) = (tarpit.sent, (tarpit.sent + TRICKLE_BYTES).min(total));
                let frame = Uint8Array::new_with_length(HEADER as u32 + end - at);
                let header = Frame::header(FrameKind::Chunk, index, at as usize, total as usize);
                frame.subarray(0, HEADER as u32).copy_from(&header);
                frame.set(&bytes.subarray(at, end), HEADER as u32);
                if dc.send_with_array_buffer_view(&frame).is_ok() {
                    self.stats.to_peers += u64::from(end - at);
                }
                tarpit.sent = end;
                if end == total {
                    tarpit.queue.pop_front();
                    tarpit.sent = 0;
                }
            }
        }
    }
}
