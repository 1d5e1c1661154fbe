//! What a wanter parses from holders, fed to a real `Download` as the
//! browser peer feeds it (`peer-wasm/src/peer/links.rs`): binary messages
//! through one `transfer::Reader` per connection into `FrameHead`s (chunk
//! payloads kept where the download says), text messages parsed as
//! `Reply`s, and the connection events and clock around them. Holders may
//! be honest (answer what was asked with the real manifest and chunks,
//! framed or streamed, one chunk corrupted if the input says so) or send
//! anything at all.
//!
//! Checked after every step: nothing panics; a chunk is kept only where
//! and when the download said, never beyond its length; it is hashed only
//! once whole; only bytes that match the manifest are stored, each chunk
//! once; the download reports complete only with every chunk stored, and
//! the stored bytes are then exactly the content; the verified bytes it
//! reports are the bytes stored; the manifest it hands out is the one the
//! address names; while it waits for the user's yes it asks for no chunk
//! past the leading ones and keeps no byte of any; ticks at a deadline
//! already past change something and soon move it ahead (the browser
//! would otherwise spin); no input
//! makes it hold more than `LIVE_LIMIT` bytes at once. Manifests of
//! any shape are parsed and checked, and text is made safe to show, with
//! what comes out checked too.
//!
//! Input: the first byte picks the content (small chunks or chunks bigger
//! than a frame) and whether big content waits for a yes; then one step
//! per byte and its arguments (see `step`).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use protocol::availability::{Availability, Have};
use protocol::display::{is_hidden, safe_text};
use protocol::download::{Action, Conn, Download, HolderId, Input, Status, MAX_SOURCES, PREFETCH};
use protocol::ids::{ChunkHash, PeerId};
use protocol::manifest::Manifest;
use protocol::transfer::{
    Frame, FrameHead, FrameKind, Read, Reader, Reply, Request, HEADER, MAX_MESSAGE, MAX_PAYLOAD,
    MAX_PREFETCH,
};
use uuid::Uuid;

/// Holders an input can name.
const HOLDERS: u8 = 3;

/// Most bytes one run may have allocated at once, beyond what it started
/// with: a few connections' manifests being assembled (8 MiB at most each,
/// `manifest::MAX_MANIFEST_BYTES`) and the content's chunks. libFuzzer's
/// own `-malloc_limit_mb` needs a sanitizer's allocator, which this build
/// (`--sanitizer none`) has not, so the target counts for itself.
const LIVE_LIMIT: usize = 48 << 20;

/// The system allocator, counting the bytes allocated and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Content the holders hold.
struct Fixture {
    manifest: Manifest,
    bytes: Vec<u8>,
    data: Vec<u8>,
}

impl Fixture {
    fn new(len: usize, chunk_size: u32) -> Self {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
        let manifest = Manifest::describe_with_chunk_size(
            &data,
            "application/octet-stream",
            Some("data.bin"),
            chunk_size,
        );
        Fixture {
            bytes: manifest.to_bytes(),
            manifest,
            data,
        }
    }

    fn chunk(&self, i: u32) -> &[u8] {
        let start = i as usize * self.manifest.chunk_size as usize;
        &self.data[start..start + self.manifest.chunk_len(i)]
    }
}

/// Small chunks (one frame each), chunks bigger than a frame (sent as
/// several frames or as a stream), and content of one chunk (all of it
/// comes with the manifest).
fn fixtures() -> &'static [Fixture; 3] {
    static F: OnceLock<[Fixture; 3]> = OnceLock::new();
    F.get_or_init(|| {
        [
            Fixture::new(5_200, 700),
            Fixture::new(250_000, 100_000),
            Fixture::new(600, 700),
        ]
    })
}

/// Reads the input's bytes.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    /// A length-prefixed slice (the length capped by what is left).
    fn slice(&mut self) -> &'a [u8] {
        let n = (self.u16() as usize).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

/// A message from a holder.
enum Msg {
    Binary(Vec<u8>),
    Text(String),
}

