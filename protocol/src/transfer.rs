//! Messages between two peers over an RTCDataChannel.
//!
//! Requests and refusals are small JSON text messages. Data travels in binary
//! frames of at most [`MAX_FRAME`] bytes, each with a 13-byte header:
//!
//! ```text
//! kind: u8 (1 = manifest, 2 = chunk) | index: u32 BE | offset: u32 BE | total: u32 BE | bytes
//! ```
//!
//! A chunk bigger than one frame goes as a stream instead: a header alone
//! (kind 3, offset 0, `total` its length), then its bytes in messages
//! without any header, each of at most [`MAX_MESSAGE`] bytes, until
//! `total` bytes have come. A 256 KiB chunk is then one message that the
//! receiver keeps as it lands, and the sender sends views of what it read
//! without copying them into frames. [`Reader`] gives every message of
//! either form its [`FrameHead`].
//!
//! The channel is reliable and ordered, so an object's frames arrive in
//! order; a frame out of order is a protocol violation.

use serde::{Deserialize, Serialize};

use crate::availability::Have;
use crate::ids::ContentId;

/// Largest data-channel message either side sends. 64 KiB: every current
/// browser accepts it (Chromium and Safari advertise 256 KiB in their SDP,
/// Firefox 1 GiB), and per-message costs make 16 KiB messages about a fifth
/// slower in Chromium (`just bench`).
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest headerless message of a chunk stream: the most Chromium and
/// Safari accept (a sender also keeps under the size its peer advertises).
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Frame header length.
pub const HEADER: usize = 13;
/// Payload bytes per frame.
pub const MAX_PAYLOAD: usize = MAX_FRAME - HEADER;
/// Most chunk indices in one request.
pub const MAX_REQUEST_CHUNKS: usize = 64;
/// Most chunks a manifest request may ask to have sent along.
pub const MAX_PREFETCH: u32 = 4;

/// Wanter -> holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Send the manifest of `content` and which chunks you have
    /// (`Reply::Has`), then those of its first `prefetch` chunks (at most
    /// [`MAX_PREFETCH`]) that you have, without waiting for a second
    /// request: small content then arrives in one round trip.
    Manifest {
        /// Address.
        content: ContentId,
        /// Leading chunks to send right after the manifest.
        #[serde(default)]
        prefetch: u32,
    },
    /// Say which chunks of `content` you hold (`Reply::Has`), then each
    /// chunk you gain (`Reply::Got`) for as long as this channel is open.
    Has {
        /// Address.
        content: ContentId,
    },
    /// Send these chunks of `content`, in this order.
    Chunks {
        /// Address.
        content: ContentId,
        /// Chunk indices.
        indices: Vec<u32>,
    },
}

/// Holder -> wanter: availability, or why a request cannot be served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// The chunks the holder has: sent after the manifest, and in answer
    /// to `Request::Has`.
    Has {
        /// Address.
        content: ContentId,
        /// Which chunks.
        chunks: Have,
    },
    /// The holder gained (verified) this chunk since its last `Has`.
    Got {
        /// Address.
        content: ContentId,
        /// Chunk index.
        index: u32,
    },
    /// The holder does not (or no longer) hold this content.
    Missing {
        /// Address.
        content: ContentId,
    },
    /// The request was malformed.
    Refused {
        /// Why.
        message: String,
    },
}

/// What a binary frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Part of the manifest bytes.
    Manifest,
    /// Part of a chunk.
    Chunk,
}

/// A decoded binary frame, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Manifest or chunk.
    pub kind: FrameKind,
    /// Chunk index (0 for the manifest).
    pub index: u32,
    /// Offset of `bytes` within the object.
    pub offset: u32,
    /// Length of the whole object.
    pub total: u32,
    /// Payload.
    pub bytes: &'a [u8],
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {0} bytes; frames are between {HEADER} and {MAX_FRAME} bytes")]
    BadLength(usize),
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("frame at offset {got} where {expected} was expected")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("frame overruns its object ({end} > {total} bytes)")]
    Overrun { end: u64, total: u32 },
    #[error("a stream header must be {HEADER} bytes, start at offset 0 and announce some bytes")]
    BadStream,
    #[error("stream message of {0} bytes; they are between 1 and {MAX_MESSAGE} bytes")]
    BadStreamMessage(usize),
}

