//! The tool calls a journal recorded, read back for `agp policy replay` and `suggest`: what was
//! asked (tool, input, working directory), in which session and repository, what the policy
//! said, and what happened after (ran, approved, denied by a human, not answered).
//!
//! The journal is verified first with agp-journal's verifier (signatures, hash chain, Merkle
//! tree), and the lines read afterwards are proven to be the lines verified: their Merkle root
//! is recomputed and compared with the verifier's, so a file changed between the two reads is
//! refused too. Lines a running daemon appended after verification are not read.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use agp_contracts::Decision;
use agp_journal::merkle::{leaf_hash, Frontier};
use agp_journal::{VerifierKey, VerifyOptions};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// Which calls to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    /// RFC 3339 UTC with microseconds (as the journal writes `ts`): calls at or after it.
    pub since: Option<String>,
}

/// What happened to a call after the policy judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed by the policy, nobody asked.
    Allowed,
    /// A human (or a remembered earlier approval of the same call) allowed it.
    Approved { by: Vec<String>, remembered: bool },
    /// A human denied it.
    HumanDenied { by: String, reason: Option<String> },
    /// Policy required approval and nobody answered (timeout, no approver, session ended).
    NotAnswered(String),
    /// Denied by the policy.
    Denied,
    /// The journal does not say (no verdict, or no approval outcome recorded).
    Unknown,
}

impl Outcome {
    /// The call was let through: by the policy or by a human.
    pub fn ran(&self) -> bool {
        matches!(self, Outcome::Allowed | Outcome::Approved { .. })
    }

    pub fn label(&self) -> String {
        match self {
            Outcome::Allowed => "allowed".into(),
            Outcome::Approved { by, remembered } => format!(
                "approved by {}{}",
                by.join(", "),
                if *remembered { " (remembered)" } else { "" }
            ),
            Outcome::HumanDenied { by, .. } => format!("denied by {by}"),
            Outcome::NotAnswered(why) => format!("not approved ({why})"),
            Outcome::Denied => "denied".into(),
            Outcome::Unknown => "outcome not recorded".into(),
        }
    }
}

/// The policy's recorded verdict.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    pub rule_id: Option<String>,
    pub reason: String,
    pub policy_sha256: String,
    /// False when the input was refused before the policy judged it (no parts recorded).
    pub judged: bool,
}

/// One recorded tool call.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: u64,
    pub ts: String,
    pub session: String,
    pub call_id: String,
    pub tool: String,
    /// The input as journaled (redacted: compare with `input_sha256`).
    pub input: Value,
    pub input_sha256: Option<String>,
    pub input_error: Option<String>,
    pub cwd: PathBuf,
    /// The session's repository (`session.started`), when the journal has it.
    pub repo: Option<PathBuf>,
    /// Covered by a signed checkpoint.
    pub sealed: bool,
    pub decided: Option<Decided>,
    pub outcome: Outcome,
}

/// How far the journal that was read can be trusted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trust {
    pub journal: PathBuf,
    pub verified: bool,
    pub key_id: String,
    pub entries: u64,
    pub sealed_size: u64,
    /// Verifier warnings (torn tail, entries not sealed yet, ...).
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct History {
    pub calls: Vec<Recorded>,
    pub trust: Trust,
    /// Whether the `--session` filter named a session the journal has.
    pub session_found: bool,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    ts: String,
    kind: String,
    session: Option<String>,
    body: Value,
}

#[derive(Deserialize)]
struct Requested {
    call_id: String,
    tool: String,
    input: Value,
    input_sha256: Option<String>,
    #[serde(default)]
    input_error: Option<String>,
    cwd: PathBuf,
}

#[derive(Deserialize)]
struct PolicyDecided {
    decision: Decision,
    reason: String,
    rule_id: Option<String>,
    policy_sha256: String,
    #[serde(default)]
    parts: Option<Value>,
}

