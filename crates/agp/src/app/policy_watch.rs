//! Live reload of a running daemon's policy. The policy file is watched, and SIGHUP (of
//! `agp daemon`) asks for a reload: a valid change is journaled as `policy.reloaded` and then
//! judges the next call; an invalid one is journaled as `policy.reload_refused` (with its
//! `file:line:col`) and the policy in force stays. The same SHA-256 again is not a reload. No
//! change is put in force while a live session's agent could have written it: an agent not
//! confined by agp's sandbox (it runs as the operator), or a sandboxed one whose repository
//! holds the policy.
//!
//! Editors replace a file by renaming a new one over it, which would end a watch on the file
//! itself: the directories are watched instead and the file is re-read by its path. A symlinked
//! policy is followed: the directory of every link of its chain and of the file it ends at is
//! watched, the chain looked up anew after each reload (a retargeted link). Changes are
//! debounced (a quiet period) so a file written in several steps is read once, whole.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use agp_contracts::events::{Event, PolicyReloadRefused, PolicyReloaded};
use agp_contracts::Journal;
use agp_policy::{Reload, ReloadablePolicy};
use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// How long the policy's files must stay still before a change is read.
const QUIET: Duration = Duration::from_millis(300);
/// Longest symlink chain followed (as the kernel's own bound).
const MAX_LINKS: usize = 40;

/// What asked for a reload (journaled as `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Watch,
    Sighup,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Sighup => "sighup",
        }
    }
}

enum Msg {
    Changed,
    Sighup,
    Stop,
}

/// The reloading thread of a daemon's policy; dropping it stops the thread (and the watch).
pub struct PolicyWatch {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl PolicyWatch {
    /// Starts reloading `policy` on request, and on every change of its file when `watch`.
    /// `state_db`: where the live sessions are read; `None` when they are in shared state
    /// (team mode), which this watch does not read yet: every reload is then refused.
    /// A watch that cannot be set up (no inotify instance left, say) is a warning: the policy
    /// loaded stays in force, as it did before live reload, and SIGHUP still reloads.
    pub fn start(
        policy: Arc<ReloadablePolicy>,
        journal: Arc<dyn Journal>,
        state_db: Option<PathBuf>,
        watch: bool,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let watcher = if watch {
            match FileWatch::new(policy.path(), tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!(
                        "agp: WARNING: {e:#}: changes to the policy are not picked up while this \
                         runs (`agp daemon` reloads it on SIGHUP)"
                    );
                    None
                }
            }
        } else {
            None
        };
        let thread = std::thread::Builder::new()
            .name("agp-policy-reload".into())
            .spawn(move || run(&policy, journal.as_ref(), state_db.as_deref(), watcher, &rx))
            .context("cannot start the policy reload thread")?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// A handle that asks for a reload (SIGHUP); it outlives nothing it needs.
    pub fn requester(&self) -> ReloadRequester {
        ReloadRequester(self.tx.clone())
    }
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks the reload thread to re-read the policy now (SIGHUP).
#[derive(Clone)]
pub struct ReloadRequester(Sender<Msg>);

impl ReloadRequester {
    pub fn sighup(&self) {
        let _ = self.0.send(Msg::Sighup);
    }
}

/// The directories watched and the names in them that are the policy (its links and file).
struct FileWatch {
    watcher: RecommendedWatcher,
    names: Arc<Mutex<BTreeSet<OsString>>>,
    dirs: BTreeSet<PathBuf>,
}

impl FileWatch {
    fn new(path: &Path, tx: Sender<Msg>) -> Result<Self> {
        let names: Arc<Mutex<BTreeSet<OsString>>> = Arc::default();
        let seen = Arc::clone(&names);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            if !changes_content(event.kind) {
                return;
            }
            let names = match seen.lock() {
                Ok(n) => n,
                Err(poisoned) => poisoned.into_inner(),
            };
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.contains(n)));
            drop(names);
            if ours {
                let _ = tx.send(Msg::Changed);
            }
        })
        .context("cannot watch the policy file")?;
        let mut this = Self {
            watcher,
            names,
            dirs: BTreeSet::new(),
        };
        this.follow(path)
            .with_context(|| format!("cannot watch the policy file {}", path.display()))?;
        Ok(this)
    }

    /// Watches the directories of `path`'s symlink chain not watched yet.
    fn follow(&mut self, path: &Path) -> Result<()> {
        let chain = link_chain(path);
        {
            let mut names = match self.names.lock() {
                Ok(n) => n,
                Err(poisoned) => poisoned.into_inner(),
            };
            names.extend(
                chain
                    .iter()
                    .filter_map(|p| p.file_name().map(OsString::from)),
            );
        }
        for dir in chain.iter().filter_map(|p| p.parent()) {
            if !self.dirs.contains(dir) {
                self.watcher
                    .watch(dir, RecursiveMode::NonRecursive)
                    .with_context(|| format!("cannot watch {}", dir.display()))?;
                self.dirs.insert(dir.to_path_buf());
            }
        }
        Ok(())
    }
}