/// A frame's header and payload length, read without the payload: for
/// receivers that keep payloads outside this crate (the browser peer
/// leaves them in JavaScript memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Manifest or chunk.
    pub kind: FrameKind,
    /// Chunk index (0 for the manifest).
    pub index: u32,
    /// Offset of the payload within the object.
    pub offset: u32,
    /// Length of the whole object.
    pub total: u32,
    /// Payload length.
    pub len: u32,
}

impl FrameHead {
    /// Reads the header of a binary message of `msg_len` bytes from its
    /// first bytes (at least [`HEADER`] of them).
    pub fn decode(header: &[u8], msg_len: usize) -> Result<Self, FrameError> {
        if !(HEADER..=MAX_FRAME).contains(&msg_len) || header.len() < HEADER {
            return Err(FrameError::BadLength(msg_len));
        }
        let kind = match header[0] {
            1 => FrameKind::Manifest,
            2 => FrameKind::Chunk,
            k => return Err(FrameError::BadKind(k)),
        };
        let [index, offset, total] = header_words(header);
        Ok(FrameHead {
            kind,
            index,
            offset,
            total,
            len: (msg_len - HEADER) as u32,
        })
    }
}

/// A header's index, offset and total (after its kind byte).
fn header_words(header: &[u8]) -> [u32; 3] {
    let word = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    [word(1), word(5), word(9)]
}

impl<'a> Frame<'a> {
    /// Parses a binary data-channel message.
    pub fn decode(msg: &'a [u8]) -> Result<Self, FrameError> {
        let head = FrameHead::decode(msg, msg.len())?;
        Ok(Frame {
            kind: head.kind,
            index: head.index,
            offset: head.offset,
            total: head.total,
            bytes: &msg[HEADER..],
        })
    }

    /// Its header and payload length.
    pub fn head(&self) -> FrameHead {
        FrameHead {
            kind: self.kind,
            index: self.index,
            offset: self.offset,
            total: self.total,
            len: self.bytes.len() as u32,
        }
    }

    /// Encodes the frame of `object` that starts at `offset` (at most
    /// [`MAX_PAYLOAD`] bytes of it). Returns the frame and the next offset.
    pub fn encode_at(
        kind: FrameKind,
        index: u32,
        object: &[u8],
        offset: usize,
    ) -> (Vec<u8>, usize) {
        let end = (offset + MAX_PAYLOAD).min(object.len());
        let mut out = Vec::with_capacity(HEADER + end - offset);
        out.extend_from_slice(&Self::header(kind, index, offset, object.len()));
        out.extend_from_slice(&object[offset..end]);
        (out, end)
    }

    /// The header of the frame of an object of `total` bytes that starts
    /// at `offset`: for senders that assemble frames outside this crate
    /// (the browser peer builds them in JavaScript memory).
    pub fn header(kind: FrameKind, index: u32, offset: usize, total: usize) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0] = match kind {
            FrameKind::Manifest => 1,
            FrameKind::Chunk => 2,
        };
        h[1..5].copy_from_slice(&index.to_be_bytes());
        h[5..9].copy_from_slice(&(offset as u32).to_be_bytes());
        h[9..13].copy_from_slice(&(total as u32).to_be_bytes());
        h
    }

    /// The header that starts the stream of chunk `index`, `total` bytes
    /// (see the module docs).
    pub fn stream_header(index: u32, total: usize) -> [u8; HEADER] {
        let mut h = Self::header(FrameKind::Chunk, index, 0, total);
        h[0] = STREAM;
        h
    }

    /// Splits a whole object into encoded frames.
    pub fn encode_all(
        kind: FrameKind,
        index: u32,
        object: &[u8],
    ) -> impl Iterator<Item = Vec<u8>> + '_ {
        // An empty object still needs one frame so the receiver learns it.
        let count = object.len().div_ceil(MAX_PAYLOAD).max(1);
        (0..count).map(move |i| Self::encode_at(kind, index, object, i * MAX_PAYLOAD).0)
    }
}