/// The browser layer around the download, holders included.
struct Wanter {
    fx: &'static Fixture,
    dl: Download,
    now: u64,
    readers: HashMap<Conn, Reader>,
    /// Requests sent over each connection, for honest holders to answer.
    asked: HashMap<Conn, VecDeque<Request>>,
    /// What is kept of the chunk arriving over each connection.
    arriving: HashMap<Conn, (u32, Vec<u8>)>,
    /// Whole chunks waiting for their hash to be compared.
    verifying: HashMap<u32, Vec<u8>>,
    /// Their indices, in the order they are hashed (later, as in a browser).
    unhashed: VecDeque<u32>,
    stored: HashMap<u32, Vec<u8>>,
    manifest_seen: bool,
    complete: bool,
    /// Whether the download ever waited for the user's yes, and whether
    /// it was given.
    asked_yes: bool,
    said_yes: bool,
    /// Chunk copies begun before the yes.
    kept_before_yes: u32,
}

fn holder(b: u8) -> HolderId {
    HolderId::Peer(PeerId(Uuid::from_u128(u128::from(b % HOLDERS) + 1)))
}

fn conn(b: u8) -> Conn {
    Conn {
        holder: holder(b),
        lane: (b / HOLDERS) % 2,
    }
}

impl Wanter {
    fn new(fx: &'static Fixture, confirm_above: Option<u64>) -> Self {
        let mut dl = Download::new(fx.manifest.address(), 0, 7);
        dl.set_confirm_above(confirm_above);
        Wanter {
            fx,
            dl,
            now: 0,
            readers: HashMap::new(),
            asked: HashMap::new(),
            arriving: HashMap::new(),
            verifying: HashMap::new(),
            unhashed: VecDeque::new(),
            stored: HashMap::new(),
            manifest_seen: false,
            complete: false,
            asked_yes: false,
            said_yes: false,
            kept_before_yes: 0,
        }
    }

    /// Feeds `input`; `frame` is the chunk frame it is, with its payload.
    fn feed(&mut self, input: Input<'_>, frame: Option<(Conn, FrameHead, &[u8])>) {
        let actions = self.dl.handle(input, self.now);
        self.run(actions, frame);
    }

    fn run(&mut self, actions: Vec<Action>, frame: Option<(Conn, FrameHead, &[u8])>) {
        let waiting = self.dl.awaiting_confirmation();
        for action in actions {
            match action {
                Action::Connect(conn) => {
                    assert!(
                        !waiting || conn.lane == 0,
                        "opened a second connection before the user's yes"
                    );
                }
                Action::Send(to, req) => {
                    if let Request::Chunks { indices, .. } = &req {
                        assert!(!indices.is_empty(), "asked for no chunks");
                        assert!(
                            !waiting || indices.iter().all(|&i| i < PREFETCH),
                            "asked for chunks {indices:?} before the user's yes"
                        );
                    }
                    self.asked.entry(to).or_default().push_back(req);
                }
                Action::Disconnect { conn, .. } => {
                    self.readers.remove(&conn);
                    self.asked.remove(&conn);
                    self.arriving.remove(&conn);
                }
                Action::Want(n) => {
                    assert!(n >= 1 && usize::from(n) <= MAX_SOURCES, "want {n}");
                    assert!(
                        !waiting,
                        "asked the broker for holders before the user's yes"
                    );
                }
                Action::Manifest {
                    manifest,
                    manifest_bytes,
                } => {
                    assert!(!self.manifest_seen, "the manifest was handed out twice");
                    assert_eq!(manifest, self.fx.manifest);
                    assert_eq!(manifest_bytes, self.fx.bytes);
                    self.manifest_seen = true;
                }
                Action::Keep {
                    conn,
                    index,
                    offset,
                } => {
                    let (from, head, payload) = frame.expect("kept a payload nobody handed in");
                    if waiting && offset == 0 {
                        self.kept_before_yes += 1;
                        assert!(
                            self.kept_before_yes <= PREFETCH,
                            "began {} chunk copies before the user's yes",
                            self.kept_before_yes
                        );
                    }
                    assert_eq!((conn, index, offset), (from, head.index, head.offset));
                    let kept = self.arriving.entry(conn).or_insert((index, Vec::new()));
                    if offset == 0 {
                        *kept = (index, Vec::new());
                    }
                    assert_eq!(kept.0, index, "kept chunk {index} into chunk {}", kept.0);
                    assert_eq!(kept.1.len(), offset as usize, "kept out of order");
                    kept.1.extend_from_slice(payload);
                    let len = self.fx.manifest.chunk_len(index);
                    assert!(
                        kept.1.len() <= len,
                        "kept more of chunk {index} than it has"
                    );
                }
                Action::Abandon { conn } => {
                    self.arriving.remove(&conn);
                }
                Action::Verify { conn, index } => {
                    let (i, whole) = self.arriving.remove(&conn).expect("verify of nothing kept");
                    assert_eq!(i, index);
                    assert_eq!(
                        whole.len(),
                        self.fx.manifest.chunk_len(index),
                        "hashed a part"
                    );
                    assert!(
                        self.verifying.insert(index, whole).is_none(),
                        "two copies of chunk {index} hashed at once"
                    );
                    self.unhashed.push_back(index);
                }
                Action::Store { index } => {
                    let bytes = self.verifying.remove(&index).expect("stored unkept bytes");
                    assert!(
                        self.fx.manifest.chunk_matches(index, &bytes),
                        "stored a bad chunk {index}"
                    );
                    assert!(
                        self.stored.insert(index, bytes).is_none(),
                        "stored {index} twice"
                    );
                }
                Action::Discard { index } => {
                    let bytes = self
                        .verifying
                        .remove(&index)
                        .expect("discarded unkept bytes");
                    assert!(
                        !self.fx.manifest.chunk_matches(index, &bytes),
                        "discarded a good chunk {index}"
                    );
                }
                Action::Complete => {
                    assert!(!self.complete, "completed twice");
                    assert!(
                        !self.asked_yes || self.said_yes,
                        "completed before the user's yes"
                    );
                    let mut data = Vec::new();
                    for i in 0..self.fx.manifest.chunk_count() {
                        data.extend_from_slice(&self.stored[&i]);
                    }
                    assert!(
                        data == self.fx.data,
                        "complete with other bytes than the content"
                    );
                    self.complete = true;
                }
            }
        }
        self.check();
    }

