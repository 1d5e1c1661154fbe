//! The serving side of a link, planned without IO: which request becomes
//! which reads and sends, in what order, within what send budget.
//!
//! A holder keeps one [`Plan`] per serving link. It hands the plan each
//! [`Request`] the other side makes, then asks it for [`Step`]s until it
//! says to wait: the caller only reads bytes, sends what a step says, and
//! asks again when a read completes or the channel's buffer drains
//! (`bufferedamountlow`, at [`LOW_WATER`]). The wire format is
//! [`crate::transfer`]'s: frames of at most [`MAX_PAYLOAD`] payload bytes,
//! and chunks of more than one frame as a stream (a header, then
//! headerless views of the bytes read).

use std::collections::VecDeque;

use crate::availability::Availability;
use crate::ids::ContentId;
use crate::transfer::{
    Frame, FrameKind, Reply, Request, HEADER, MAX_FRAME, MAX_MESSAGE, MAX_PAYLOAD, MAX_PREFETCH,
    MAX_REQUEST_CHUNKS,
};

/// Bytes buffered in a data channel at or above which nothing more is
/// queued: enough to keep the channel busy, little enough that a request
/// for something else is not stuck behind megabytes.
pub const HIGH_WATER: u32 = 1 << 20;
/// The channel's `bufferedAmountLowThreshold`: sending resumes once the
/// buffer drains below it.
pub const LOW_WATER: u32 = 256 * 1024;
/// Objects read ahead per serving link (from files or stored parts), so
/// the channel never waits for a read.
pub const READ_AHEAD: usize = 2;

/// What the plan needs to know of content this peer holds.
pub trait Holding {
    /// Chunks in the content (its manifest's count).
    fn chunk_count(&self) -> u32;
    /// Whether chunk `index` is here (and verified).
    fn has(&self, index: u32) -> bool;
}

impl Holding for Availability {
    fn chunk_count(&self) -> u32 {
        self.len()
    }

    fn has(&self, index: u32) -> bool {
        self.contains(index)
    }
}

/// Tells a plan's objects (and their reads) apart: unique within a
/// [`Plan`], never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// Something the caller is to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the availability of `content` as `Reply::Has`, built from what
    /// is held *now*. From now on [`Plan::watches`] it: the caller tells
    /// the other side of every chunk it gains (`Reply::Got`).
    SendHas(ContentId),
    /// Start reading object `job` of `content`: its manifest (`index` 0)
    /// or chunk `index`. Report the outcome with [`Plan::loaded`] or
    /// [`Plan::failed`], at once or later.
    Read {
        /// The object.
        job: JobId,
        /// Whose.
        content: ContentId,
        /// Manifest or chunk.
        kind: FrameKind,
        /// Chunk index (0 for the manifest).
        index: u32,
    },
    /// Send one message made of object `job`'s bytes, as read.
    Send {
        /// The object.
        job: JobId,
        /// Manifest or chunk.
        kind: FrameKind,
        /// Chunk index (0 for the manifest).
        index: u32,
        /// Which message.
        part: Part,
        /// The object is wholly sent with this message: the plan never
        /// names `job` again, and the caller may drop its bytes.
        last: bool,
    },
}

/// One binary message of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A chunk stream's header alone: `Frame::stream_header(index, total)`.
    StreamHeader {
        /// The chunk's length.
        total: usize,
    },
    /// Bytes `[from, to)` of the object without a header (a chunk stream's
    /// message): best sent as a view of the bytes read, without a copy.
    View {
        /// First byte.
        from: usize,
        /// Past the last byte.
        to: usize,
    },
    /// `Frame::header(kind, index, offset, total)` followed by bytes
    /// `[offset, end)` of the object.
    Frame {
        /// First byte, as the header says.
        offset: usize,
        /// Past the last byte.
        end: usize,
        /// The object's length.
        total: usize,
    },
}

impl Part {
    /// The object's bytes the message carries, its header aside.
    pub fn bytes(&self) -> std::ops::Range<usize> {
        match *self {
            Part::StreamHeader { .. } => 0..0,
            Part::View { from, to } => from..to,
            Part::Frame { offset, end, .. } => offset..end,
        }
    }

    /// Content bytes the message carries (its header aside).
    pub fn payload(&self) -> usize {
        self.bytes().len()
    }

    /// The header that goes before [`Part::bytes`] in the message, if any:
    /// a view has none, so it can be sent as the bytes read, uncopied.
    pub fn header(&self, kind: FrameKind, index: u32) -> Option<[u8; HEADER]> {
        match *self {
            Part::StreamHeader { total } => Some(Frame::stream_header(index, total)),
            Part::View { .. } => None,
            Part::Frame { offset, total, .. } => Some(Frame::header(kind, index, offset, total)),
        }
    }
}

