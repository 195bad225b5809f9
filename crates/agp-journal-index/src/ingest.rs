//! `catch_up`: index what was appended since, or everything again when the journal is not the
//! one indexed any more.

use std::fs::File;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::reader::{self, Lines, Next};
use crate::{
    checkpoint, fold, schema, CatchUp, IndexError, JournalIndex, BATCH_BYTES, BATCH_LINES,
};
use agp_journal::merkle::Frontier;

/// Where a line is and what it hashes to: enough to tell whether the file still holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    off: u64,
    len: u64,
    leaf: [u8; 32],
}

impl Mark {
    fn to_bytes(self) -> Vec<u8> {
        let mut v = self.off.to_be_bytes().to_vec();
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.leaf);
        v
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let (off, rest) = b.split_first_chunk::<8>()?;
        let (len, leaf) = rest.split_first_chunk::<8>()?;
        Some(Self {
            off: u64::from_be_bytes(*off),
            len: u64::from_be_bytes(*len),
            leaf: leaf.try_into().ok()?,
        })
    }

    /// Whether `file` still holds this line.
    fn holds(self, file: &File) -> std::io::Result<bool> {
        Ok(reader::read_at(file, self.off, self.len)?
            .is_some_and(|line| agp_journal::merkle::leaf_hash(&line) == self.leaf))
    }
}

/// How far the index has read, as recorded in the index file.
#[derive(Debug, Default)]
struct Progress {
    format: Option<i64>,
    offset: u64,
    next_seq: u64,
    identity: Option<String>,
    first: Option<Mark>,
    last: Option<Mark>,
    frontier: Frontier,
}

impl Progress {
    fn load(conn: &Connection) -> Result<Self, IndexError> {
        let mark = |k| -> Result<Option<Mark>, IndexError> {
            Ok(schema::get::<Vec<u8>>(conn, k)?.and_then(|b| Mark::from_bytes(&b)))
        };
        let frontier = schema::get::<Vec<u8>>(conn, "frontier")?;
        let mut p = Self {
            format: schema::get(conn, "format")?,
            offset: schema::get::<i64>(conn, "offset")?.unwrap_or(0) as u64,
            next_seq: schema::get::<i64>(conn, "next_seq")?.unwrap_or(0) as u64,
            identity: schema::get(conn, "identity")?,
            first: mark("first")?,
            last: mark("last")?,
            frontier: Frontier::default(),
        };
        match frontier.map(|b| Frontier::from_bytes(&b)) {
            Some(Some(f)) => p.frontier = f,
            // A damaged record: the format check below sends it to a rebuild.
            Some(None) => p.format = None,
            None => {}
        }
        Ok(p)
    }

    fn save(&self, conn: &Connection) -> Result<(), IndexError> {
        schema::set(conn, "offset", self.offset as i64)?;
        schema::set(conn, "next_seq", self.next_seq as i64)?;
        schema::set(conn, "identity", self.identity.as_deref())?;
        schema::set(conn, "first", self.first.map(Mark::to_bytes))?;
        schema::set(conn, "last", self.last.map(Mark::to_bytes))?;
        schema::set(conn, "frontier", self.frontier.to_bytes())?;
        Ok(())
    }

    /// Why what was indexed is not a prefix of this file any more, if it is not.
    fn stale(&self, file: &File, meta: &std::fs::Metadata) -> Result<Option<String>, IndexError> {
        if self.format != Some(schema::FORMAT) {
            return Ok(Some(format!(
                "the index was of another format (index format {})",
                schema::FORMAT
            )));
        }
        if self.next_seq == 0 {
            return Ok(None);
        }
        if self.identity.as_deref() != Some(reader::identity(meta).as_str()) {
            return Ok(Some("entries.jsonl was replaced by another file".into()));
        }
        if meta.len() < self.offset {
            return Ok(Some(format!(
                "the journal was cut back to {} bytes (the index had read {})",
                meta.len(),
                self.offset
            )));
        }
        let io = |e| IndexError::NotAJournal(format!("cannot re-read a journal line: {e}"));
        if let Some(m) = self.first {
            if !m.holds(file).map_err(io)? {
                return Ok(Some(
                    "the journal was rewritten (its first line differs)".into(),
                ));
            }
        }
        if let Some(m) = self.last {
            if !m.holds(file).map_err(io)? {
                return Ok(Some(format!(
                    "the journal was rewritten (line {} differs from the one indexed)",
                    self.next_seq - 1
                )));
            }
        }
        Ok(None)
    }
}