/// Kind byte of a stream header.
const STREAM: u8 = 3;

/// Reads one channel's binary messages, framed or streamed, into frame
/// heads (one reader per channel: a stream's messages are known only by
/// their place after its header).
#[derive(Debug, Default, Clone)]
pub struct Reader {
    /// The chunk whose stream is being received: index, next offset, total.
    stream: Option<(u32, u32, u32)>,
}

/// A message's frame head, and where in the message its payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The frame it is, or stands for.
    pub head: FrameHead,
    /// 0 for a stream's message, [`HEADER`] for a frame.
    pub payload_at: usize,
}

impl Reader {
    /// Reads a binary message of `len` bytes from its first bytes `first`
    /// (its first [`HEADER`], or all of a shorter one). `None` for a stream
    /// header, which carries no bytes. After an error the channel's
    /// messages cannot be told apart any more: drop the channel.
    pub fn read(&mut self, first: &[u8], len: usize) -> Result<Option<Read>, FrameError> {
        if let Some((index, offset, total)) = self.stream {
            if len == 0 || len > MAX_MESSAGE {
                return Err(FrameError::BadStreamMessage(len));
            }
            let end = offset as u64 + len as u64;
            if end > total as u64 {
                return Err(FrameError::Overrun { end, total });
            }
            self.stream = (end < total as u64).then_some((index, end as u32, total));
            let head = FrameHead {
                kind: FrameKind::Chunk,
                index,
                offset,
                total,
                len: len as u32,
            };
            return Ok(Some(Read {
                head,
                payload_at: 0,
            }));
        }
        if first.first() == Some(&STREAM) {
            if len != HEADER || first.len() < HEADER {
                return Err(FrameError::BadStream);
            }
            let [index, offset, total] = header_words(first);
            if offset != 0 || total == 0 {
                return Err(FrameError::BadStream);
            }
            self.stream = Some((index, 0, total));
            return Ok(None);
        }
        let head = FrameHead::decode(first, len)?;
        Ok(Some(Read {
            head,
            payload_at: HEADER,
        }))
    }
}

/// Reassembles one object from its in-order frames.
#[derive(Debug)]
pub struct Assembly {
    total: u32,
    buf: Vec<u8>,
}

impl Assembly {
    /// Starts an object of `total` bytes; refuses sizes over `limit`.
    pub fn new(total: u32, limit: usize) -> Result<Self, FrameError> {
        if total as usize > limit {
            return Err(FrameError::Overrun {
                end: total as u64,
                total: limit as u32,
            });
        }
        Ok(Assembly {
            total,
            buf: Vec::with_capacity(total as usize),
        })
    }

    /// Adds the next frame; returns the whole object once complete.
    pub fn push(&mut self, frame: &Frame<'_>) -> Result<Option<Vec<u8>>, FrameError> {
        let expected = self.buf.len() as u32;
        if frame.offset != expected || frame.total != self.total {
            return Err(FrameError::OutOfOrder {
                expected,
                got: frame.offset,
            });
        }
        let end = frame.offset as u64 + frame.bytes.len() as u64;
        if end > self.total as u64 {
            return Err(FrameError::Overrun {
                end,
                total: self.total,
            });
        }
        self.buf.extend_from_slice(frame.bytes);
        if self.buf.len() as u32 == self.total {
            Ok(Some(std::mem::take(&mut self.buf)))
        } else {
            Ok(None)
        }
    }
}