/// One serving link's plan: what to send, in order, and what the other
/// side watches.
///
/// The contract:
///
/// * Requests are served in the order they came, and each request's jobs
///   in its order: a manifest request is the manifest, then `Reply::Has`,
///   then the leading chunks held. Nothing overtakes an object that is not
///   loaded yet.
/// * Sends are returned only while the caller reports `buffered` under
///   [`HIGH_WATER`], one message per step; the caller passes the buffer's
///   size afresh each time, as each send adds to it.
/// * Every step is returned once and counts as done when returned: a
///   stream's header is never repeated, whether or not its first view
///   follows at once. A caller whose send fails treats the link as ended.
/// * Reads start for the first [`READ_AHEAD`] objects of the queue once
///   the front cannot be sent, and only while the buffer is under
///   [`HIGH_WATER`]; all of them before sending again, so an object read
///   at once (from memory) is not sent before the next read starts.
/// * Each object's messages tile its bytes, in order; exactly its final
///   message has `last` set.
/// * A failed read ends everything queued ([`Plan::failed`]); reads of
///   cleared objects complete into nothing ([`Plan::loaded`] is false).
#[derive(Debug, Default)]
pub struct Plan {
    queue: VecDeque<Job>,
    /// Content whose availability the other side was told.
    watching: Vec<ContentId>,
    /// Largest message of a chunk stream on this link, once known.
    max_message: Option<usize>,
    /// The id of the next object queued.
    next_id: u64,
    /// Reads are being started: all of them go before the next send (as
    /// one pass of read-ahead in the code this came from).
    reading: bool,
}

#[derive(Debug)]
struct Job {
    content: ContentId,
    what: What,
}

#[derive(Debug)]
enum What {
    /// `Reply::Has`, as of when it is sent.
    Has,
    /// An object, message by message as the channel drains.
    Object {
        id: JobId,
        kind: FrameKind,
        index: u32,
        load: Load,
        /// Bytes sent so far.
        offset: usize,
        /// Whether its stream header is sent (chunks sent as a stream).
        announced: bool,
    },
}

/// Where an object's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Not asked for yet.
    Idle,
    /// Being read.
    Reading,
    /// With the caller: this many bytes.
    Loaded(usize),
}

impl Plan {
    /// A request from the other side, about content that is `held` here
    /// (`None` if not): queues what it asks for, or returns the reply to
    /// send at once instead (`Reply::Missing`, or `Reply::Refused` with
    /// why), in which case nothing is queued.
    pub fn request(&mut self, request: Request, held: Option<&dyn Holding>) -> Result<(), Reply> {
        let content = match &request {
            Request::Manifest { content, .. }
            | Request::Has { content }
            | Request::Chunks { content, .. } => *content,
        };
        let Some(held) = held else {
            return Err(Reply::Missing { content });
        };
        match request {
            Request::Manifest { prefetch, .. } => {
                let leading = prefetch.min(MAX_PREFETCH).min(held.chunk_count());
                self.push_object(content, FrameKind::Manifest, 0);
                self.queue.push_back(Job {
                    content,
                    what: What::Has,
                });
                for i in (0..leading).filter(|&i| held.has(i)) {
                    self.push_object(content, FrameKind::Chunk, i);
                }
            }
            Request::Has { .. } => self.queue.push_back(Job {
                content,
                what: What::Has,
            }),
            Request::Chunks { indices, .. } => {
                if indices.len() > MAX_REQUEST_CHUNKS {
                    return Err(Reply::Refused {
                        message: format!("at most {MAX_REQUEST_CHUNKS} chunks per request"),
                    });
                }
                // All or nothing: the other side asked for what it was told.
                if let Some(i) = indices.iter().find(|&&i| !held.has(i)) {
                    let message = if *i >= held.chunk_count() {
                        format!("chunk {i} is out of range")
                    } else {
                        format!("chunk {i} is not here (yet): ask for chunks this peer said it has")
                    };
                    return Err(Reply::Refused { message });
                }
                for i in indices {
                    self.push_object(content, FrameKind::Chunk, i);
                }
            }
        }
        Ok(())
    }

    fn push_object(&mut self, content: ContentId, kind: FrameKind, index: u32) {
        let id = JobId(self.next_id);
        self.next_id += 1;
        self.queue.push_back(Job {
            content,
            what: What::Object {
                id,
                kind,
                index,
                load: Load::Idle,
                offset: 0,
                announced: false,
            },
        });
    }

    /// Sets the largest message of a chunk stream on this link (what the
    /// channel's peer accepts, at most [`MAX_MESSAGE`]), once the channel
    /// is open. Until then streams go in messages of [`MAX_FRAME`] bytes,
    /// which every browser accepts.
    pub fn set_max_message(&mut self, n: usize) {
        self.max_message = Some(n.clamp(1, MAX_MESSAGE));
    }

