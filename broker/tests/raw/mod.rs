//! Raw HTTP/1.1 over real TCP sockets, for tests that need control over
//! every byte and over the client's source address: half-sent requests,
//! kept-alive connections, binary bodies, clients on 127.0.0.2.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// Longest wait for anything that must happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A connection to `broker` from the loopback address `from` (any of
/// 127.0.0.0/8 is this machine, each a different client address).
pub async fn connect_from(from: &str, broker: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket.connect(broker).await.expect("connect")
}

/// One response read off a kept-alive connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` with `headers` on `stream` (kept alive) and reads
/// the response, whose length must be given by `content-length`.
pub async fn request(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: broker.test\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
    timeout(WAIT, read_response(stream, method == "HEAD"))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response within {WAIT:?}"))
}

async fn read_response(stream: &mut TcpStream, head_only: bool) -> Response {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the blank line, so that nothing of the body (or
    // of a next response) is consumed with the head.
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read response head");
        assert!(n == 1, "connection closed inside a response head: {raw:?}");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).expect("UTF-8 head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let mut response = Response {
        status,
        head,
        body: Vec::new(),
    };
    let length: usize = response
        .header("content-length")
        .map(|v| v.parse().expect("content-length"))
        .unwrap_or(0);
    if !head_only && status != 304 {
        response.body = vec![0; length];
        stream
            .read_exact(&mut response.body)
            .await
            .expect("read body");
    }
    response
}

/// Reads until the broker closes the connection (EOF or reset); what it
/// sent, and how long that took. Panics if it stays open for [`WAIT`].
pub async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => panic!("the connection is still open after {WAIT:?}"),
            Ok(Ok(0) | Err(_)) => return (got, start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}