    /// What must hold between steps.
    fn check(&mut self) {
        let status = self.dl.status();
        assert_eq!(status == Status::Verified, self.complete, "{status:?}");
        let stored: u64 = self.stored.values().map(|b| b.len() as u64).sum();
        if let Status::Receiving {
            received, total, ..
        } = status
        {
            assert_eq!(received, stored, "reports bytes it did not store");
            assert!(total == 0 || received <= total);
        }
        if self.dl.awaiting_confirmation() {
            self.asked_yes = true;
            assert!(!self.said_yes, "waits again after the yes");
            assert!(matches!(status, Status::Confirm { .. }), "{status:?}");
            let kept = self.arriving.values().map(|(i, _)| i);
            let all = kept.chain(self.verifying.keys()).chain(self.stored.keys());
            for &i in all {
                assert!(i < PREFETCH, "kept chunk {i} before the user's yes");
            }
        }
    }

    /// A binary message over `conn`, read as the browser peer reads it.
    fn binary(&mut self, conn: Conn, msg: &[u8]) {
        let reader = self.readers.entry(conn).or_default();
        match reader.read(&msg[..msg.len().min(HEADER)], msg.len()) {
            // A stream header: its bytes follow.
            Ok(None) => {}
            Ok(Some(Read { head, payload_at })) => {
                let payload = &msg[payload_at..];
                assert_eq!(payload.len(), head.len as usize);
                if head.kind == FrameKind::Chunk {
                    self.feed(Input::ChunkFrame(conn, head), Some((conn, head, payload)));
                } else {
                    self.feed(Input::Frame(conn, msg), None);
                }
            }
            Err(why) => self.feed(Input::BadFrame(conn, why), None),
        }
    }

    /// A text message over `conn`, read as the browser peer reads it.
    fn text(&mut self, conn: Conn, text: &str) {
        let reply = serde_json::from_str::<Reply>(text).unwrap_or(Reply::Refused {
            message: "unreadable reply".into(),
        });
        if let Reply::Refused { message } = &reply {
            check_safe(message, protocol::display::HOLDER_WORDS);
        }
        self.feed(Input::Reply(conn, reply), None);
    }

