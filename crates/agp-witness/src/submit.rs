//! The journal's side of tlog-witness: a background thread that sends the journal's latest
//! checkpoint to each configured witness with a consistency proof from the size that witness
//! cosigned last, and appends the cosignatures to the journal's `cosignatures` file.
//!
//! It never blocks the journal or a call: it reads the published `checkpoint` and
//! `entries.jsonl` like any reader. Checkpoints are coalesced (a witness only ever needs the
//! latest; one written while a submission is in flight is sent next). A 409 is answered by
//! resending from the size the witness reports; network errors and 5xx are retried with
//! backoff; a refusal (400/403/404/422) is logged as an error and the next checkpoint is tried
//! again later, since the witness's view only changes when it accepts one.
//!
//! Cost: the submitter keeps the journal's tree in memory (about 64 bytes per entry, see
//! [`crate::tree`]), read incrementally; a proof takes O(log² n) hashes.

use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agp_journal::checkpoint::Checkpoint;
use agp_journal::cosig::{accept_response, WitnessKey};
use agp_journal::merkle::{leaf_hash, Hash};
use agp_journal::note::VerifierKey;
use agp_journal::{witnessed, ENTRIES_FILE};

use crate::request;
use crate::tree::Tree;

/// One witness to submit to: its submission prefix (`<url>/add-checkpoint` is posted to) and
/// its cosignature/v1 key.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub key: WitnessKey,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// How often the published checkpoint is looked at (so at most one submission per
    /// witness per period: checkpoints in between are coalesced).
    pub poll: Duration,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Largest witness response read (a few signature lines).
const MAX_RESPONSE: u64 = 64 * 1024;

#[derive(Default)]
struct Ctl {
    /// Set by `finish`: submit what is there, then stop by this time.
    finish_by: Option<Instant>,
    /// Set on drop: stop now.
    abort: bool,
}

struct Shared {
    ctl: Mutex<Ctl>,
    cv: Condvar,
}

/// The running submitter. Dropping it stops the thread without a last pass.
pub struct Submitter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<bool>>,
}

impl Submitter {
    /// Starts submitting the checkpoints of the journal in `dir` (signed by `log_key`).
    pub fn start(dir: &Path, log_key: VerifierKey, targets: Vec<Target>, opts: Options) -> Self {
        let shared = Arc::new(Shared {
            ctl: Mutex::new(Ctl::default()),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        let mut worker = Worker::new(dir, log_key, targets, opts);
        let thread = std::thread::Builder::new()
            .name("agp-witness-submit".into())
            .spawn(move || worker.run(&sh))
            .map_err(|e| tracing::error!(error = %e, "cannot start the witness submitter"))
            .ok();
        Self { shared, thread }
    }

    /// Submits the journal's latest checkpoint (once the journal is closed, its final one) to
    /// every witness that has not cosigned it, retrying until `within` has passed, then stops.
    /// Returns whether every witness cosigned it.
    pub fn finish(mut self, within: Duration) -> bool {
        self.stop(Some(Instant::now() + within))
    }

    fn stop(&mut self, by: Option<Instant>) -> bool {
        {
            let mut c = self
                .shared
                .ctl
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match by {
                Some(by) => c.finish_by = Some(by),
                None => c.abort = true,
            }
        }
        self.shared.cv.notify_all();
        let Some(t) = self.thread.take() else {
            return false;
        };
        t.join().unwrap_or(false)
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(None);
        }
    }
}

struct TargetState {
    target: Target,
    /// The size the witness cosigned last, as far as known.
    known: Option<u64>,
    /// The checkpoint text last settled with this witness (cosigned, or refused).
    settled: Option<String>,
    retry_at: Instant,
    backoff: Duration,
}

struct Worker {
    dir: PathBuf,
    log_key: VerifierKey,
    targets: Vec<TargetState>,
    leaves: Leaves,
    agent: ureq::Agent,
    opts: Options,
}

enum Outcome {
    Cosigned,
    Conflict(u64),
    Refused(String),
    Retry(String),
}

impl Worker {
    fn new(dir: &Path, log_key: VerifierKey, targets: Vec<Target>, opts: Options) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("agp-witness-submit/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let now = Instant::now();
        let targets = targets
            .into_iter()
            .map(|target| TargetState {
                target,
                known: None,
                settled: None,
                retry_at: now,
                backoff: Duration::from_millis(500),
            })
            .collect();
        Self {
            dir: dir.to_path_buf(),
            log_key,
            targets,
            leaves: Leaves::new(dir.join(ENTRIES_FILE)),
            agent,
            opts,
        }
    }