fn approver(v: &Value) -> String {
    // The channel's id (`U012…`, `script:demo.answers`): stable, where display names change.
    v["id"]
        .as_str()
        .or_else(|| v["name"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Verifies the journal in `dir` with `key`, then reads its calls. A journal that is not
/// intact is refused with its findings.
pub fn read(dir: &Path, key: &VerifierKey, filter: &Filter) -> Result<History> {
    let report = agp_journal::verify_dir(
        dir,
        &VerifyOptions {
            trusted_key: key.clone(),
            trusted_checkpoint: None,
        },
    )
    .with_context(|| format!("cannot verify the journal in {}", dir.display()))?;
    if !report.intact {
        let errors: Vec<String> = report.errors().take(3).map(ToString::to_string).collect();
        bail!(
            "the journal in {} is NOT intact ({} error(s), first: {}); a tampered journal is not \
             replayed: `agp verify{}` lists every finding",
            dir.display(),
            report.errors().count(),
            errors.join("; "),
            if dir.ends_with("journal") {
                String::new()
            } else {
                format!(" --journal {}", dir.display())
            }
        );
    }
    let trust = Trust {
        journal: dir.to_path_buf(),
        verified: true,
        key_id: report
            .active_key()
            .map_or_else(|| key.id_hex(), VerifierKey::id_hex),
        entries: report.entries,
        sealed_size: report.sealed_size,
        warnings: report.findings.iter().map(ToString::to_string).collect(),
    };
    let path = dir.join(agp_journal::ENTRIES_FILE);
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut frontier = Frontier::new();
    let mut buf = Vec::with_capacity(4096);
    let mut repos: HashMap<String, PathBuf> = HashMap::new();
    let mut calls: Vec<Recorded> = Vec::new();
    // (session, call_id) → index in `calls`: call ids are unique within a session only.
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut session_found = filter.session.is_none();
    while frontier.size() < report.entries {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 || buf.last() != Some(&b'\n') {
            bail!(
                "{} changed while it was read (it is shorter than when it was verified)",
                path.display()
            );
        }
        let line = &buf[..buf.len() - 1];
        frontier.push(leaf_hash(line));
        let Ok(e) = serde_json::from_slice::<Envelope>(line) else {
            continue;
        };
        let Some(session) = e.session else { continue };
        if filter.session.as_ref().is_some_and(|s| *s != session) {
            continue;
        }
        session_found = true;
        let sealed = e.seq < report.sealed_size;
        let find = |index: &HashMap<(String, String), usize>, body: &Value| {
            body["call_id"]
                .as_str()
                .and_then(|c| index.get(&(session.clone(), c.to_string())).copied())
        };
        match e.kind.as_str() {
            "session.started" => {
                if let Some(repo) = e.body["repo"].as_str() {
                    repos.insert(session.clone(), PathBuf::from(repo));
                }
            }
            "tool_call.requested" => {
                if filter
                    .since
                    .as_ref()
                    .is_some_and(|s| !ts_at_or_after(&e.ts, s))
                {
                    continue;
                }
                let Ok(r) = serde_json::from_value::<Requested>(e.body) else {
                    continue;
                };
                index.insert((session.clone(), r.call_id.clone()), calls.len());
                calls.push(Recorded {
                    seq: e.seq,
                    ts: e.ts,
                    repo: repos.get(&session).cloned(),
                    session,
                    call_id: r.call_id,
                    tool: r.tool,
                    input: r.input,
                    input_sha256: r.input_sha256,
                    input_error: r.input_error,
                    cwd: r.cwd,
                    sealed,
                    decided: None,
                    outcome: Outcome::Unknown,
                });
            }
            "policy.decided" => {
                let Some(i) = find(&index, &e.body) else {
                    continue;
                };
                let Ok(d) = serde_json::from_value::<PolicyDecided>(e.body) else {
                    continue;
                };
                let c = &mut calls[i];
                c.sealed &= sealed;
                c.outcome = match d.decision {
                    Decision::Allow => Outcome::Allowed,
                    Decision::Deny => Outcome::Denied,
                    Decision::Require => Outcome::Unknown,
                };
                c.decided = Some(Decided {
                    decision: d.decision,
                    rule_id: d.rule_id,
                    reason: d.reason,
                    policy_sha256: d.policy_sha256,
                    judged: d.parts.is_some(),
                });
            }
            "approval.granted" => {
                if let Some(i) = find(&index, &e.body) {
                    let by = e.body["by"]
                        .as_array()
                        .map(|a| a.iter().map(approver).collect())
                        .unwrap_or_default();
                    calls[i].outcome = Outcome::Approved {
                        by,
                        remembered: e.body["remembered"].as_bool() == Some(true),
                    };
                }
            }
            "approval.denied" => {
                if let Some(i) = find(&index, &e.body) {
                    let reason = e.body["reason"].as_str().map(str::to_string);
                    calls[i].outcome = if e.body["by"].is_object() {
                        Outcome::HumanDenied {
                            by: approver(&e.body["by"]),
                            reason,
                        }
                    } else if e.body["cancelled"].as_bool() == Some(true) {
                        Outcome::NotAnswered("the session ended first".into())
                    } else {
                        Outcome::NotAnswered(reason.unwrap_or_else(|| "no approver".into()))
                    };
                }
            }
            "approval.timeout" => {
                if let Some(i) = find(&index, &e.body) {
                    calls[i].outcome = Outcome::NotAnswered("timed out".into());
                }
            }
            _ => {}
        }
    }
    let root: String = frontier.root().iter().map(|b| format!("{b:02x}")).collect();
    if root != report.root {
        bail!(
            "{} changed while it was read (its lines are not the ones that were verified); \
             run the command again",
            path.display()
        );
    }
    Ok(History {
        calls,
        trust,
        session_found,
    })
}

/// Whether journal timestamp `ts` is at or after `since` (both RFC 3339 UTC). Timestamps the
/// journal writes have a fixed width, so they compare as text; anything else is parsed.
fn ts_at_or_after(ts: &str, since: &str) -> bool {
    if ts.len() == since.len() {
        return ts >= since;
    }
    match (parse_rfc3339(ts), parse_rfc3339(since)) {
        (Some(a), Some(b)) => a >= b,
        _ => true,
    }
}

fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// `--since`: an RFC 3339 time (`2026-01-02T03:04:05Z`), a date (`2026-01-02`, midnight UTC),
/// or a duration back from now (`90m`, `2h`, `7d`); as the journal writes timestamps.
pub fn parse_since(text: &str) -> Result<String> {
    let t = text.trim();
    let unix = if let Some(dt) = parse_rfc3339(t) {
        dt.unix_timestamp_nanos()
    } else if let Some(dt) = parse_rfc3339(&format!("{t}T00:00:00Z")) {
        dt.unix_timestamp_nanos()
    } else if let Ok(secs) = agp_policy::file::parse_duration(t) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        now - i128::from(secs) * 1_000_000_000
    } else {
        bail!(
            "--since {t:?} is not a time: use RFC 3339 (2026-01-02T03:04:05Z), a date \
             (2026-01-02) or a duration back from now (90m, 2h, 7d)"
        );
    };
    let unix = unix.max(0);
    let secs = (unix / 1_000_000_000) as u64;
    let micros = ((unix % 1_000_000_000) / 1000) as u32;
    Ok(agp_journal::event::format_rfc3339(secs, micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_durations() {
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z").unwrap(),
            "2026-01-02T03:04:05.000000Z"
        );
        assert_eq!(
            parse_since("2026-01-02T04:04:05+01:00").unwrap(),
            "2026-01-02T03:04:05.000000Z"
        );
        assert_eq!(
            parse_since("2026-01-02").unwrap(),
            "2026-01-02T00:00:00.000000Z"
        );
        let back = parse_since("1h").unwrap();
        assert!(back < agp_journal::event::now_rfc3339());
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn timestamps_of_other_widths_are_compared_as_times() {
        let since = "2026-01-02T03:04:05.000000Z";
        assert!(ts_at_or_after("2026-01-02T03:04:05.000001Z", since));
        assert!(!ts_at_or_after("2026-01-02T03:04:04.999999Z", since));
        assert!(ts_at_or_after("2026-01-02T03:04:05Z", since));
        assert!(!ts_at_or_after("2026-01-02T03:04:04.9Z", since));
    }
}