    fn deliver(&mut self, conn: Conn, msgs: Vec<Msg>) {
        for msg in msgs {
            match msg {
                Msg::Binary(b) => self.binary(conn, &b),
                Msg::Text(t) => self.text(conn, &t),
            }
        }
    }

    /// Chunk `i` as an honest holder sends it: frames, or a stream when it
    /// is bigger than a frame (unless `framed`); `corrupt` flips a byte.
    fn chunk_msgs(&self, i: u32, framed: bool, corrupt: bool) -> Vec<Msg> {
        let mut bytes = self.fx.chunk(i).to_vec();
        if corrupt {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
        }
        if framed || bytes.len() <= MAX_PAYLOAD {
            return Frame::encode_all(FrameKind::Chunk, i, &bytes)
                .map(Msg::Binary)
                .collect();
        }
        let mut out = vec![Msg::Binary(Frame::stream_header(i, bytes.len()).to_vec())];
        out.extend(bytes.chunks(MAX_MESSAGE).map(|m| Msg::Binary(m.to_vec())));
        out
    }

    fn has(&self, have: Have) -> Msg {
        let reply = Reply::Has {
            content: self.fx.manifest.address(),
            chunks: have,
        };
        Msg::Text(serde_json::to_string(&reply).expect("replies serialize"))
    }

    /// Answers the oldest request sent over `conn` as an honest holder of
    /// everything would (chunk `corrupt` corrupted).
    fn serve(&mut self, conn: Conn, framed: bool, corrupt: Option<u32>) {
        let Some(req) = self.asked.get_mut(&conn).and_then(VecDeque::pop_front) else {
            return;
        };
        let count = self.fx.manifest.chunk_count();
        let all = || Have::All;
        let mut msgs = Vec::new();
        match req {
            Request::Manifest { prefetch, .. } => {
                msgs.extend(
                    Frame::encode_all(FrameKind::Manifest, 0, &self.fx.bytes).map(Msg::Binary),
                );
                msgs.push(self.has(all()));
                for i in 0..count.min(prefetch).min(MAX_PREFETCH) {
                    msgs.extend(self.chunk_msgs(i, framed, corrupt == Some(i)));
                }
            }
            Request::Has { .. } => msgs.push(self.has(all())),
            Request::Chunks { indices, .. } => {
                for i in indices {
                    msgs.extend(self.chunk_msgs(i, framed, corrupt == Some(i)));
                }
            }
        }
        self.deliver(conn, msgs);
    }

    /// Hashes the oldest whole chunk and reports it.
    fn hash_one(&mut self) {
        let Some(index) = self.unhashed.pop_front() else {
            return;
        };
        let Some(bytes) = self.verifying.get(&index) else {
            return;
        };
        let hash = ChunkHash::of(bytes);
        self.feed(Input::Hashed { index, hash }, None);
    }

    /// The clock reaches `t` (never backwards). A deadline already past
    /// is ticked again at once, as the browser's timer would: each such
    /// tick must change something, and soon the deadline must be ahead
    /// (else the browser would spin).
    fn tick(&mut self, t: u64) {
        self.now = self.now.max(t);
        self.feed(Input::Tick, None);
        for _ in 0..2 * MAX_SOURCES + 2 {
            if self.dl.next_deadline().is_none_or(|d| d > self.now) {
                return;
            }
            let actions = self.dl.handle(Input::Tick, self.now);
            assert!(
                !actions.is_empty(),
                "a tick at {} past the deadline {:?} changes nothing",
                self.now,
                self.dl.next_deadline()
            );
            self.run(actions, None);
        }
        panic!("the deadline stays behind the clock at {}", self.now);
    }

