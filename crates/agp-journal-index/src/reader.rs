//! Reading `entries.jsonl` from a byte offset, whole lines only, in bounded memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use agp_journal::merkle::Hash;
use agp_journal::verify::MAX_LINE;
use sha2::{Digest as _, Sha256};

use crate::IndexError;

/// What the next read found.
pub enum Next {
    /// A whole line: its length without the newline, its leaf hash; its bytes are in the buffer
    /// unless it was longer than `MAX_LINE` (then the buffer is empty).
    Line { len: u64, leaf: Hash, held: bool },
    /// End of file, or bytes without a newline yet (a line being written, or torn).
    End,
}

pub struct Lines {
    r: BufReader<File>,
    /// Offset of the next unread byte.
    pub offset: u64,
}

/// Opens the journal's lines without following a link to a FIFO or device into a hang.
pub fn open(path: &Path) -> Result<Option<(File, std::fs::Metadata)>, IndexError> {
    let io = |e| IndexError::io("cannot open", path, e);
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(IndexError::NotAJournal(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(Some((f, meta)))
}

/// The file's identity: a journal replaced by another file (same name) is another journal.
pub fn identity(meta: &std::fs::Metadata) -> String {
    format!("{}:{}", meta.dev(), meta.ino())
}

impl Lines {
    pub fn at(file: File, offset: u64, path: &Path) -> Result<Self, IndexError> {
        let mut r = BufReader::with_capacity(1 << 20, file);
        r.seek(SeekFrom::Start(offset))
            .map_err(|e| IndexError::io("cannot seek in", path, e))?;
        Ok(Self { r, offset })
    }

    /// Reads the next line into `buf`. A line longer than `MAX_LINE` is hashed as it streams
    /// by and not held, so a hostile file cannot make the index hold more than that.
    pub fn next(&mut self, buf: &mut Vec<u8>, path: &Path) -> Result<Next, IndexError> {
        let io = |e| IndexError::io("cannot read", path, e);
        buf.clear();
        let mut hasher: Option<Sha256> = None;
        let mut total = 0u64;
        loop {
            let chunk = self.r.fill_buf().map_err(io)?;
            if chunk.is_empty() {
                // No newline before the end: leave the partial line for a later catch-up and
                // put the reader back where the line began.
                self.r.seek(SeekFrom::Start(self.offset)).map_err(io)?;
                buf.clear();
                return Ok(Next::End);
            }
            let (part, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            let n = part.len();
            total += n as u64;
            match hasher.as_mut() {
                Some(h) => h.update(part),
                None if buf.len() + n > MAX_LINE => {
                    let mut h = Sha256::new();
                    h.update([0u8]);
                    h.update(&buf[..]);
                    h.update(part);
                    buf.clear();
                    hasher = Some(h);
                }
                None => buf.extend_from_slice(part),
            }
            self.r.consume(n + usize::from(done));
            if done {
                self.offset += total + 1;
                return Ok(match hasher {
                    Some(h) => Next::Line {
                        len: total,
                        leaf: h.finalize().into(),
                        held: false,
                    },
                    None => Next::Line {
                        len: total,
                        leaf: agp_journal::merkle::leaf_hash(buf),
                        held: true,
                    },
                });
            }
        }
    }
}

/// The `len` bytes at `off` followed by a newline, or `None` when the file no longer holds
/// them (it was cut back).
pub fn read_at(file: &File, off: u64, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt as _;
    let Ok(n) = usize::try_from(len) else {
        return Ok(None);
    };
    if n > MAX_LINE {
        return Ok(None);
    }
    let mut buf = vec![0u8; n + 1];
    let mut got = 0;
    while got < buf.len() {
        let r = file.read_at(&mut buf[got..], off + got as u64)?;
        if r == 0 {
            return Ok(None);
        }
        got += r;
    }
    if buf.pop() != Some(b'\n') {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Reads a small file (the checkpoint) without hanging on a FIFO and without holding more
/// than `max` bytes.
pub fn read_small(path: &Path, max: u64) -> Result<Option<Vec<u8>>, IndexError> {
    let Some((f, meta)) = open(path)? else {
        return Ok(None);
    };
    if meta.len() > max {
        return Err(IndexError::NotAJournal(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    let mut out = Vec::new();
    f.take(max)
        .read_to_end(&mut out)
        .map_err(|e| IndexError::io("cannot read", path, e))?;
    Ok(Some(out))
}
