//! Socket reads for many connections that are mostly idle.
//!
//! The WebSocket reads through a small buffer (see [`crate::upgrade`]) so
//! that an idle peer costs little; under load that alone would mean a
//! system call per few hundred bytes. [`ReadAhead`] reads whatever the
//! socket has, up to 64 KiB, into a per-thread scratch buffer, hands the
//! caller what fits, and keeps the rest in a per-connection spill that is
//! freed as soon as it is drained: busy connections read in big gulps,
//! idle ones hold no buffer at all.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Wraps a stream's reads as described in the module docs; writes pass
/// through.
pub struct ReadAhead<T> {
    inner: T,
    spill: Vec<u8>,
    at: usize,
}

impl<T> ReadAhead<T> {
    /// Reads `inner` ahead.
    pub fn new(inner: T) -> Self {
        ReadAhead {
            inner,
            spill: Vec::new(),
            at: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.spill.len() {
            let n = (this.spill.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.spill[this.at..this.at + n]);
            this.at += n;
            if this.at == this.spill.len() {
                this.spill = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_LEN {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut ahead = ReadBuf::new(scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
            let got = ahead.filled();
            let n = got.len().min(buf.remaining());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.spill = got[n..].to_vec();
                this.at = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_the_spill_is_freed() {
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&sent).await.unwrap();
        drop(tx);
        let mut rx = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 300];
        loop {
            let n = rx.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(rx.spill.capacity(), 0, "a drained spill must be freed");
    }
}
