//! Async counterpart of `agp_gateway::FrameReader`: the same cap, enforced before buffering by
//! the same scanning step (`agp_gateway::take_chunk`).

use agp_gateway::{take_chunk, FrameError, MAX_FRAME_BYTES};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

pub struct AsyncFrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> AsyncFrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// Completes when the peer closes (or the connection fails) while no frame is expected.
    /// Data arriving instead (a pipelined frame) stays buffered for `read_frame`, and this
    /// never completes. Cancel-safe.
    pub async fn peer_closed(&mut self) {
        match self.inner.fill_buf().await {
            Ok(data) if !data.is_empty() => std::future::pending().await,
            _ => {}
        }
    }

    /// The next frame's payload (without `\n`), `None` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        self.buf.clear();
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            let step = take_chunk(&mut self.buf, available, MAX_FRAME_BYTES)?;
            self.inner.consume(step.consume);
            if step.complete {
                return Ok(Some(&self.buf));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_and_splits_like_the_blocking_reader() {
        let data = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
        let mut r = AsyncFrameReader::new(tokio::io::BufReader::new(&data[..]));
        assert_eq!(r.read_frame().await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.read_frame().await.unwrap().unwrap(), b"{\"b\":2}");
        assert!(r.read_frame().await.unwrap().is_none());

        let big = vec![b'x'; MAX_FRAME_BYTES + 10];
        let mut r = AsyncFrameReader::new(tokio::io::BufReader::new(&big[..]));
        assert!(matches!(
            r.read_frame().await,
            Err(FrameError::TooLarge { .. })
        ));

        let partial = b"{\"a\"".to_vec();
        let mut r = AsyncFrameReader::new(tokio::io::BufReader::new(&partial[..]));
        assert!(matches!(r.read_frame().await, Err(FrameError::Truncated)));
    }
}