    /// One step of the input; `false` once it is used up.
    fn step(&mut self, b: &mut Bytes<'_>) -> bool {
        let Some(op) = b.byte() else { return false };
        let c = conn(b.byte().unwrap_or(0));
        match op % 16 {
            0 => self.feed(Input::Introduced(c.holder), None),
            1 => self.feed(Input::Opened(c), None),
            2 => self.feed(Input::Lost(c), None),
            3 => self.feed(Input::Holders(u32::from(b.byte().unwrap_or(0))), None),
            4 => {
                let t = self.now + u64::from(b.u16()) * 4;
                self.tick(t);
            }
            5 => {
                if let Some(d) = self.dl.next_deadline() {
                    self.tick(d);
                }
            }
            6 => {
                let framed = b.byte().unwrap_or(0);
                let corrupt = (framed & 2 != 0).then(|| u32::from(framed >> 2));
                self.serve(c, framed & 1 != 0, corrupt);
            }
            7 => self.hash_one(),
            // Anything as a binary message.
            8 => {
                let msg = b.slice().to_vec();
                self.binary(c, &msg);
            }
            // A frame header of the input's choosing, with some payload.
            9 => {
                let kind =
                    [FrameKind::Manifest, FrameKind::Chunk][usize::from(b.byte().unwrap_or(0) % 2)];
                let (index, offset, total) = (u32::from(b.u16()), b.u32(), b.u32());
                let len = usize::from(b.u16()).min(MAX_PAYLOAD);
                let mut msg = Frame::header(kind, index, offset as usize, total as usize).to_vec();
                msg.resize(HEADER + len, 0xa5);
                self.binary(c, &msg);
            }
            // A stream header of the input's choosing.
            10 => {
                let (index, total) = (u32::from(b.u16()), b.u32());
                self.binary(c, &Frame::stream_header(index, total as usize));
            }
            // Anything as a text message.
            11 => {
                let text = String::from_utf8_lossy(b.slice()).into_owned();
                self.text(c, &text);
            }
            // What it has, as a bitfield of the input's choosing.
            12 => {
                let count = self.fx.manifest.chunk_count();
                let bits = b.byte().unwrap_or(0xff);
                let mut has = Availability::none(count);
                for i in (0..count).filter(|i| bits & (1 << (i % 8)) != 0) {
                    has.insert(i);
                }
                let msg = self.has(has.to_have());
                self.deliver(c, vec![msg]);
            }
            13 => {
                let index = u32::from(b.byte().unwrap_or(0));
                let got = Reply::Got {
                    content: self.fx.manifest.address(),
                    index,
                };
                let text = serde_json::to_string(&got).expect("replies serialize");
                self.text(c, &text);
            }
            14 => {
                self.said_yes = true;
                let actions = self.dl.confirm(self.now);
                self.run(actions, None);
            }
            // The manifest, whatever was asked (a holder ahead of itself).
            _ => {
                let frames = Frame::encode_all(FrameKind::Manifest, 0, &self.fx.bytes);
                let msgs = frames.map(Msg::Binary).collect();
                self.deliver(c, msgs);
            }
        }
        true
    }
}

/// `text` made safe: nothing hidden, whitespace collapsed, at most `max`
/// characters.
fn check_safe(text: &str, max: usize) {
    let shown = safe_text(text, max);
    assert!(shown.chars().count() <= max, "{shown:?}");
    assert!(!shown.chars().any(is_hidden), "{shown:?}");
    assert!(!shown.starts_with(' ') && !shown.ends_with(' ') && !shown.contains("  "));
}

/// Manifests of any shape: parsed and checked as a peer's are; one that
/// passes is described by its own bytes, and what it shows is safe.
fn manifest_of_any_shape(bytes: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
        return;
    };
    if m.check().is_err() {
        return;
    }
    let again = m.to_bytes();
    assert_eq!(Manifest::verify(&m.address(), &again).as_ref(), Ok(&m));
    if let Some(name) = m.shown_name() {
        check_safe(&name, protocol::display::NAME_CHARS);
    }
    check_safe(&m.shown_type(), protocol::display::NAME_CHARS);
}

fuzz_target!(|data: &[u8]| {
    manifest_of_any_shape(data);
    check_safe(&String::from_utf8_lossy(data), 40);
    let mut b = Bytes(data);
    let setup = b.byte().unwrap_or(0);
    let fx = &fixtures()[usize::from(setup % 3)];
    // Waiting for a yes for anything bigger than one chunk (or than all
    // of it, for content of one chunk), or never.
    let limit = u64::from(fx.manifest.chunk_size).min(fx.manifest.size - 1);
    let confirm_above = (setup & 4 != 0).then_some(limit);
    let mut w = Wanter::new(fx, confirm_above);
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    while w.step(&mut b) {
        let grew = PEAK.load(Relaxed) - base;
        assert!(grew <= LIVE_LIMIT, "{grew} bytes allocated at once");
    }
});