    /// The next thing to do, given the bytes now `buffered` in the channel;
    /// `None` means wait: for `bufferedamountlow` if `buffered` is at or
    /// over [`HIGH_WATER`], else for a read to complete (or a request).
    pub fn next(&mut self, buffered: u32) -> Option<Step> {
        if self.reading {
            if let Some(read) = self.start_read() {
                return Some(read);
            }
            self.reading = false;
        }
        if buffered >= HIGH_WATER {
            return None;
        }
        if let Some(send) = self.send_front() {
            return Some(send);
        }
        // The front waits for its bytes (or nothing is queued): read ahead.
        let read = self.start_read();
        self.reading = read.is_some();
        read
    }

    /// The next message of the front job, if it can go.
    fn send_front(&mut self) -> Option<Step> {
        let max_message = self.max_message.unwrap_or(MAX_FRAME);
        let job = self.queue.front_mut()?;
        let content = job.content;
        let What::Object {
            id,
            kind,
            index,
            load,
            offset,
            announced,
        } = &mut job.what
        else {
            self.queue.pop_front();
            if !self.watching.contains(&content) {
                self.watching.push(content);
            }
            return Some(Step::SendHas(content));
        };
        let Load::Loaded(total) = *load else {
            return None;
        };
        let (id, kind, index) = (*id, *kind, *index);
        // Chunks of more than a frame go as a stream of views of the bytes
        // read (see `crate::transfer`).
        let streamed = kind == FrameKind::Chunk && total > MAX_PAYLOAD;
        let (part, end) = if streamed {
            // Once only: after the header, the other side reads every
            // message as this chunk's bytes.
            if !*announced {
                *announced = true;
                let part = Part::StreamHeader { total };
                return Some(Step::Send {
                    job: id,
                    kind,
                    index,
                    part,
                    last: false,
                });
            }
            let end = (*offset + max_message).min(total);
            (
                Part::View {
                    from: *offset,
                    to: end,
                },
                end,
            )
        } else {
            // An empty object still goes as one frame, so that its
            // receiver learns it.
            let end = (*offset + MAX_PAYLOAD).min(total);
            let part = Part::Frame {
                offset: *offset,
                end,
                total,
            };
            (part, end)
        };
        *offset = end;
        let last = end >= total;
        if last {
            self.queue.pop_front();
        }
        Some(Step::Send {
            job: id,
            kind,
            index,
            part,
            last,
        })
    }

    /// Starts the first read not yet started among the first
    /// [`READ_AHEAD`] objects queued.
    fn start_read(&mut self) -> Option<Step> {
        let objects = self
            .queue
            .iter_mut()
            .filter(|j| matches!(j.what, What::Object { .. }))
            .take(READ_AHEAD);
        for job in objects {
            if let What::Object {
                id,
                kind,
                index,
                load: load @ Load::Idle,
                ..
            } = &mut job.what
            {
                *load = Load::Reading;
                return Some(Step::Read {
                    job: *id,
                    content: job.content,
                    kind: *kind,
                    index: *index,
                });
            }
        }
        None
    }

    /// The read of `job` finished with the object's `len` bytes, which the
    /// caller keeps until the job's `last` send. False if the job is no
    /// longer queued (cleared, or not being read): drop the bytes.
    pub fn loaded(&mut self, job: JobId, len: usize) -> bool {
        match self.reading_mut(job) {
            Some(load) => {
                *load = Load::Loaded(len);
                true
            }
            None => false,
        }
    }

    /// The read of `job` failed with `error`: everything queued is dropped
    /// (the caller drops every object's bytes) and the returned refusal is
    /// to be sent, so the other side moves on. `None` if the job was no
    /// longer queued.
    pub fn failed(&mut self, job: JobId, error: &str) -> Option<Reply> {
        self.reading_mut(job)?;
        let index = self.queue.iter().find_map(|j| match j.what {
            What::Object { id, index, .. } if id == job => Some(index),
            _ => None,
        })?;
        self.clear();
        Some(Reply::Refused {
            message: format!("cannot read chunk {index}: {error}"),
        })
    }

    fn reading_mut(&mut self, job: JobId) -> Option<&mut Load> {
        self.queue.iter_mut().find_map(|j| match &mut j.what {
            What::Object { id, load, .. } if *id == job && *load == Load::Reading => Some(load),
            _ => None,
        })
    }

    /// Whether the other side was told the availability of `content`
    /// (a [`Step::SendHas`] was returned): it then hears of every chunk
    /// gained (`Reply::Got`) for as long as the link lasts.
    pub fn watches(&self, content: &ContentId) -> bool {
        self.watching.contains(content)
    }

    /// Whether anything of `content` is still queued: the caller keeps
    /// what it reads objects from until then.
    pub fn queues(&self, content: &ContentId) -> bool {
        self.queue.iter().any(|j| j.content == *content)
    }

    /// Drops everything queued; what the other side watches stays.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.reading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::{Assembly, Reader};
    use std::collections::HashMap;

    const A: ContentId = ContentId([1; 32]);
    const B: ContentId = ContentId([2; 32]);

    /// Content held here: its manifest bytes, and the chunks present.
    struct Shop {
        manifest: Vec<u8>,
        chunks: Vec<Option<Vec<u8>>>,
    }

