//! Bounded readers for the two streams: entry lines and concatenated checkpoint notes.

use super::*;

/// Longest line the verifier holds in memory (and the writer writes). Longer lines are hashed
/// as they stream by and reported, so a hostile file cannot make memory grow.
pub const MAX_LINE: usize = 16 << 20;

pub(super) enum Line {
    Eof,
    /// `buf` holds a complete line (without its newline).
    Complete,
    /// A last line without a newline, of this many bytes.
    Torn(u64),
    /// A complete line longer than `MAX_LINE`: its length and leaf hash.
    TooLong {
        len: u64,
        leaf: Hash,
    },
}

pub(super) fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    use sha2::{Digest, Sha256};
    buf.clear();
    let mut total: u64 = 0;
    let mut hasher: Option<Sha256> = None;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if total == 0 {
                Line::Eof
            } else {
                Line::Torn(total)
            });
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        total += part.len() as u64;
        if hasher.is_none() && buf.len() + part.len() > MAX_LINE {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&*buf);
            buf.clear();
            hasher = Some(h);
        }
        match &mut hasher {
            Some(h) => h.update(part),
            None => buf.extend_from_slice(part),
        }
        let used = done.unwrap_or(part.len());
        r.consume(used);
        if done.is_some() {
            return Ok(match hasher {
                None => Line::Complete,
                Some(h) => Line::TooLong {
                    len: total,
                    leaf: h.finalize().into(),
                },
            });
        }
    }
}

pub(super) fn parse_checkpoint_unverified(note: &[u8]) -> Result<Checkpoint, String> {
    let parsed = parse_note(note).map_err(|e| e.to_string())?;
    Checkpoint::parse_text(parsed.text).map_err(|e| e.to_string())
}

pub(super) enum NoteItem {
    Note(Vec<u8>),
    Torn(Vec<u8>),
}

/// Splits concatenated signed notes: text lines up to a blank line, then signature lines (each
/// starting with an em dash) up to the next line that does not.
pub(super) struct NoteReader<R> {
    r: R,
    peeked: Option<Vec<u8>>,
    pub(super) good_len: u64,
}

impl NoteReader<Box<dyn BufRead>> {
    pub(super) fn new<C: BufRead + 'static>(r: C) -> Self {
        NoteReader {
            r: Box::new(r),
            peeked: None,
            good_len: 0,
        }
    }
}

impl<R: BufRead> NoteReader<R> {
    pub(super) fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if let Some(l) = self.peeked.take() {
            return Ok(Some(l));
        }
        let mut l = Vec::new();
        if self.r.read_until(b'\n', &mut l)? == 0 {
            return Ok(None);
        }
        Ok(Some(l))
    }

    pub(super) fn next_note(&mut self) -> std::io::Result<Option<NoteItem>> {
        let mut note = Vec::new();
        // Text lines, up to and including the blank separator line.
        loop {
            match self.line()? {
                None if note.is_empty() => return Ok(None),
                None => return Ok(Some(NoteItem::Torn(note))),
                Some(l) => {
                    let complete = l.ends_with(b"\n");
                    let blank = l == b"\n";
                    note.extend_from_slice(&l);
                    if !complete {
                        return Ok(Some(NoteItem::Torn(note)));
                    }
                    if blank {
                        break;
                    }
                }
            }
        }
        let mut sigs = 0;
        loop {
            match self.line()? {
                None => break,
                Some(l) if l.starts_with(SIG_PREFIX.as_bytes()) => {
                    let complete = l.ends_with(b"\n");
                    note.extend_from_slice(&l);
                    if !complete {
                        return Ok(Some(NoteItem::Torn(note)));
                    }
                    sigs += 1;
                }
                Some(l) => {
                    self.peeked = Some(l);
                    break;
                }
            }
        }
        // A text block with no signatures in the middle of the file is handed on as a note so
        // the parser reports it as malformed; at the end of the file it is a torn write.
        if sigs == 0 && self.peeked.is_none() {
            return Ok(Some(NoteItem::Torn(note)));
        }
        self.good_len += note.len() as u64;
        Ok(Some(NoteItem::Note(note)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_hashes_oversized_lines_without_holding_them() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut data = b"{}\n".to_vec();
        data.extend_from_slice(&long);
        data.extend_from_slice(b"\nab");
        let mut r = std::io::BufReader::with_capacity(4096, std::io::Cursor::new(data));
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"{}");
        match read_line(&mut r, &mut buf).unwrap() {
            Line::TooLong { len, leaf } => {
                assert_eq!(len as usize, long.len());
                assert_eq!(leaf, leaf_hash(&long));
            }
            _ => panic!("expected an oversized line"),
        }
        assert!(buf.capacity() <= 2 * MAX_LINE);
        assert!(matches!(
            read_line(&mut r, &mut buf).unwrap(),
            Line::Torn(2)
        ));
        assert!(matches!(read_line(&mut r, &mut buf).unwrap(), Line::Eof));
    }

    #[test]
    fn note_reader_splits_concatenated_notes_and_spots_a_torn_end() {
        let one = "o\n1\nAA==\n\n\u{2014} o abc\n";
        let two = "o\n2\nAA==\n\n\u{2014} o abc\n\u{2014} w def\n";
        let data = format!("{one}{two}o\n3\n");
        let mut r = NoteReader::new(std::io::Cursor::new(data.into_bytes()));
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Note(n)) if n == one.as_bytes()));
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Note(n)) if n == two.as_bytes()));
        assert_eq!(r.good_len as usize, one.len() + two.len());
        assert!(matches!(r.next_note().unwrap(), Some(NoteItem::Torn(_))));
        assert!(r.next_note().unwrap().is_none());
    }
}