/// Whether an event can change what the file reads: reading it (as the reload itself does)
/// cannot, and must not set off another reload.
fn changes_content(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// `path` (made absolute) and every path its symlinks lead to, in order.
fn link_chain(path: &Path) -> Vec<PathBuf> {
    let mut current = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut chain = vec![current.clone()];
    for _ in 0..MAX_LINKS {
        let Ok(target) = std::fs::read_link(&current) else {
            break;
        };
        let next = match current.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
        current = std::path::absolute(&next).unwrap_or(next);
        chain.push(current.clone());
    }
    chain
}

fn run(
    policy: &ReloadablePolicy,
    journal: &dyn Journal,
    state_db: Option<&Path>,
    mut watch: Option<FileWatch>,
    rx: &Receiver<Msg>,
) {
    // Since when the policy in force is in force (the daemon's start, then each reload): an
    // unconfined agent live at any time since may have written what the file holds now.
    let mut in_force_since = now_ms();
    while let Ok(first) = rx.recv() {
        let trigger = match first {
            Msg::Stop => return,
            Msg::Sighup => Trigger::Sighup,
            Msg::Changed => match settle(rx) {
                Some(trigger) => trigger,
                None => return,
            },
        };
        let asked = now_ms();
        if reload(policy, journal, state_db, trigger, in_force_since) {
            in_force_since = asked;
        }
        if let Some(watch) = watch.as_mut() {
            if let Err(e) = watch.follow(policy.path()) {
                eprintln!("agp: {e:#}: changes there are picked up on SIGHUP only");
            }
        }
    }
}

/// Waits until the file has been still for [`QUIET`]; `None` when asked to stop. A SIGHUP
/// meanwhile reloads at once.
fn settle(rx: &Receiver<Msg>) -> Option<Trigger> {
    loop {
        match rx.recv_timeout(QUIET) {
            Ok(Msg::Changed) => {}
            Ok(Msg::Sighup) => return Some(Trigger::Sighup),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => return Some(Trigger::Watch),
        }
    }
}

/// Why a changed, valid policy was not put in force.
enum NotInForce {
    /// A live session's agent could have written the policy: why, and what to do.
    AgentWritable(String, &'static str),
    Journal(agp_contracts::JournalError),
}

/// Milliseconds since the epoch, as the daemon's store records session ends.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reloads the policy on `trigger`; whether a new policy was put in force. A change seen by
/// the watch waits while an unconfined agent lives or has lived since `in_force_since` (its
/// session may have ended just after its edit); SIGHUP, the operator's request, waits only
/// while one lives.
fn reload(
    policy: &ReloadablePolicy,
    journal: &dyn Journal,
    state_db: Option<&Path>,
    trigger: Trigger,
    in_force_since: i64,
) -> bool {
    let path = policy.path().to_path_buf();
    let since = (trigger == Trigger::Watch).then_some(in_force_since);
    // Looked up before the swap, which holds every evaluation off: it reads the store.
    let writable = agent_writable(&path, state_db, since);
    let recorded = policy.reload_recorded(|outcome| {
        let Reload::Reloaded {
            old_sha256,
            new_sha256,
        } = outcome
        else {
            return Ok(());
        };
        if let Some((why, fix)) = writable {
            return Err(NotInForce::AgentWritable(why, fix));
        }
        let body = PolicyReloaded {
            path: path.clone(),
            old_sha256: old_sha256.clone(),
            new_sha256: new_sha256.clone(),
            trigger: trigger.as_str().to_owned(),
        };
        journal
            .append(PolicyReloaded::KIND, None, body.to_body())
            .map(drop)
            .map_err(NotInForce::Journal)
    });
    let refused = match recorded {
        Ok(Ok(Reload::Reloaded {
            old_sha256,
            new_sha256,
        })) => {
            eprintln!(
                "agp: policy {} reloaded ({}): sha256 {} -> {}",
                path.display(),
                trigger.as_str(),
                short(&old_sha256),
                short(&new_sha256)
            );
            return true;
        }
        Ok(Ok(Reload::Unchanged { sha256 })) => {
            if trigger == Trigger::Sighup {
                eprintln!(
                    "agp: policy {} unchanged (sha256 {}): nothing to reload",
                    path.display(),
                    short(&sha256)
                );
            }
            return false;
        }
        // The one redaction function: the message may quote the file.
        Ok(Err(refused)) => (
            agp_policy::redact_str(&refused.error.to_string()),
            refused.kept_sha256,
            "fix the file and save it again",
        ),
        Err(NotInForce::AgentWritable(why, fix)) => {
            (why, policy.current().sha256().to_owned(), fix)
        }
        Err(NotInForce::Journal(e)) => {
            eprintln!(
                "agp: error: policy {} changed but the change cannot be journaled ({e}): the \
                 previous policy stays in force",
                path.display()
            );
            return false;
        }
    };
    let (error, kept_sha256, fix) = refused;
    eprintln!(
        "agp: policy {} NOT reloaded, the policy in force (sha256 {}) stays; {fix}:\n{error}",
        path.display(),
        short(&kept_sha256)
    );
    let body = PolicyReloadRefused {
        path,
        error,
        kept_sha256,
        trigger: trigger.as_str().to_owned(),
    };
    if let Err(e) = journal.append(PolicyReloadRefused::KIND, None, body.to_body()) {
        eprintln!("agp: error: cannot journal the refused policy reload: {e}");
    }
    false
}

/// What to do about a change refused because an agent on the host could have made it.
const UNCONFINED_FIX: &str = "check the file; once no session runs its agent outside agp's \
     sandbox (`agp sessions`), send SIGHUP to `agp daemon` to put it in force (a saved change \
     is picked up by itself only when no such agent lived since the policy in force was \
     loaded; a restarted daemon loads the file as it is then)";
/// What to do about a change refused because it lies in a live session's repository.
const IN_REPO_FIX: &str = "move the policy out of the session's repository; once the session \
     ended, send SIGHUP to `agp daemon` (or restart it) to put the file in force";

/// Why the agent of a live session could have written the policy, and what to do, or `None`.
/// A policy its own agent can rewrite would let the agent choose its rules:
/// - an agent not confined by agp's sandbox (a hook session of the user's own agent, a
///   `--sandbox none` session, or one an older agp opened without saying) runs as the
///   operator and can write any file the operator can, the policy wherever it lies;
/// - a sandboxed agent can write its repository: a policy file (or a link of its chain) there.
///
/// With `since`, an unconfined agent whose session ended at or after it counts too: it may
/// have written the file just before its session ended. When the sessions cannot be read,
/// that is not known: refused too.
fn agent_writable(
    path: &Path,
    state_db: Option<&Path>,
    since: Option<i64>,
) -> Option<(String, &'static str)> {
    let Some(state_db) = state_db else {
        return Some((
            "the live sessions are in shared state ([state] url), which the policy watch does              not read: whether an agent could have written the policy is not known"
                .into(),
            "restart the daemon to load the file as it is",
        ));
    };
    let read = agp_daemon::store::Store::open_existing(state_db)
        .and_then(|store| Ok((store.unconfined_sessions(since)?, store.sessions()?)));
    let (unconfined, sessions) = match read {
        Ok(read) => read,
        Err(e) => {
            return Some((
                format!(
                    "cannot read the live sessions from {} to tell whether an agent could have \
                     written the policy: {e}",
                    state_db.display()
                ),
                "restart the daemon to load the file as it is",
            ))
        }
    };
    if !unconfined.is_empty() {
        let named: Vec<String> = unconfined
            .iter()
            .map(|s| {
                let how = match s.agent_confined {
                    Some(_) => "on the host",
                    None => "not known to be sandboxed",
                };
                let when = if s.ended_at_ms.is_some() {
                    "ended since the policy in force was loaded"
                } else {
                    "live"
                };
                format!("{} ({}, {how}, {when})", s.id, s.intendant)
            })
            .collect();
        return Some((
            format!(
                "session(s) {} run their agent outside agp's sandbox, as the operator: it could \
                 have written the policy, so this change is not put in force",
                named.join(", ")
            ),
            UNCONFINED_FIX,
        ));
    }
    let places: Vec<PathBuf> = link_chain(path)
        .iter()
        .filter_map(|p| {
            let dir = std::fs::canonicalize(p.parent()?).ok()?;
            Some(dir.join(p.file_name()?))
        })
        .collect();
    // As above: with `since`, a session that ended since counts too.
    let acted_since = |s: &&agp_daemon::store::SessionRow| {
        s.status == "active" || since.is_some_and(|t| s.ended_at_ms.is_some_and(|e| e >= t))
    };
    for session in sessions.iter().filter(acted_since) {
        let Ok(repo) = std::fs::canonicalize(&session.repo) else {
            continue;
        };
        if let Some(place) = places.iter().find(|p| p.starts_with(&repo)) {
            let whose = if session.status == "active" {
                format!("live session {}", session.id)
            } else {
                format!(
                    "session {} (ended since the policy in force was loaded)",
                    session.id
                )
            };
            return Some((
                format!(
                    "{} lies in the repository {} of {whose}, whose agent can write it",
                    place.display(),
                    repo.display(),
                ),
                IN_REPO_FIX,
            ));
        }
    }
    None
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_of_links_names_every_hop() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("team").join("policy.toml");
        std::fs::create_dir(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "").unwrap();
        let hop = dir.path().join("hop.toml");
        std::os::unix::fs::symlink("team/policy.toml", &hop).unwrap();
        let link = dir.path().join("policy.toml");
        std::os::unix::fs::symlink(&hop, &link).unwrap();
        assert_eq!(link_chain(&link), vec![link.clone(), hop, real]);
    }

    #[test]
    fn reading_the_file_is_not_a_change() {
        assert!(!changes_content(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(EventKind::Modify(
            notify::event::ModifyKind::Any
        )));
    }
}
