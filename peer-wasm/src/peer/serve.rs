//! Serving a link: `protocol::serve` plans which request becomes which
//! reads and sends, within the channel's budget; this carries the plan
//! out. It reads objects from what we hold, sends the messages the plan
//! names as views of what was read, and resumes on `bufferedamountlow` or
//! when a read completes.

use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use protocol::links::LinkRef;
use protocol::serve::{Holding, JobId, Plan, Step};
use protocol::transfer::{FrameKind, Reply, Request, HEADER, MAX_MESSAGE};
use protocol::ContentId;
use wasm_bindgen::JsCast;

use crate::error::{log_error, PeerError};
use crate::rtc::Link;
use crate::store::{ChunkRead, Held};

use super::links::Role;
use super::{with_inner, Inner};

/// The serving side of a link.
#[derive(Default)]
pub struct Serving {
    plan: Plan,
    /// Bytes read for the plan's objects, until their last message is sent.
    loaded: HashMap<JobId, Uint8Array>,
    /// What queued requests are for, while they are queued: queued objects
    /// are still sent if the content is released meanwhile, and released
    /// content is freed once nothing of it is queued.
    held: HashMap<ContentId, Rc<Held>>,
    /// Chunks served as a tarpit would (tests only, see `super::tarpit`).
    #[cfg(feature = "test-hooks")]
    pub tarpit: Option<super::tarpit::Tarpit>,
}

impl Serving {
    /// Whether something asked for is still to be sent: the link is in
    /// use, not idle.
    pub fn busy(&self) -> bool {
        #[cfg(feature = "test-hooks")]
        if self.tarpit.as_ref().is_some_and(|t| t.busy()) {
            return true;
        }
        !self.held.is_empty()
    }

    /// Lets go of content nothing queued needs any more.
    fn forget_done(&mut self) {
        let plan = &self.plan;
        self.held.retain(|content, _| plan.queues(content));
    }

    /// The channel opened: streams may use the largest message the other
    /// side accepts.
    pub fn opened(&mut self, link: &Link) {
        self.plan.set_max_message(link.max_message(MAX_MESSAGE));
    }
}

impl Holding for Held {
    fn chunk_count(&self) -> u32 {
        self.manifest.chunk_count()
    }

    fn has(&self, index: u32) -> bool {
        Held::has(self, index)
    }
}

/// What one pass over a plan ended with.
enum Stop {
    /// Waiting for the buffer to drain or a read to complete.
    Wait,
    /// A read could not start: the link stops being served.
    ReadFailed(JobId, String),
    /// The channel refused a message (it is closing), or the bytes of a
    /// step are not at hand: what the plan counted as done was not, so
    /// the link goes.
    Broken,
}

impl Inner {
    /// Sends `reply` on `link`'s channel.
    pub(super) fn reply(&self, link: &LinkRef, reply: &Reply) {
        let channel = self
            .links
            .current(link)
            .and_then(|p| p.link.channel.as_ref());
        if let Some(dc) = channel {
            let _ = dc.send_with_str(&serde_json::to_string(reply).expect("replies serialize"));
        }
    }

    /// Tells every link watching `content` (see `Plan::watches`).
    pub(super) fn tell_watchers(&self, content: ContentId, reply: &Reply) {
        let text = serde_json::to_string(reply).expect("replies serialize");
        for (_, p) in self.links.iter() {
            if let Role::Serve(s) = &p.role {
                if s.plan.watches(&content) {
                    if let Some(dc) = p.link.channel.as_ref() {
                        let _ = dc.send_with_str(&text);
                    }
                }
            }
        }
    }

    pub(super) fn serve_request(&mut self, link: LinkRef, text: &str) {
        match serde_json::from_str::<Request>(text) {
            Ok(request) => self.serve(link, request),
            Err(e) => self.reply(
                &link,
                &Reply::Refused {
                    message: format!("unreadable request: {e}"),
                },
            ),
        }
    }

    /// Queues what `request` asks for, or answers at once why not.
    pub(super) fn serve(&mut self, link: LinkRef, request: Request) {
        if let Some(p) = self.links.current_mut(&link) {
            p.last_active = super::clock::now();
        }
        let content = match &request {
            Request::Manifest { content, .. }
            | Request::Has { content }
            | Request::Chunks { content, .. } => *content,
        };
        let held = self.held.get(&content).cloned();
        let Some(Role::Serve(serving)) = self.links.current_mut(&link).map(|p| &mut p.role) else {
            return;
        };
        let holding = held.as_deref().map(|h| h as &dyn Holding);
        if let Err(reply) = serving.plan.request(request, holding) {
            return self.reply(&link, &reply);
        }
        if let Some(held) = held {
            serving.held.insert(content, held);
        }
        self.pump(link);
    }