    impl Holding for Shop {
        fn chunk_count(&self) -> u32 {
            self.chunks.len() as u32
        }
        fn has(&self, index: u32) -> bool {
            matches!(self.chunks.get(index as usize), Some(Some(_)))
        }
    }

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Every chunk of `lens` present.
    fn shop(manifest_len: usize, lens: &[usize]) -> Shop {
        Shop {
            manifest: bytes(manifest_len, 0xaa),
            chunks: lens
                .iter()
                .enumerate()
                .map(|(i, &l)| Some(bytes(l, i as u8)))
                .collect(),
        }
    }

    impl Shop {
        fn object(&self, kind: FrameKind, index: u32) -> &[u8] {
            match kind {
                FrameKind::Manifest => &self.manifest,
                FrameKind::Chunk => self.chunks[index as usize].as_deref().unwrap(),
            }
        }
    }

    /// A message sent.
    #[derive(Debug, PartialEq)]
    enum Msg {
        Has(ContentId),
        Binary(Vec<u8>),
    }

    /// A caller whose reads complete at once, sending into a channel that
    /// never fills: returns every step and the messages they made.
    fn run(plan: &mut Plan, shop: &Shop) -> (Vec<Step>, Vec<Msg>) {
        let mut steps = Vec::new();
        let mut msgs = Vec::new();
        let mut loaded = HashMap::new();
        while let Some(step) = plan.next(0) {
            execute(plan, shop, &step, &mut loaded, &mut msgs);
            steps.push(step);
            assert!(steps.len() < 10_000, "the plan never ends");
        }
        (steps, msgs)
    }

    /// Does what `step` says, as the browser peer would.
    fn execute(
        plan: &mut Plan,
        shop: &Shop,
        step: &Step,
        loaded: &mut HashMap<JobId, (FrameKind, u32)>,
        msgs: &mut Vec<Msg>,
    ) {
        match *step {
            Step::SendHas(content) => msgs.push(Msg::Has(content)),
            Step::Read {
                job, kind, index, ..
            } => {
                loaded.insert(job, (kind, index));
                assert!(plan.loaded(job, shop.object(kind, index).len()));
            }
            Step::Send {
                job,
                kind,
                index,
                part,
                last,
            } => {
                assert_eq!(loaded.get(&job), Some(&(kind, index)), "sent before read");
                msgs.push(Msg::Binary(encode(
                    shop.object(kind, index),
                    kind,
                    index,
                    part,
                )));
                if last {
                    loaded.remove(&job);
                }
            }
        }
    }

    fn encode(object: &[u8], kind: FrameKind, index: u32, part: Part) -> Vec<u8> {
        let mut m = part
            .header(kind, index)
            .map_or_else(Vec::new, |h| h.to_vec());
        m.extend_from_slice(&object[part.bytes()]);
        m
    }

    /// What a receiver makes of the binary messages: whole objects, in
    /// order, checked by `Reader` and `Assembly`.
    fn receive(msgs: &[Msg]) -> Vec<(FrameKind, u32, Vec<u8>)> {
        let mut reader = Reader::default();
        let mut assembly: Option<Assembly> = None;
        let mut objects = Vec::new();
        for msg in msgs {
            let Msg::Binary(m) = msg else { continue };
            let first = &m[..m.len().min(HEADER)];
            let Some(read) = reader.read(first, m.len()).unwrap() else {
                continue;
            };
            let head = read.head;
            let frame = Frame {
                kind: head.kind,
                index: head.index,
                offset: head.offset,
                total: head.total,
                bytes: &m[read.payload_at..],
            };
            let asm = assembly.get_or_insert_with(|| Assembly::new(head.total, 1 << 24).unwrap());
            if let Some(object) = asm.push(&frame).unwrap() {
                objects.push((head.kind, head.index, object));
                assembly = None;
            }
        }
        assert!(assembly.is_none(), "an object was left unfinished");
        objects
    }

    /// Every step until the plan says to wait (a plan that never does
    /// fails the test rather than hang it).
    fn drain(plan: &mut Plan) -> Vec<Step> {
        let steps: Vec<Step> = std::iter::from_fn(|| plan.next(0)).take(10_000).collect();
        assert!(steps.len() < 10_000, "the plan never ends");
        steps
    }

    fn parts(steps: &[Step]) -> Vec<(FrameKind, u32, Part, bool)> {
        steps
            .iter()
            .filter_map(|s| match *s {
                Step::Send {
                    kind,
                    index,
                    part,
                    last,
                    ..
                } => Some((kind, index, part, last)),
                _ => None,
            })
            .collect()
    }

    fn chunks(indices: Vec<u32>) -> Request {
        Request::Chunks {
            content: A,
            indices,
        }
    }

    fn refusal(message: &str) -> Result<(), Reply> {
        Err(Reply::Refused {
            message: message.into(),
        })
    }

