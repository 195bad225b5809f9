//! The end-of-session integrity check of a repository.
//!
//! Whatever a session leaves in the repository outlives it and is later touched by host tools
//! run by the user (git, a shell, an editor). This crate finds what such tools could be made to
//! trust or run: files with setuid/setgid bits or file capabilities, device nodes, sockets,
//! fifos, symlinks pointing outside the repository, and git metadata below the root (a nested
//! `.git` directory, `.git` file or symlink, or a bare-repository-shaped directory) that carries
//! hooks or configuration beyond a short list of inert keys. In the repository's own `.git`,
//! hooks and redirects (commondir, alternates) the session added are moved out one by one, and
//! active keys it added to `config` are undone by putting the session-start text back (the
//! directory itself is the user's and stays).
//!
//! What the session created or changed is neutralized, never silently kept: setuid/setgid
//! bits cleared and capabilities removed in place; everything else moved to a quarantine
//! directory the user can inspect (relative paths preserved). What already existed when the
//! session started ([`snapshot`]) is reported as pre-existing and left alone.
//!
//! The scan never follows a symlink: directories are opened with `O_NOFOLLOW` relative to their
//! parent's descriptor, entries are examined with `AT_SYMLINK_NOFOLLOW`, and neutralizing
//! re-opens the parent beneath the root with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` and checks
//! the entry is still the inode that was scanned. It is bounded (entries, time, depth); a
//! bounded or partly unreadable scan says so in the report.
//!
//! The walk itself ([`tree`]) is public: the sandbox walks the repository the same way for its
//! socket masks and its growth bound.

mod gitmeta;
mod neutralize;
mod repoconfig;
pub mod tree;
mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

// The report is what `session.integrity` journals: its types live with the journal's.
pub use agp_contracts::integrity::{Action, Finding, Kind, Origin, Report};

/// Bounds of one scan.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_entries: u64,
    pub max_duration: Duration,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 500_000,
            max_duration: Duration::from_secs(20),
            max_depth: 128,
        }
    }
}

/// Identity of a dangerous entry, to tell "already there at session start" from "made or
/// changed by the session". Any change of content, mode, owner or xattrs moves ctime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub ctime: i64,
    pub ctime_nsec: u64,
    /// A digest of what matters beyond the inode: a symlink's target, a git directory's hooks
    /// and config-like files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A dangerous entry as the scan found it.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub rel: PathBuf,
    pub kind: Kind,
    pub detail: String,
    pub fp: Fingerprint,
}

/// Dangerous entries present when a session started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// `false`: the start scan was bounded, so an item missing from it may still be older.
    pub complete: bool,
    /// By `"<kind>:<relative path>"`.
    pub items: BTreeMap<String, Fingerprint>,
    /// The repository's `.git/config` as it was, to put back if the session adds active keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_git_config: Option<String>,
}

pub(crate) fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn key(kind: Kind, rel: &Path) -> String {
    let k = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{k}:{}", rel.display())
}

/// The dangerous entries under `root` now, for comparing at the end of the session.
pub fn snapshot(root: &Path, limits: &Limits) -> Baseline {
    let scan = walk::scan(root, limits);
    Baseline {
        complete: scan.incomplete.is_empty(),
        items: scan
            .items
            .into_iter()
            .map(|i| (key(i.kind, &i.rel), i.fp))
            .collect(),
        repo_git_config: repoconfig::read(root),
    }
}

/// Scans `root`, neutralizes what the session left (quarantined under `quarantine`), and
/// reports every finding with what was done about it.
pub fn check(
    root: &Path,
    baseline: Option<&Baseline>,
    quarantine: &Path,
    limits: &Limits,
) -> Report {
    let started = Instant::now();
    let scan = walk::scan(root, limits);
    let mut findings: Vec<Finding> = scan
        .items
        .iter()
        .map(|i| Finding {
            path: text(&i.rel),
            kind: i.kind,
            detail: i.detail.clone(),
            origin: match baseline.map(|b| b.items.get(&key(i.kind, &i.rel))) {
                None => Origin::Unknown,
                Some(None) => Origin::New,
                Some(Some(fp)) if *fp == i.fp => Origin::PreExisting,
                Some(Some(_)) => Origin::Changed,
            },
            action: Action::Kept,
        })
        .collect();
    neutralize::apply(root, quarantine, &scan.items, &mut findings);
    // Without a snapshot there is nothing to put back: the config is reported (above) only.
    if let Some(before) = baseline.and_then(|b| b.repo_git_config.as_deref()) {
        findings.extend(repoconfig::check(root, quarantine, before));
    }
    Report {
        root: Some(text(root)),
        complete: scan.incomplete.is_empty(),
        incomplete: scan.incomplete,
        entries_scanned: Some(scan.entries),
        elapsed_ms: Some(started.elapsed().as_millis() as u64),
        baseline: Some(baseline.is_some()),
        findings,
    }
}

#[cfg(test)]
mod tests;