/// Follows one object's in-order frames by their headers alone, for a
/// receiver that keeps the payloads elsewhere: the same checks as
/// [`Assembly`], without holding any bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    total: u32,
    next: u32,
}

impl Cursor {
    /// Starts an object of `total` bytes.
    pub fn new(total: u32) -> Self {
        Cursor { total, next: 0 }
    }

    /// Checks the next frame's header; true once the object is complete.
    pub fn advance(&mut self, head: &FrameHead) -> Result<bool, FrameError> {
        if head.offset != self.next || head.total != self.total {
            return Err(FrameError::OutOfOrder {
                expected: self.next,
                got: head.offset,
            });
        }
        let end = head.offset as u64 + head.len as u64;
        if end > self.total as u64 {
            return Err(FrameError::Overrun {
                end,
                total: self.total,
            });
        }
        self.next = end as u32;
        Ok(self.next == self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_assembly() {
        let object: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let frames: Vec<_> = Frame::encode_all(FrameKind::Chunk, 9, &object).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() <= MAX_FRAME));
        let first = Frame::decode(&frames[0]).unwrap();
        let mut asm = Assembly::new(first.total, 1 << 20).unwrap();
        let mut done = None;
        for f in &frames {
            let f = Frame::decode(f).unwrap();
            assert_eq!((f.kind, f.index), (FrameKind::Chunk, 9));
            done = asm.push(&f).unwrap();
        }
        assert_eq!(done.unwrap(), object);
    }

    #[test]
    fn empty_object_is_one_frame() {
        let frames: Vec<_> = Frame::encode_all(FrameKind::Manifest, 0, b"").collect();
        assert_eq!(frames.len(), 1);
        let f = Frame::decode(&frames[0]).unwrap();
        let mut asm = Assembly::new(f.total, 10).unwrap();
        assert_eq!(asm.push(&f).unwrap(), Some(vec![]));
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(Frame::decode(&[1; 5]), Err(FrameError::BadLength(5)));
        assert_eq!(
            Frame::decode(&[0; MAX_FRAME + 1]),
            Err(FrameError::BadLength(MAX_FRAME + 1))
        );
        assert_eq!(Frame::decode(&[7; HEADER]), Err(FrameError::BadKind(7)));
        let object = vec![1u8; 100_000];
        let frames: Vec<_> = Frame::encode_all(FrameKind::Chunk, 0, &object).collect();
        let mut asm = Assembly::new(100_000, 1 << 20).unwrap();
        let second = Frame::decode(&frames[1]).unwrap();
        assert!(matches!(
            asm.push(&second),
            Err(FrameError::OutOfOrder { .. })
        ));
        assert!(Assembly::new(100_000, 100).is_err());
    }

    #[test]
    fn cursor_follows_frames_by_header() {
        let object = vec![3u8; 150_000];
        let frames: Vec<_> = Frame::encode_all(FrameKind::Chunk, 2, &object).collect();
        let heads: Vec<FrameHead> = frames
            .iter()
            .map(|f| FrameHead::decode(&f[..HEADER], f.len()).unwrap())
            .collect();
        assert_eq!(heads[0], Frame::decode(&frames[0]).unwrap().head());
        let mut cursor = Cursor::new(150_000);
        assert_eq!(cursor.advance(&heads[0]), Ok(false));
        // Skipping a frame, or repeating one, is refused.
        assert!(matches!(
            cursor.clone().advance(&heads[2]),
            Err(FrameError::OutOfOrder { .. })
        ));
        assert!(matches!(
            cursor.clone().advance(&heads[0]),
            Err(FrameError::OutOfOrder { .. })
        ));
        assert_eq!(cursor.advance(&heads[1]), Ok(false));
        assert_eq!(cursor.advance(&heads[2]), Ok(true));
        // A header claiming more payload than the object has left.
        let mut short = Cursor::new(10);
        let long = FrameHead {
            len: 11,
            ..FrameHead::decode(&frames[0][..HEADER], HEADER + 11).unwrap()
        };
        assert!(matches!(
            short.advance(&FrameHead { total: 10, ..long }),
            Err(FrameError::Overrun { .. })
        ));
        assert_eq!(
            FrameHead::decode(&frames[0][..HEADER], 5),
            Err(FrameError::BadLength(5))
        );
    }