    #[test]
    fn a_manifest_request_sends_the_manifest_then_has_then_the_leading_chunks_held() {
        let mut shop = shop(100_000, &[1000, 2000, 3000, 4000, 5000, 6000]);
        shop.chunks[1] = None;
        let mut plan = Plan::default();
        let request = Request::Manifest {
            content: A,
            prefetch: 4,
        };
        plan.request(request, Some(&shop)).unwrap();
        let (_, msgs) = run(&mut plan, &shop);
        // The manifest's frames exactly as `Frame::encode_all` makes them.
        let frames: Vec<Msg> = Frame::encode_all(FrameKind::Manifest, 0, &shop.manifest)
            .map(Msg::Binary)
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(msgs[..2], frames[..]);
        assert_eq!(msgs[2], Msg::Has(A));
        let got: Vec<_> = receive(&msgs)
            .into_iter()
            .map(|(kind, index, object)| (kind, index, object.len()))
            .collect();
        let manifest = (FrameKind::Manifest, 0, 100_000);
        let chunk = |i: u32| (FrameKind::Chunk, i, 1000 * (i as usize + 1));
        // Chunk 1 is not here; chunks 4 and 5 are past the prefetch.
        assert_eq!(got, [manifest, chunk(0), chunk(2), chunk(3)]);
        assert_eq!(msgs.len(), 6);
    }

    #[test]
    fn prefetch_is_capped_by_max_prefetch_and_the_chunk_count() {
        let count = |prefetch, lens: &[usize]| {
            let shop = shop(10, lens);
            let mut plan = Plan::default();
            let request = Request::Manifest {
                content: A,
                prefetch,
            };
            plan.request(request, Some(&shop)).unwrap();
            let (_, msgs) = run(&mut plan, &shop);
            receive(&msgs).len() - 1
        };
        assert_eq!(count(100, &[10; 10]), MAX_PREFETCH as usize);
        assert_eq!(count(5, &[10; 2]), 2);
        assert_eq!(count(0, &[10; 2]), 0);
    }

    #[test]
    fn a_has_request_is_answered_in_turn_and_missing_content_at_once() {
        let shop = shop(10, &[10, 10]);
        let mut plan = Plan::default();
        plan.request(chunks(vec![1]), Some(&shop)).unwrap();
        plan.request(Request::Has { content: A }, Some(&shop))
            .unwrap();
        let (steps, _) = run(&mut plan, &shop);
        // Behind the chunk asked for first.
        assert!(matches!(
            steps[..],
            [
                Step::Read { .. },
                Step::Send { last: true, .. },
                Step::SendHas(A)
            ]
        ));
        assert_eq!(
            plan.request(Request::Has { content: B }, None),
            Err(Reply::Missing { content: B })
        );
        // Missing goes before any other check.
        assert_eq!(
            plan.request(chunks(vec![0; 100]), None),
            Err(Reply::Missing { content: A })
        );
        assert_eq!(plan.next(0), None);
    }

    #[test]
    fn chunk_requests_are_refused_whole_with_why() {
        let mut shop = shop(10, &[10, 10, 10]);
        shop.chunks[1] = None;
        let mut plan = Plan::default();
        assert_eq!(
            plan.request(chunks(vec![0; MAX_REQUEST_CHUNKS + 1]), Some(&shop)),
            refusal("at most 64 chunks per request")
        );
        assert_eq!(
            plan.request(chunks(vec![0, 1, 2]), Some(&shop)),
            refusal("chunk 1 is not here (yet): ask for chunks this peer said it has")
        );
        assert_eq!(
            plan.request(chunks(vec![2, 3, 1]), Some(&shop)),
            refusal("chunk 3 is out of range")
        );
        assert_eq!(
            plan.request(chunks(vec![u32::MAX]), Some(&shop)),
            refusal(&format!("chunk {} is out of range", u32::MAX))
        );
        // Nothing of a refused request is queued.
        assert_eq!(plan.next(0), None);
        assert_eq!(
            plan.request(chunks(vec![0; MAX_REQUEST_CHUNKS]), Some(&shop)),
            Ok(())
        );
    }

    #[test]
    fn a_256k_chunk_is_a_stream_header_and_one_view_of_up_to_max_message() {
        let shop = shop(10, &[256 * 1024]);
        let mut plan = Plan::default();
        plan.set_max_message(MAX_MESSAGE);
        plan.request(chunks(vec![0]), Some(&shop)).unwrap();
        let (steps, msgs) = run(&mut plan, &shop);
        let header = Part::StreamHeader { total: 262_144 };
        let view = Part::View {
            from: 0,
            to: 262_144,
        };
        let chunk = FrameKind::Chunk;
        assert_eq!(
            parts(&steps),
            [(chunk, 0, header, false), (chunk, 0, view, true)]
        );
        assert_eq!(
            receive(&msgs),
            [(chunk, 0, shop.chunks[0].clone().unwrap())]
        );
    }

