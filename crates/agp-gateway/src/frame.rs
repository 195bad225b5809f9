//! Newline-delimited JSON framing with a hard cap on frame size.
//!
//! The cap is enforced while reading: a reader never buffers more than [`MAX_FRAME_BYTES`] of one
//! frame, so a peer cannot make the other side allocate without bound by never sending a newline.

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame payload (the JSON text, excluding the terminating `\n`), in bytes: 1 MiB.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("gateway I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Serializes `message` as one frame (JSON plus `\n`), refusing frames over the cap.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    encode_with_limit(message, MAX_FRAME_BYTES)
}

pub fn encode_with_limit<T: Serialize>(message: &T, limit: usize) -> Result<Vec<u8>, FrameError> {
    // serde_json escapes control characters inside strings, so the only raw newline in the
    // output is the terminator added here.
    let mut bytes =
        serde_json::to_vec(message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if bytes.len() > limit {
        return Err(FrameError::TooLarge { limit });
    }
    bytes.push(b'\n');
    Ok(bytes)
}

/// Parses one frame payload (without its `\n`).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))
}

pub fn write_frame<W: Write, T: Serialize>(writer: &mut W, message: &T) -> Result<(), FrameError> {
    let bytes = encode(message)?;
    writer.write_all(&bytes)?;
    writer.flush()?;
    Ok(())
}

/// How far one chunk of buffered input took the frame being read (see [`take_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStep {
    /// Bytes to consume from the reader's buffer (the payload taken, plus the `\n` if any).
    pub consume: usize,
    /// The `\n` was found: the frame is complete.
    pub complete: bool,
}

/// The scanning step of every frame reader (the blocking [`FrameReader`] and the daemon's async
/// one): appends to `frame` the part of `available` up to the first `\n`, and says how much to
/// consume and whether the frame is complete. Refuses with `TooLarge`, before appending anything,
/// once the frame would exceed `limit`: so no reader ever buffers more than `limit` bytes of one
/// frame, whatever the peer sends.
pub fn take_chunk(
    frame: &mut Vec<u8>,
    available: &[u8],
    limit: usize,
) -> Result<ChunkStep, FrameError> {
    let (take, complete) = match available.iter().position(|&b| b == b'\n') {
        Some(i) => (i, true),
        None => (available.len(), false),
    };
    if frame.len() + take > limit {
        return Err(FrameError::TooLarge { limit });
    }
    frame.extend_from_slice(&available[..take]);
    Ok(ChunkStep {
        consume: if complete { take + 1 } else { take },
        complete,
    })
}

/// Reads frames from a buffered byte stream.
pub struct FrameReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_FRAME_BYTES)
    }

    pub fn with_limit(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buf: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next frame's payload, or `None` at a clean end of stream (between frames).
    ///
    /// After an error the stream position is unspecified: the caller must drop the connection.
    pub fn read_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        self.buf.clear();
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            let step = take_chunk(&mut self.buf, available, self.limit)?;
            self.inner.consume(step.consume);
            if step.complete {
                return Ok(Some(&self.buf));
            }
        }
    }

    /// Reads and parses the next frame; `None` at a clean end of stream.
    pub fn read_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        match self.read_frame()? {
            Some(payload) => decode(payload).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    #[test]
    fn take_chunk_appends_up_to_the_newline_and_refuses_before_appending_past_the_limit() {
        // (chunk, bytes consumed, frame complete); the frame so far is `ab`, the limit 4.
        for (chunk, consume, complete) in [(&b"cd\nef"[..], 3, true), (b"cd", 2, false)] {
            let mut frame = b"ab".to_vec();
            let step = take_chunk(&mut frame, chunk, 4).unwrap();
            assert_eq!(step, ChunkStep { consume, complete }, "{chunk:?}");
            assert_eq!(frame, b"abcd", "{chunk:?}");
        }

        let mut frame = b"ab".to_vec();
        assert!(matches!(
            take_chunk(&mut frame, b"cde\n", 4),
            Err(FrameError::TooLarge { limit: 4 })
        ));
        assert_eq!(frame, b"ab", "nothing is appended past the limit");
    }

    #[test]
    fn splits_frames_and_reports_clean_eof() {
        let mut r = FrameReader::new(Cursor::new(b"{\"a\":1}\n{\"b\":2}\n".to_vec()));
        assert_eq!(r.read_frame().unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.read_frame().unwrap().unwrap(), b"{\"b\":2}");
        assert!(r.read_frame().unwrap().is_none());
    }

    #[test]
    fn partial_frame_at_eof_is_truncated() {
        let mut r = FrameReader::new(Cursor::new(b"{\"a\":1}\n{\"b\"".to_vec()));
        r.read_frame().unwrap();
        assert!(matches!(r.read_frame(), Err(FrameError::Truncated)));
    }

    #[test]
    fn cap_counts_bytes_not_chars() {
        // 3 chars of 4 bytes each: 12 bytes; a 10-byte cap must refuse it.
        let line = "\u{1F600}\u{1F600}\u{1F600}\n".as_bytes().to_vec();
        let mut r = FrameReader::with_limit(Cursor::new(line.clone()), 10);
        assert!(matches!(
            r.read_frame(),
            Err(FrameError::TooLarge { limit: 10 })
        ));
        let mut r = FrameReader::with_limit(Cursor::new(line), 12);
        assert_eq!(r.read_frame().unwrap().unwrap().len(), 12);
    }

    /// A reader that yields an endless stream without a newline and counts what was pulled.
    struct Endless {
        pulled: usize,
    }
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(b'a');
            self.pulled += buf.len();
            Ok(buf.len())
        }
    }

    #[test]
    fn oversize_frame_is_refused_without_buffering_past_the_cap() {
        let mut r = FrameReader::with_limit(
            BufReader::with_capacity(4096, Endless { pulled: 0 }),
            64 * 1024,
        );
        assert!(matches!(r.read_frame(), Err(FrameError::TooLarge { .. })));
        assert!(r.buf.len() <= 64 * 1024);
        // At most one read buffer past the cap was pulled from the peer.
        assert!(r.get_ref().get_ref().pulled <= 64 * 1024 + 4096);
    }

    #[test]
    fn exactly_the_cap_is_accepted_one_more_byte_is_not() {
        let mut ok = vec![b'x'; MAX_FRAME_BYTES];
        ok.push(b'\n');
        let mut r = FrameReader::new(Cursor::new(ok));
        assert_eq!(r.read_frame().unwrap().unwrap().len(), MAX_FRAME_BYTES);
        let mut bad = vec![b'x'; MAX_FRAME_BYTES + 1];
        bad.push(b'\n');
        let mut r = FrameReader::new(Cursor::new(bad));
        assert!(matches!(r.read_frame(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn encoder_refuses_oversize_and_never_embeds_raw_newlines() {
        let big = "y".repeat(MAX_FRAME_BYTES);
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
        let bytes = encode(&"line1\nline2").unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(*bytes.last().unwrap(), b'\n');
    }

    #[test]
    fn malformed_json_is_an_error() {
        let mut r = FrameReader::new(Cursor::new(b"{not json\n".to_vec()));
        assert!(matches!(
            r.read_message::<serde_json::Value>(),
            Err(FrameError::Malformed(_))
        ));
    }
}