    /// Carries out the plan until it says to wait: for `bufferedamountlow`
    /// (see `rtc::LOW_WATER`), or for a read.
    pub(super) fn pump(&mut self, link: LinkRef) {
        let weak = self.me.clone();
        let Some(p) = self.links.current_mut(&link) else {
            return;
        };
        let Role::Serve(serving) = &mut p.role else {
            return;
        };
        let Some(dc) = p.link.channel.clone().filter(|_| p.link.is_open()) else {
            return;
        };
        #[cfg(feature = "test-hooks")]
        let corrupt = self.corrupt_served;
        #[cfg(feature = "test-hooks")]
        let mut tarpitted = Vec::new();
        let mut stop = Stop::Wait;
        while let Some(step) = serving.plan.next(p.link.buffered()) {
            p.last_active = super::clock::now();
            match step {
                Step::SendHas(content) => {
                    let Some(held) = serving.held.get(&content) else {
                        stop = Stop::Broken;
                        break;
                    };
                    let has = Reply::Has {
                        content,
                        chunks: held.availability(),
                    };
                    let text = serde_json::to_string(&has).expect("replies serialize");
                    if dc.send_with_str(&text).is_err() {
                        stop = Stop::Broken;
                        break;
                    }
                }
                Step::Read {
                    job,
                    content,
                    kind,
                    index,
                } => {
                    let Some(held) = serving.held.get(&content) else {
                        stop = Stop::Broken;
                        break;
                    };
                    let read = match kind {
                        FrameKind::Manifest => Ok(ChunkRead::Ready(Uint8Array::from(
                            held.manifest_bytes.as_slice(),
                        ))),
                        FrameKind::Chunk => held.read_chunk(index),
                    };
                    match read {
                        Ok(ChunkRead::Ready(bytes)) => {
                            if serving.plan.loaded(job, bytes.length() as usize) {
                                serving.loaded.insert(job, bytes);
                            }
                        }
                        Ok(ChunkRead::Pending { read, at, len }) => {
                            let weak = weak.clone();
                            wasm_bindgen_futures::spawn_local(async move {
                                let span = wasm_bindgen_futures::JsFuture::from(read).await;
                                let result = span.and_then(|span| {
                                    let span: ArrayBuffer = span.dyn_into()?;
                                    Ok(Uint8Array::new_with_byte_offset_and_length(&span, at, len))
                                });
                                with_inner(&weak, move |i| i.on_read(link, job, result));
                            });
                        }
                        Err(e) => {
                            stop = Stop::ReadFailed(job, e.to_string());
                            break;
                        }
                    }
                }
                Step::Send {
                    job,
                    kind,
                    index,
                    part,
                    last,
                } => {
                    let Some(bytes) = serving.loaded.get(&job) else {
                        stop = Stop::Broken;
                        break;
                    };
                    #[cfg(feature = "test-hooks")]
                    if let Some(mode) = self.tarpit.filter(|_| kind == FrameKind::Chunk) {
                        // The tarpit sends it its own way, once read whole.
                        if last {
                            tarpitted.push((mode, index, serving.loaded.remove(&job)));
                        }
                        continue;
                    }
                    let range = part.bytes();
                    let payload = bytes.subarray(range.start as u32, range.end as u32);
                    let message = match part.header(kind, index) {
                        // A chunk stream's message: a view of what was read.
                        None => payload,
                        // A frame, or a stream's header alone.
                        Some(header) => {
                            let message =
                                Uint8Array::new_with_length((HEADER + range.len()) as u32);
                            message.subarray(0, HEADER as u32).copy_from(&header);
                            message.set(&payload, HEADER as u32);
                            message
                        }
                    };
                    #[cfg(feature = "test-hooks")]
                    let message = if corrupt && kind == FrameKind::Chunk && part.payload() > 0 {
                        // A copy: the bytes read may be kept and served again.
                        let bad = message.slice(0, message.length());
                        let last = bad.length() - 1;
                        bad.set_index(last, bad.get_index(last) ^ 0xff);
                        bad
                    } else {
                        message
                    };
                    if dc.send_with_array_buffer_view(&message).is_err() {
                        stop = Stop::Broken;
                        break;
                    }
                    self.stats.to_peers += part.payload() as u64;
                    if last {
                        serving.loaded.remove(&job);
                    }
                }
            }
        }
        serving.forget_done();
        #[cfg(feature = "test-hooks")]
        for (mode, index, bytes) in tarpitted {
            if let Some(bytes) = bytes {
                self.tarpit_queue(link, mode, index, bytes);
            }
        }
        match stop {
            Stop::Wait => {}
            Stop::ReadFailed(job, error) => self.fail_serving(link, job, &error),
            Stop::Broken => self.on_link_lost(link),
        }
    }

    /// A chunk read finished: send it, or give up serving this link.
    fn on_read(
        &mut self,
        link: LinkRef,
        job: JobId,
        result: Result<Uint8Array, wasm_bindgen::JsValue>,
    ) {
        let Some(Role::Serve(serving)) = self.links.current_mut(&link).map(|p| &mut p.role) else {
            return;
        };
        match result {
            Ok(bytes) => {
                if serving.plan.loaded(job, bytes.length() as usize) {
                    serving.loaded.insert(job, bytes);
                    self.pump(link);
                }
            }
            Err(e) => self.fail_serving(link, job, &PeerError::Js(e).to_string()),
        }
    }

    /// Stops serving a link whose content cannot be read (e.g. a shared
    /// file that changed on disk): the other side is told and moves on.
    fn fail_serving(&mut self, link: LinkRef, job: JobId, error: &str) {
        let Some(Role::Serve(serving)) = self.links.current_mut(&link).map(|p| &mut p.role) else {
            return;
        };
        let Some(refusal) = serving.plan.failed(job, error) else {
            return;
        };
        serving.loaded.clear();
        serving.forget_done();
        if let Reply::Refused { message } = &refusal {
            log_error("cannot serve a peer", &PeerError::Refused(message.clone()));
        }
        self.reply(&link, &refusal);
    }
}