    #[test]
    fn a_stream_is_cut_into_views_of_max_message() {
        let shop = shop(10, &[256 * 1024, MAX_PAYLOAD + 1]);
        let mut plan = Plan::default();
        plan.set_max_message(64 * 1024);
        plan.request(chunks(vec![0, 1]), Some(&shop)).unwrap();
        let (steps, msgs) = run(&mut plan, &shop);
        let sent = parts(&steps);
        assert_eq!(sent[0].2, Part::StreamHeader { total: 262_144 });
        let views: Vec<_> = sent[1..5].iter().map(|s| s.2).collect();
        let view = |k: usize| Part::View {
            from: k * 65_536,
            to: (k + 1) * 65_536,
        };
        assert_eq!(views, [view(0), view(1), view(2), view(3)]);
        // One byte over a frame's payload already streams.
        let tail: Vec<_> = sent[5..].iter().map(|s| s.2).collect();
        let total = MAX_PAYLOAD + 1;
        let whole = Part::View { from: 0, to: total };
        assert_eq!(tail, [Part::StreamHeader { total }, whole]);
        let got: Vec<_> = receive(&msgs).into_iter().map(|o| o.2).collect();
        assert_eq!(
            got,
            [
                shop.chunks[0].clone().unwrap(),
                shop.chunks[1].clone().unwrap()
            ]
        );
    }

    #[test]
    fn max_message_defaults_to_a_frame_and_is_kept_within_max_message() {
        let shop = shop(10, &[300_000]);
        let views = |plan: &mut Plan| {
            plan.request(chunks(vec![0]), Some(&shop)).unwrap();
            let (steps, _) = run(plan, &shop);
            parts(&steps)[1..]
                .iter()
                .map(|s| s.2.payload())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            views(&mut Plan::default()),
            [65_536; 4].into_iter().chain([37_856]).collect::<Vec<_>>()
        );
        let mut plan = Plan::default();
        // Firefox advertises 1 GiB, which receivers refuse.
        plan.set_max_message(1 << 30);
        assert_eq!(views(&mut plan), [MAX_MESSAGE, 300_000 - MAX_MESSAGE]);
    }

    #[test]
    fn small_chunks_and_the_manifest_go_as_frames_that_tile_them() {
        // The manifest's second frame ends one byte short of it.
        let manifest = 2 * MAX_PAYLOAD + 1;
        let shop = shop(manifest, &[MAX_PAYLOAD, 1, 0]);
        let mut plan = Plan::default();
        plan.set_max_message(MAX_MESSAGE);
        let request = Request::Manifest {
            content: A,
            prefetch: 3,
        };
        plan.request(request, Some(&shop)).unwrap();
        let (steps, msgs) = run(&mut plan, &shop);
        // Keyed by (is the manifest, index): `FrameKind` is not `Hash`.
        let mut next: HashMap<(bool, u32), usize> = HashMap::new();
        for (kind, index, part, last) in parts(&steps) {
            let Part::Frame { offset, end, total } = part else {
                panic!("{part:?} is not a frame");
            };
            let at = next
                .entry((kind == FrameKind::Manifest, index))
                .or_default();
            assert_eq!(
                offset, *at,
                "frames of {kind:?} {index} in order, without gaps"
            );
            assert!(end - offset <= MAX_PAYLOAD);
            assert_eq!(total, shop.object(kind, index).len());
            assert_eq!(last, end == total);
            *at = end;
        }
        assert_eq!(next[&(true, 0)], manifest);
        assert_eq!(next[&(false, 0)], MAX_PAYLOAD);
        let got = receive(&msgs);
        assert_eq!(got[0].2, shop.manifest);
        assert_eq!(
            got[1..].iter().map(|o| o.2.len()).collect::<Vec<_>>(),
            [MAX_PAYLOAD, 1, 0]
        );
        // An empty chunk is one frame of a header alone.
        assert_eq!(
            msgs.last(),
            Some(&Msg::Binary(
                Frame::header(FrameKind::Chunk, 2, 0, 0).to_vec()
            ))
        );
    }

    #[test]
    fn nothing_is_returned_at_high_water_and_sending_resumes_below() {
        let shop = shop(10, &[256 * 1024; 12]);
        let mut plan = Plan::default();
        plan.set_max_message(64 * 1024);
        plan.request(chunks((0..12).collect()), Some(&shop))
            .unwrap();
        let mut buffered = 0u32;
        let (mut loaded, mut msgs, mut waits) = (HashMap::new(), Vec::new(), 0);
        for _ in 0..10_000 {
            match plan.next(buffered) {
                Some(step) => {
                    assert!(buffered < HIGH_WATER, "{step:?} at {buffered} buffered");
                    execute(&mut plan, &shop, &step, &mut loaded, &mut msgs);
                    if let Some(Msg::Binary(m)) =
                        msgs.last().filter(|_| matches!(step, Step::Send { .. }))
                    {
                        buffered += m.len() as u32;
                    }
                }
                None if buffered >= HIGH_WATER => {
                    // Still nothing, reads included, until the buffer drains.
                    assert_eq!(plan.next(buffered), None);
                    assert_eq!(plan.next(HIGH_WATER), None);
                    waits += 1;
                    buffered = LOW_WATER - 1;
                }
                None => break,
            }
        }
        assert!(waits >= 2, "the buffer filled {waits} times");
        assert_eq!(receive(&msgs).len(), 12);
    }

