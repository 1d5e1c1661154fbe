//! Just enough of a WebSocket client (RFC 6455) to load a signaling server.
//!
//! The generator must cost far less per message than any server it
//! measures, or every server would look as fast as the generator. So
//! frames are parsed in place from one read buffer, and outgoing frames
//! are masked with the all-zero key (valid, and XOR with zero is a no-op)
//! and batched into one write.

use std::net::SocketAddr;
use std::ops::Range;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Close frame opcode.
pub const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// One client connection after the upgrade.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out as frames.
    consumed: usize,
    out: Vec<u8>,
}

impl Conn {
    /// Connects and upgrades `path` on `addr`.
    pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Conn> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > 16 * 1024 || stream.read_buf(&mut buf).await? == 0 {
                bail!("{addr}{path}: connection closed during the upgrade");
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let head = String::from_utf8_lossy(&buf[..end]);
            bail!(
                "{addr}{path}: upgrade refused: {}",
                head.lines().next().unwrap_or("")
            );
        }
        buf.drain(..end);
        Ok(Conn {
            stream,
            buf,
            consumed: 0,
            out: Vec::with_capacity(4096),
        })
    }

    /// Reads once from the socket and appends every complete frame as
    /// `(opcode, payload range)`; ranges are valid until the next `read`.
    /// Returns `false` at end of stream.
    pub async fn read(&mut self, frames: &mut Vec<(u8, Range<usize>)>) -> anyhow::Result<bool> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        // Frames left over from the upgrade response come first.
        if !self.parse(frames) {
            self.buf.reserve(16 * 1024);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
            self.parse(frames);
        }
        Ok(true)
    }

    /// Parses complete frames after `consumed`; whether any were found.
    fn parse(&mut self, frames: &mut Vec<(u8, Range<usize>)>) -> bool {
        let before = frames.len();
        loop {
            let b = &self.buf[self.consumed..];
            if b.len() < 2 {
                break;
            }
            let (len, header) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (
                    u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if b.len() < header + len {
                break;
            }
            let start = self.consumed + header;
            frames.push((b[0] & 0x0f, start..start + len));
            self.consumed = start + len;
        }
        frames.len() > before
    }

    /// The bytes of a frame returned by the last [`Conn::read`].
    pub fn payload(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Queues a text frame made of `parts`.
    pub fn queue_text(&mut self, parts: &[&[u8]]) {
        let len = parts.iter().map(|p| p.len()).sum();
        self.queue(TEXT, len);
        for part in parts {
            self.out.extend_from_slice(part);
        }
    }

    /// Queues the answer to a server's ping.
    pub fn queue_pong(&mut self, payload: Range<usize>) {
        self.queue(PONG, payload.len());
        let Conn { buf, out, .. } = self;
        out.extend_from_slice(&buf[payload]);
    }

    fn queue(&mut self, opcode: u8, len: usize) {
        self.out.push(0x80 | opcode);
        match len {
            0..=125 => self.out.push(0x80 | len as u8),
            126..=0xffff => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&[0; 4]);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}
