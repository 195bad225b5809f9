//! Team mode: every checkpoint this daemon's journal writes is published to the shared
//! database (`published_checkpoints`), so that `agp verify --team` can later tell whether this
//! member's journal still extends everything it once vouched for.
//!
//! It runs on a thread of its own (with a small runtime and its own two connections), tailing
//! the journal's append-only `checkpoints` file like any reader: it never sits between a call
//! and its answer, and a slow or absent database only delays publication. The file is the
//! queue: nothing is dropped while PostgreSQL is down, publication resumes from the file on
//! reconnect, and a restarted daemon resumes after the largest size it published (asked of the
//! database). Checkpoints read but not yet accepted stay in memory (bounded; reading pauses
//! when the bound is reached, the rest waits in the file).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agp_daemon::store::{NewCheckpoint, PgLedger};
use agp_journal::checkpoint::Checkpoint;
use agp_journal::published::Published;
use agp_journal::{VerifierKey, CHECKPOINTS_FILE};

/// How often the `checkpoints` file is looked at.
const POLL: Duration = Duration::from_millis(500);
/// Longest pause between attempts to reach the database.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most checkpoints sent in one statement, and held in memory unpublished.
const BATCH: usize = 500;
/// Most bytes of the file read in one pass.
const READ_CHUNK: u64 = 1 << 20;
/// How long a stopping daemon keeps trying to publish its final checkpoint.
pub const FINISH_WITHIN: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Ctl {
    finish_by: Option<Instant>,
}

type Shared = Arc<(Mutex<Ctl>, Condvar)>;

/// The running publisher. Dropping it publishes what the journal holds by then (the final
/// checkpoint, once the journal is closed) for at most [`FINISH_WITHIN`], then stops.
pub struct Publisher {
    shared: Shared,
    thread: Option<JoinHandle<bool>>,
}

impl Publisher {
    /// Starts publishing the checkpoints of the journal in `dir`, signed by `key`, to the
    /// shared database at `url` as `member`.
    pub fn start(url: &str, member: &str, dir: &Path, key: VerifierKey) -> Self {
        let shared: Shared = Arc::default();
        let mut worker = Worker {
            url: url.to_owned(),
            member: member.to_owned(),
            path: dir.join(CHECKPOINTS_FILE),
            key,
            ledger: None,
            resume: None,
            resumed: false,
            offset: 0,
            carry: Vec::new(),
            pending: Vec::new(),
            down_since: None,
        };
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("agp-publish".into())
            .spawn(move || worker.run(&sh))
            .map_err(|e| eprintln!("agp: cannot start publishing checkpoints: {e}"))
            .ok();
        Self { shared, thread }
    }

    /// Publishes what the journal holds now, trying for at most `within`, then stops.
    /// Returns whether everything was published.
    pub fn finish(mut self, within: Duration) -> bool {
        self.stop(within)
    }

    fn stop(&mut self, within: Duration) -> bool {
        let Some(t) = self.thread.take() else {
            return false;
        };
        {
            let (ctl, cv) = &*self.shared;
            ctl.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .finish_by = Some(Instant::now() + within);
            cv.notify_all();
        }
        t.join().unwrap_or(false)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.thread.is_some() && !self.stop(FINISH_WITHIN) {
            eprintln!(
                "agp: not every checkpoint reached the shared database before stopping; the next \
                 start publishes the rest (they are kept in the journal)"
            );
        }
    }
}

struct Worker {
    url: String,
    member: String,
    path: PathBuf,
    key: VerifierKey,
    ledger: Option<PgLedger>,
    /// Where the database says this origin's publication stands (size, notes at that size),
    /// until the file is read past it.
    resume: Option<(u64, Vec<String>)>,
    resumed: bool,
    /// Bytes of the file consumed (complete notes, or carried in `carry`).
    offset: u64,
    /// The start of a note not yet complete.
    carry: Vec<u8>,
    pending: Vec<NewCheckpoint>,
    down_since: Option<Instant>,
}