    #[test]
    fn an_object_not_loaded_blocks_the_jobs_behind_it() {
        let mut plan = Plan::default();
        let shop = shop(10, &[10, 10]);
        let request = Request::Manifest {
            content: A,
            prefetch: 1,
        };
        plan.request(request, Some(&shop)).unwrap();
        plan.request(chunks(vec![1]), Some(&shop)).unwrap();
        let Some(Step::Read {
            job: manifest,
            kind: FrameKind::Manifest,
            ..
        }) = plan.next(0)
        else {
            panic!("the manifest is read first");
        };
        let Some(Step::Read {
            job: chunk,
            index: 0,
            ..
        }) = plan.next(0)
        else {
            panic!("then the leading chunk");
        };
        assert_eq!(plan.next(0), None);
        // The chunk's bytes do not let it (or the `Has`) overtake the manifest.
        assert!(plan.loaded(chunk, 10));
        assert_eq!(plan.next(0), None);
        assert!(!plan.watches(&A));
        assert!(plan.loaded(manifest, 10));
        let order = drain(&mut plan);
        assert!(
            matches!(
                order[..],
                [
                    Step::Send {
                        kind: FrameKind::Manifest,
                        last: true,
                        ..
                    },
                    Step::SendHas(A),
                    Step::Send {
                        index: 0,
                        last: true,
                        ..
                    },
                    Step::Read { index: 1, .. },
                ]
            ),
            "{order:?}"
        );
    }

