//! [`ReadCap`]: a stream whose reads return at most a fixed number of bytes.
//!
//! Why: fastwebsockets reads into one `BytesMut` and reserves room for each frame; when
//! that buffer is full and less than half of it is consumed, `bytes` doubles it instead of
//! moving the rest down, and a buffer never shrinks. Under a burst each read takes all the
//! kernel has queued (megabytes), so the buffer doubled step by step to 64 MiB (heaptrack,
//! Zoom sending as fast as the socket takes: 14 doublings, 67 MiB of a 292 MiB heap
//! peak). With reads of at most [`WS_READ_CHUNK`] the buffer holds little more than one
//! read and stays a few hundred KiB, whatever the burst. Writes pass through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest read the WebSocket reader asks for (40 frames of the realistic mix).
pub const WS_READ_CHUNK: usize = 64 << 10;

/// `inner`, with each read returning at most `max` bytes.
pub struct ReadCap<S> {
    inner: S,
    max: usize,
}

impl<S> ReadCap<S> {
    pub fn new(inner: S, max: usize) -> ReadCap<S> {
        ReadCap {
            inner,
            max: max.max(1),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadCap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() <= self.max {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let max = self.max;
        let mut part = buf.take(max);
        let before = part.filled().as_ptr();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut part))?;
        // The inner stream must have filled `part` in place (it cannot swap the buffer).
        debug_assert_eq!(before, part.filled().as_ptr());
        let n = part.filled().len();
        // SAFETY: the first `n` bytes of `buf`'s unfilled part were just written through
        // `part`, which borrows that same memory.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadCap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_return_at_most_the_cap_and_every_byte_arrives_in_order() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.shutdown().await.unwrap();
        });
        // Let the writer queue everything first, so that an uncapped read would take it all.
        writer.await.unwrap();
        let mut r = ReadCap::new(b, 4096);
        let mut got = bytes::BytesMut::with_capacity(1 << 20);
        let mut largest = 0;
        loop {
            let n = r.read_buf(&mut got).await.unwrap();
            if n == 0 {
                break;
            }
            largest = largest.max(n);
        }
        assert_eq!(largest, 4096);
        assert_eq!(&got[..], &data[..]);
    }
}