impl JournalIndex {
    /// Indexes the lines appended since the last catch-up (whole lines only), or the whole
    /// journal again when it was cut back, rewritten or replaced; then re-reads the checkpoint.
    pub fn catch_up(&self) -> Result<CatchUp, IndexError> {
        let mut conn = self.writer()?;
        let path = &self.entries_path;
        // Sizes a checkpoint names are where the tree's root is worth keeping.
        let cp_size = checkpoint::peek_size(&self.journal_dir);
        let mut rebuilt: Option<String> = None;
        let mut new_entries = 0;
        let mut buf = Vec::new();
        let (entries, bytes, file_len) = loop {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut p = Progress::load(&tx)?;
            let Some((file, meta)) = reader::open(path)? else {
                if p.next_seq > 0 {
                    rebuilt.get_or_insert_with(|| "entries.jsonl is gone".into());
                }
                if p.format != Some(schema::FORMAT) || p.next_seq > 0 {
                    schema::reset(&tx)?;
                }
                tx.commit()?;
                break (0, 0, 0);
            };
            let stale = p.stale(&file, &meta)?;
            let reset = stale.is_some();
            if let Some(why) = stale {
                // A fresh index file is "of another format" too, but nothing was rebuilt.
                if p.format.is_some() || p.next_seq > 0 {
                    rebuilt.get_or_insert(why);
                }
                schema::reset(&tx)?;
                p = Progress {
                    format: Some(schema::FORMAT),
                    ..Progress::default()
                };
            }
            p.identity = Some(reader::identity(&meta));
            let mut lines = Lines::at(file, p.offset, path)?;
            let (mut n, mut read, mut at_end) = (0u64, 0u64, false);
            while n < BATCH_LINES && read < BATCH_BYTES {
                let Next::Line { len, leaf, held } = lines.next(&mut buf, path)? else {
                    at_end = true;
                    break;
                };
                let seq = p.next_seq;
                let off = lines.offset - len - 1;
                tx.prepare_cached(
                    "INSERT INTO entries (seq, off, len, leaf) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    seq as i64,
                    off as i64,
                    len as i64,
                    &leaf[..]
                ])?;
                let bytes = held.then_some(buf.as_slice());
                fold::apply(&tx, &fold::Line { seq, bytes })?;
                let mark = Mark { off, len, leaf };
                p.first.get_or_insert(mark);
                p.last = Some(mark);
                p.next_seq += 1;
                p.frontier.push(leaf);
                if Some(p.frontier.size()) == cp_size {
                    keep_root(&tx, &p.frontier)?;
                }
                n += 1;
                read += len + 1;
            }
            if n > 0 || reset {
                p.offset = lines.offset;
                keep_root(&tx, &p.frontier)?;
                p.save(&tx)?;
                tx.commit()?;
            }
            // Nothing new: the transaction is dropped unwritten (opening the console writes
            // nothing to the index when the journal did not grow).
            new_entries += n;
            if at_end {
                break (p.next_seq, p.offset, meta.len());
            }
        };
        checkpoint::refresh(&conn, &self.journal_dir, entries)?;
        Ok(CatchUp {
            rebuilt,
            new_entries,
            entries,
            bytes,
            partial_tail_bytes: file_len.saturating_sub(bytes),
        })
    }
}

fn keep_root(conn: &Connection, f: &Frontier) -> Result<(), IndexError> {
    conn.prepare_cached("INSERT OR REPLACE INTO roots (size, root) VALUES (?1, ?2)")?
        .execute(params![f.size() as i64, &f.root()[..]])?;
    Ok(())
}