    #[test]
    fn at_most_read_ahead_objects_are_read_ahead() {
        let shop = shop(10, &[10; 6]);
        let mut plan = Plan::default();
        plan.request(chunks((0..6).collect()), Some(&shop)).unwrap();
        let reads = |plan: &mut Plan| {
            drain(plan)
                .into_iter()
                .map(|s| match s {
                    Step::Read { job, index, .. } => (job, index),
                    other => panic!("{other:?} before its read"),
                })
                .collect::<Vec<_>>()
        };
        let first = reads(&mut plan);
        assert_eq!(first.iter().map(|r| r.1).collect::<Vec<_>>(), [0, 1]);
        // The second loads first: still waits, nothing more is read.
        assert!(plan.loaded(first[1].0, 10));
        assert_eq!(plan.next(0), None);
        // The first loads: both go, then the next two are read.
        assert!(plan.loaded(first[0].0, 10));
        let steps = drain(&mut plan);
        assert_eq!(
            parts(&steps).iter().map(|p| p.1).collect::<Vec<_>>(),
            [0, 1]
        );
        let read: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Read { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(read, [2, 3]);
        assert!(matches!(steps.last(), Some(Step::Read { .. })));
    }

    #[test]
    fn every_read_of_a_pass_starts_before_the_next_send() {
        // As today: an object read at once from memory is not sent before
        // the other read ahead starts (so a failing read refuses first).
        let shop = shop(10, &[10, 10]);
        let mut plan = Plan::default();
        plan.request(chunks(vec![0, 1]), Some(&shop)).unwrap();
        let Some(Step::Read { job, .. }) = plan.next(0) else {
            panic!("a read first");
        };
        assert!(plan.loaded(job, 10));
        let Some(Step::Read {
            job: second,
            index: 1,
            ..
        }) = plan.next(0)
        else {
            panic!("the second read before any send");
        };
        let refused = plan.failed(second, "NotReadableError");
        let message = "cannot read chunk 1: NotReadableError".into();
        assert_eq!(refused, Some(Reply::Refused { message }));
        assert_eq!(plan.next(0), None);
    }

    #[test]
    fn last_is_set_once_per_object_on_its_final_message() {
        // Objects whose next-to-last message ends one byte short of them.
        let shop = shop(70_000, &[300_000, 10, 0, 262_144, 100_001]);
        let mut plan = Plan::default();
        plan.set_max_message(100_000);
        let request = Request::Manifest {
            content: A,
            prefetch: 2,
        };
        plan.request(request, Some(&shop)).unwrap();
        plan.request(chunks(vec![2, 3, 4, 0]), Some(&shop)).unwrap();
        let (steps, _) = run(&mut plan, &shop);
        let mut done: Vec<JobId> = Vec::new();
        let mut sent: HashMap<JobId, usize> = HashMap::new();
        let mut reads = 0;
        for step in &steps {
            match *step {
                Step::Read { job, .. } => {
                    reads += 1;
                    assert!(!sent.contains_key(&job));
                }
                Step::Send {
                    job,
                    part,
                    last,
                    kind,
                    index,
                } => {
                    assert!(!done.contains(&job), "{job:?} named after its last send");
                    let at = sent.entry(job).or_default();
                    *at += part.payload();
                    assert_eq!(
                        last,
                        *at == shop.object(kind, index).len()
                            && !matches!(part, Part::StreamHeader { .. })
                    );
                    if last {
                        done.push(job);
                    }
                }
                Step::SendHas(_) => {}
            }
        }
        // The manifest, two leading chunks, four asked for: each read once.
        assert_eq!((done.len(), reads), (7, 7));
    }

    #[test]
    fn a_failed_read_clears_the_queue_and_refuses() {
        let shop = shop(10, &[10, 10, 10]);
        let mut plan = Plan::default();
        plan.request(chunks(vec![0, 1, 2]), Some(&shop)).unwrap();
        plan.request(Request::Has { content: A }, Some(&shop))
            .unwrap();
        let (Some(Step::Read { job: a, .. }), Some(Step::Read { job: b, .. })) =
            (plan.next(0), plan.next(0))
        else {
            panic!("two reads");
        };
        assert_eq!(plan.failed(JobId(99), "no such read"), None);
        let refused = plan.failed(b, "the file changed");
        let message = "cannot read chunk 1: the file changed".into();
        assert_eq!(refused, Some(Reply::Refused { message }));
        // The other read completes into nothing; nothing more is sent.
        assert!(!plan.loaded(a, 10));
        assert_eq!(plan.failed(a, "late"), None);
        assert_eq!(plan.next(0), None);
        assert!(!plan.watches(&A));
        // The link still serves new requests, with fresh jobs.
        plan.request(chunks(vec![2]), Some(&shop)).unwrap();
        let Some(Step::Read { job, index: 2, .. }) = plan.next(0) else {
            panic!("a new read");
        };
        assert!(job != a && job != b);
        plan.clear();
        assert_eq!(plan.next(0), None);
        assert!(!plan.loaded(job, 10));
    }

    #[test]
    fn watching_starts_when_send_has_is_returned() {
        let shop = shop(10, &[]);
        let mut plan = Plan::default();
        plan.request(Request::Has { content: A }, Some(&shop))
            .unwrap();
        assert!(!plan.watches(&A));
        // Not while the buffer is full.
        assert_eq!(plan.next(HIGH_WATER), None);
        assert!(!plan.watches(&A));
        assert_eq!(plan.next(HIGH_WATER - 1), Some(Step::SendHas(A)));
        assert!(plan.watches(&A));
        assert!(!plan.watches(&B));
        // A failure later does not unsay it.
        plan.clear();
        assert!(plan.watches(&A));
    }

    #[test]
    fn content_is_queued_until_its_last_job_is_done() {
        let shop = shop(10, &[1_000]);
        let mut plan = Plan::default();
        plan.request(Request::Has { content: A }, Some(&shop))
            .unwrap();
        plan.request(chunks(vec![0]), Some(&shop)).unwrap();
        assert!(plan.queues(&A) && !plan.queues(&B));
        run(&mut plan, &shop);
        assert!(!plan.queues(&A));
        // A failed read lets go of everything queued.
        plan.request(chunks(vec![0]), Some(&shop)).unwrap();
        let Some(Step::Read { job, .. }) = plan.next(0) else {
            panic!("a read");
        };
        assert!(plan.failed(job, "gone").is_some());
        assert!(!plan.queues(&A));
    }

    #[test]
    fn a_stream_header_goes_once_even_if_its_first_view_waits() {
        let shop = shop(10, &[100_000]);
        let mut plan = Plan::default();
        plan.set_max_message(MAX_MESSAGE);
        plan.request(chunks(vec![0]), Some(&shop)).unwrap();
        let Some(Step::Read { job, .. }) = plan.next(0) else {
            panic!("a read");
        };
        assert!(plan.loaded(job, 100_000));
        // Loaded once: a second report cannot change what is being sent.
        assert!(!plan.loaded(job, 1));
        let header = plan.next(HIGH_WATER - 1);
        assert!(matches!(
            header,
            Some(Step::Send {
                part: Part::StreamHeader { total: 100_000 },
                ..
            })
        ));
        assert_eq!(plan.next(HIGH_WATER + 12), None);
        let view = Part::View {
            from: 0,
            to: 100_000,
        };
        assert!(matches!(plan.next(0), Some(Step::Send { part, last: true, .. }) if part == view));
        assert_eq!(plan.next(0), None);
    }

    #[test]
    fn availability_is_a_holding() {
        let mut have = Availability::none(3);
        have.insert(2);
        let mut plan = Plan::default();
        assert_eq!(plan.request(chunks(vec![2]), Some(&have)), Ok(()));
        assert_eq!(
            plan.request(chunks(vec![0]), Some(&have)),
            refusal("chunk 0 is not here (yet): ask for chunks this peer said it has")
        );
        assert_eq!(
            plan.request(chunks(vec![3]), Some(&have)),
            refusal("chunk 3 is out of range")
        );
    }
}