    /// The sizes each witness cosigned, from the `cosignatures` file (a restart goes on from
    /// there rather than asking with size 0).
    fn load_known(&mut self) {
        let origin = self.log_key.name().to_string();
        let targets = &mut self.targets;
        let read = witnessed::for_each_record(&self.dir, |rec| {
            let witnessed::Record::Note(rec) = rec else {
                return;
            };
            let Ok((text, _)) = agp_journal::cosig::signature_lines(rec) else {
                return;
            };
            let Ok(cp) = Checkpoint::parse_text(text) else {
                return;
            };
            if cp.origin != origin {
                return;
            }
            for t in targets.iter_mut() {
                if matches!(
                    t.target.key.check(rec),
                    Ok(agp_journal::cosig::CosignatureCheck::Valid(_))
                ) && t.known.is_none_or(|k| k <= cp.size)
                {
                    // A checkpoint already cosigned is not sent again after a restart.
                    t.known = Some(cp.size);
                    t.settled = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        });
        if let Err(e) = read {
            tracing::warn!(error = %e, "cannot read the journal's cosignatures");
        }
    }

    fn run(&mut self, sh: &Shared) -> bool {
        self.load_known();
        loop {
            let ctl = |sh: &Shared| {
                let c = sh
                    .ctl
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (c.finish_by, c.abort)
            };
            let (finish_by, abort) = ctl(sh);
            if abort {
                return false;
            }
            let (settled, cosigned) = self.pass(finish_by.is_some());
            if let Some(by) = finish_by {
                if settled || Instant::now() >= by {
                    return cosigned;
                }
            }
            let pause = if finish_by.is_some() {
                Duration::from_millis(200)
            } else {
                self.opts.poll
            };
            let c = sh
                .ctl
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Woken early when asked to finish or stop.
            if c.finish_by == finish_by && !c.abort {
                let _ = sh
                    .cv
                    .wait_timeout(c, pause)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }

    /// One round over the witnesses: whether every witness is settled with the latest
    /// checkpoint (cosigned or refused), and whether every one cosigned it.
    fn pass(&mut self, finishing: bool) -> (bool, bool) {
        let Ok(Some(note)) = agp_journal::pair::read_latest(&self.dir) else {
            return (false, false);
        };
        let Ok(cp) = Checkpoint::open(&note, &self.log_key) else {
            // Written by another key (a rotation in progress) or damaged: `agp verify` reports
            // it; nothing to submit.
            return (false, false);
        };
        // The signed text as written (extension lines included), which cosignatures cover.
        let text = match agp_journal::note::parse_note(&note) {
            Ok(p) => String::from_utf8_lossy(p.text).into_owned(),
            Err(_) => return (false, false),
        };
        for i in 0..self.targets.len() {
            if self.targets[i].settled.as_deref() == Some(&text) {
                continue;
            }
            if !finishing && Instant::now() < self.targets[i].retry_at {
                continue;
            }
            // A 409 tells the size to prove from: resend at once, a few times at most.
            for _ in 0..3 {
                match self.submit(i, &cp, &note) {
                    Outcome::Cosigned => {
                        let t = &mut self.targets[i];
                        t.known = Some(cp.size);
                        t.settled = Some(text.clone());
                        t.backoff = Duration::from_millis(500);
                        break;
                    }
                    Outcome::Conflict(size) => {
                        let t = &mut self.targets[i];
                        t.known = Some(size);
                        if size > cp.size {
                            tracing::warn!(witness = %t.target.url, witness_size = size, size = cp.size,
                                "the witness has cosigned a larger checkpoint of this log than the journal's latest: waiting for the journal to grow (was it cut back?)");
                            self.delay(i);
                            break;
                        }
                    }
                    Outcome::Refused(why) => {
                        let t = &mut self.targets[i];
                        tracing::error!(witness = %t.target.url, size = cp.size, reason = %why,
                            "the witness refused the journal's checkpoint");
                        t.settled = Some(text.clone());
                        self.delay(i);
                        break;
                    }
                    Outcome::Retry(why) => {
                        tracing::warn!(witness = %self.targets[i].target.url, size = cp.size, error = %why,
                            "cannot submit the checkpoint to the witness; will retry");
                        self.delay(i);
                        break;
                    }
                }
            }
        }
        let settled = self
            .targets
            .iter()
            .all(|t| t.settled.as_deref() == Some(&text));
        let cosigned = settled && self.targets.iter().all(|t| t.known == Some(cp.size));
        (settled, cosigned)
    }

    fn delay(&mut self, i: usize) {
        let t = &mut self.targets[i];
        t.retry_at = Instant::now() + t.backoff;
        t.backoff = (t.backoff * 2).min(self.opts.max_backoff);
    }

    fn submit(&mut self, i: usize, cp: &Checkpoint, note: &[u8]) -> Outcome {
        let old = self.targets[i].known.unwrap_or(0).min(cp.size);
        let proof = match self.leaves.proof(cp, old) {
            Ok(p) => p,
            Err(e) => return Outcome::Retry(e),
        };
        let body = request::build(old, &proof, note);
        let t = &self.targets[i].target;
        let url = format!("{}/add-checkpoint", t.url.trim_end_matches('/'));
        let mut resp = match self
            .agent
            .post(&url)
            .header("content-type", "text/plain; charset=utf-8")
            .send(&body[..])
        {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let status = resp.status().as_u16();
        let answer = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .unwrap_or_default();
        let shown = String::from_utf8_lossy(&answer).trim().to_string();
        match status {
            200 => {
                let text = match agp_journal::note::parse_note(note) {
                    Ok(p) => p.text,
                    Err(e) => return Outcome::Retry(e.to_string()),
                };
                match accept_response(&t.key, text, &answer) {
                    Ok((line, _)) => {
                        let mut record = note.to_vec();
                        record.extend_from_slice(line.as_bytes());
                        match witnessed::append(&self.dir, &record) {
                            Ok(()) => Outcome::Cosigned,
                            Err(e) => Outcome::Retry(e.to_string()),
                        }
                    }
                    Err(e) => {
                        Outcome::Refused(format!("its answer is not a valid cosignature: {e}"))
                    }
                }
            }
            409 => match request::parse_size(shown.as_str()) {
                Some(size) => Outcome::Conflict(size),
                None => Outcome::Retry(format!("HTTP 409 without a size: {shown:?}")),
            },
            400 | 403 | 404 | 422 => Outcome::Refused(format!("HTTP {status}: {shown}")),
            _ => Outcome::Retry(format!("HTTP {status}: {shown}")),
        }
    }
}

/// The journal's Merkle tree, read incrementally from `entries.jsonl`.
struct Leaves {
    path: PathBuf,
    tree: Tree,
    offset: u64,
}

impl Leaves {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            tree: Tree::default(),
            offset: 0,
        }
    }

    fn read_up_to(&mut self, size: u64) -> Result<(), String> {
        if self.tree.size() >= size {
            return Ok(());
        }
        let mut f = std::fs::File::open(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut line = Vec::new();
        while self.tree.size() < size {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            self.tree.push(leaf_hash(&line[..n - 1]));
            self.offset += n as u64;
        }
        Ok(())
    }

    /// The consistency proof from `old` to `cp`, after checking the entries give `cp`'s root
    /// (re-reading them all once if not: the journal may have been recovered or replaced).
    fn proof(&mut self, cp: &Checkpoint, old: u64) -> Result<Vec<Hash>, String> {
        for attempt in 0..2 {
            self.read_up_to(cp.size)?;
            if self.tree.size() >= cp.size && self.tree.root(cp.size) == cp.root {
                return Ok(self.tree.consistency(old, cp.size));
            }
            if attempt == 0 {
                self.tree.clear();
                self.offset = 0;
            }
        }
        Err(format!(
            "the entries do not give the checkpoint's root at size {} (run `agp verify`)",
            cp.size
        ))
    }
}