impl Worker {
    fn run(&mut self, shared: &Shared) -> bool {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("agp: cannot publish checkpoints: no runtime: {e}");
                return false;
            }
        };
        let mut backoff = POLL;
        loop {
            let ok = rt.block_on(self.pass());
            backoff = if ok {
                POLL
            } else {
                (backoff * 2).min(MAX_BACKOFF)
            };
            let (ctl, cv) = &**shared;
            let mut c = ctl
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(by) = c.finish_by {
                if ok && self.caught_up() {
                    return true;
                }
                let now = Instant::now();
                if now >= by {
                    return false;
                }
                // Finishing: retry soon, but never past the deadline.
                let wait = (by - now).min(if ok { Duration::from_millis(50) } else { POLL });
                c = cv
                    .wait_timeout(c, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                drop(c);
                continue;
            }
            let _unused = cv
                .wait_timeout(c, backoff)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Everything in the file is published.
    fn caught_up(&self) -> bool {
        self.pending.is_empty()
            && std::fs::metadata(&self.path).map_or(true, |m| m.len() <= self.offset)
            && self.carry.is_empty()
    }

    /// One pass: (re)connect, resume, read what is new, publish it. `false` when the database
    /// could not be reached (the caller backs off).
    async fn pass(&mut self) -> bool {
        let result = self.try_pass().await;
        match result {
            Ok(()) => {
                if let Some(since) = self.down_since.take() {
                    eprintln!(
                        "agp: the shared database is reachable again: publishing checkpoints \
                         resumed (it was unreachable for {} s)",
                        since.elapsed().as_secs()
                    );
                }
                true
            }
            Err(e) => {
                if e.is_unavailable() {
                    self.ledger = None;
                }
                if self.down_since.is_none() {
                    self.down_since = Some(Instant::now());
                    eprintln!(
                        "agp: cannot publish checkpoints to the shared database ({e}); retrying, \
                         nothing is lost (they stay in the journal)"
                    );
                }
                false
            }
        }
    }

    async fn try_pass(&mut self) -> Result<(), agp_daemon::store::StoreError> {
        if self.ledger.is_none() {
            self.ledger = Some(PgLedger::connect(&self.url, &self.member).await?);
        }
        let Some(ledger) = self.ledger.take() else {
            return Ok(());
        };
        let result = self.publish_with(&ledger).await;
        // `pass` drops it again when the database turned out to be unreachable.
        self.ledger = Some(ledger);
        result
    }

    async fn publish_with(
        &mut self,
        ledger: &PgLedger,
    ) -> Result<(), agp_daemon::store::StoreError> {
        if !self.resumed {
            self.resume = ledger.latest(self.key.name()).await?;
            self.resumed = true;
        }
        loop {
            if self.pending.len() < BATCH {
                self.read_new();
            }
            if self.pending.is_empty() {
                return Ok(());
            }
            let n = self.pending.len().min(BATCH);
            ledger.publish(&self.pending[..n]).await?;
            self.pending.drain(..n);
        }
    }

    /// Reads complete notes appended since the last pass into `pending`.
    fn read_new(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return; // no checkpoint yet
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // The file shrank: this journal was replaced under the daemon. Start over; what
            // it holds now is published too, and verify reports the difference.
            eprintln!(
                "agp: {} shrank while the daemon ran; publishing it again from the start",
                self.path.display()
            );
            self.offset = 0;
            self.carry.clear();
        }
        if len == self.offset || f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        if f.take(READ_CHUNK).read_to_end(&mut fresh).is_err() {
            return;
        }
        self.offset += fresh.len() as u64;
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(&fresh);
        let (notes, rest) = split_notes(&buf);
        for note in notes {
            self.take(note);
        }
        // The last note is complete once it ends in a newline and its signature checks; one
        // caught half-written stays until the rest is there.
        if !rest.is_empty() && rest.ends_with(b"\n") && Checkpoint::open(rest, &self.key).is_ok() {
            self.take(rest);
        } else {
            self.carry = rest.to_vec();
        }
    }

    fn take(&mut self, note: &[u8]) {
        let Ok(p) = Published::parse(note) else {
            return; // not a checkpoint: `agp verify` reports the damaged file
        };
        if let Some((size, notes)) = &self.resume {
            if p.size < *size || (p.size == *size && notes.iter().any(|n| n.as_bytes() == note)) {
                return;
            }
            self.resume = None;
        }
        let Ok(text) = String::from_utf8(note.to_vec()) else {
            return;
        };
        self.pending.push(NewCheckpoint {
            origin: p.origin,
            size: p.size,
            root: hex::encode(p.root),
            note: text,
            key: self.key.to_string(),
        });
    }
}

/// Splits concatenated signed notes (text, a blank line, signature lines): every note that
/// another one follows, and the rest (the last, possibly incomplete, note).
fn split_notes(buf: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut notes = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    let mut in_sigs = false;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..=pos + nl];
        if in_sigs && !line.starts_with("\u{2014} ".as_bytes()) {
            notes.push(&buf[start..pos]);
            start = pos;
            in_sigs = false;
        }
        if line == b"\n" {
            in_sigs = true;
        }
        pos += nl + 1;
    }
    (notes, &buf[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_split_at_the_next_text_line_and_the_tail_waits() {
        let a = "o\n1\nAA=\n\n\u{2014} o abc=\n";
        let b = "o\n2\nBB=\n\n\u{2014} o def=\n\u{2014} o ghi=\n";
        let all = format!("{a}{b}o\n3\n");
        let (notes, rest) = split_notes(all.as_bytes());
        assert_eq!(notes, [a.as_bytes(), b.as_bytes()]);
        assert_eq!(rest, b"o\n3\n");
        let (notes, rest) = split_notes(a.as_bytes());
        assert!(notes.is_empty());
        assert_eq!(rest, a.as_bytes());
    }
}