    #[test]
    fn a_reader_reads_frames_and_streams_alike() {
        let mut reader = Reader::default();
        // A framed manifest, then a chunk streamed in two messages, then a
        // framed chunk.
        let manifest = Frame::encode_at(FrameKind::Manifest, 0, &[7; 40], 0).0;
        let read = reader.read(&manifest[..HEADER], manifest.len()).unwrap();
        let read = read.expect("a frame");
        assert_eq!(read.payload_at, HEADER);
        assert_eq!((read.head.kind, read.head.len), (FrameKind::Manifest, 40));

        let total = MAX_MESSAGE + 1000;
        let header = Frame::stream_header(5, total);
        assert_eq!(reader.read(&header, HEADER), Ok(None));
        let payload = [9u8; HEADER];
        let first = reader.read(&payload, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(first.payload_at, 0);
        assert_eq!(
            first.head,
            FrameHead {
                kind: FrameKind::Chunk,
                index: 5,
                offset: 0,
                total: total as u32,
                len: MAX_MESSAGE as u32,
            }
        );
        let second = reader.read(&payload, 1000).unwrap().unwrap();
        assert_eq!(
            (second.head.offset, second.head.len),
            (MAX_MESSAGE as u32, 1000)
        );
        let mut cursor = Cursor::new(total as u32);
        assert_eq!(cursor.advance(&first.head), Ok(false));
        assert_eq!(cursor.advance(&second.head), Ok(true));

        // The stream is over: the next message is read as a frame again.
        let chunk = Frame::encode_at(FrameKind::Chunk, 6, &[1; 10], 0).0;
        let read = reader.read(&chunk[..HEADER], chunk.len()).unwrap().unwrap();
        assert_eq!((read.head.index, read.payload_at), (6, HEADER));
    }

    #[test]
    fn a_reader_refuses_bad_streams() {
        let mut header = Frame::stream_header(1, 100);
        // A stream message longer than what is left of the chunk.
        let mut reader = Reader::default();
        reader.read(&header, HEADER).unwrap();
        assert_eq!(
            reader.read(&[0; HEADER], 101),
            Err(FrameError::Overrun {
                end: 101,
                total: 100
            })
        );
        // Too long, or empty.
        let mut reader = Reader::default();
        reader.read(&header, HEADER).unwrap();
        assert_eq!(
            reader.clone().read(&[], 0),
            Err(FrameError::BadStreamMessage(0))
        );
        let big = Frame::stream_header(1, 2 * MAX_MESSAGE);
        let mut reader = Reader::default();
        reader.read(&big, HEADER).unwrap();
        assert_eq!(
            reader.read(&[0; HEADER], MAX_MESSAGE + 1),
            Err(FrameError::BadStreamMessage(MAX_MESSAGE + 1))
        );
        // A header with bytes after it, not at offset 0, or empty.
        assert_eq!(
            Reader::default().read(&header, HEADER + 1),
            Err(FrameError::BadStream)
        );
        header[5..9].copy_from_slice(&4u32.to_be_bytes());
        assert_eq!(
            Reader::default().read(&header, HEADER),
            Err(FrameError::BadStream)
        );
        let empty = Frame::stream_header(1, 0);
        assert_eq!(
            Reader::default().read(&empty, HEADER),
            Err(FrameError::BadStream)
        );
        assert_eq!(
            Reader::default().read(&empty[..4], 4),
            Err(FrameError::BadStream)
        );
    }

    #[test]
    fn requests_are_small_json() {
        let r = Request::Chunks {
            content: ContentId([1; 32]),
            indices: vec![0, 1, 2],
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
    }
}
