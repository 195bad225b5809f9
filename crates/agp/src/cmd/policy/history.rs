//! The tool calls a journal recorded, read back for `agp policy replay` and `suggest`: what was
//! asked (tool, input, working directory), in which session and repository, what the policy
//! said, and what happened after (ran, approved, denied by a human, not answered).
//!
//! The journal is verified with agp-journal's verifier (signatures, hash chain, Merkle tree)
//! while it is read, and the lines read are proven to be the lines verified: their Merkle root
//! is recomputed and compared with the verifier's, so a file changed between the two reads is
//! refused too; a journal that is not intact is refused whole.

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
    pub decided: Option<Decided>,
    pub outcome: Outcome,
    /// A `tool_call.result` was journaled for it: it ran, whatever the verdict said (a mode
    /// that only records, an agent that reported a result).
    pub result_seen: bool,
}

impl Recorded {
    /// The call ran: let through by the policy or a human, or a result says so.
    pub fn ran(&self) -> bool {
        self.result_seen || self.outcome.ran()
    }
}

/// How far the journal that was read can be trusted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trust {
    pub journal: PathBuf,
    pub verified: bool,
    pub key_id: String,
    pub entries: u64,
    pub sealed_size: u64,
    /// Entries after the last signed checkpoint: not read.
    pub unsealed_left_out: u64,
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

/// One journal line, with the body of the kind it was read as.
#[derive(Deserialize)]
struct Envelope<B> {
    seq: u64,
    ts: String,
    session: Option<String>,
    body: B,
}

#[derive(Deserialize)]
struct Started {
    repo: Option<PathBuf>,
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
    call_id: String,
    decision: Decision,
    reason: String,
    rule_id: Option<String>,
    policy_sha256: String,
    /// Only whether it is there matters.
    #[serde(default)]
    parts: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Approver {
    id: Option<String>,
    name: Option<String>,
}

impl Approver {
    /// The channel's id (`U012…`, `script:demo.answers`): stable, where display names change.
    fn label(&self) -> String {
        self.id
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| "?".into())
    }
}

#[derive(Deserialize)]
struct Granted {
    call_id: String,
    #[serde(default)]
    by: Vec<Approver>,
    remembered: Option<bool>,
}

#[derive(Deserialize)]
struct Denied {
    call_id: String,
    by: Option<Approver>,
    reason: Option<String>,
    cancelled: Option<bool>,
}

#[derive(Deserialize)]
struct CallRef {
    call_id: String,
}

/// The top-level `kind` of a canonical journal line, found without parsing it: keys are
/// sorted, so the envelope's `kind` follows the body, and a quote inside a string is escaped,
/// so the last `"kind":"` of the line is the envelope's.
fn kind_of(line: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"kind\":\"";
    let at = memchr::memmem::rfind(line, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &line[at..])?;
    Some(&line[at..at + len])
}

/// What one pass over the entries found.
struct Parsed {
    calls: Vec<Recorded>,
    session_found: bool,
    lines: u64,
    root: String,
}

/// Reads the calls of the first `limit` lines (all with `None`); every line is hashed.
fn parse_entries(path: &Path, filter: &Filter, limit: Option<u64>) -> Result<Parsed> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = file.metadata()?.len();
    // Only what is there now: lines appended while this runs are for the next run.
    let mut reader = BufReader::with_capacity(1 << 20, std::io::Read::take(file, len));
    let mut frontier = Frontier::new();
    let mut buf = Vec::with_capacity(4096);
    let mut repos: HashMap<String, PathBuf> = HashMap::new();
    let mut p = Parsed {
        calls: Vec::new(),
        session_found: filter.session.is_none(),
        lines: 0,
        root: String::new(),
    };
    // (session, call_id) → index in `calls`: call ids are unique within a session only.
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        let line = &buf[..buf.len() - 1];
        let n = frontier.size();
        frontier.push(leaf_hash(line));
        if limit.is_some_and(|l| n >= l) {
            continue;
        }
        let Some(kind) = kind_of(line) else { continue };
        macro_rules! parse {
            ($body:ty) => {
                match serde_json::from_slice::<Envelope<$body>>(line) {
                    Ok(e) => match e.session {
                        Some(ref s) if filter.session.as_ref().is_none_or(|f| f == s) => {
                            p.session_found = true;
                            e
                        }
                        _ => continue,
                    },
                    Err(_) => continue,
                }
            };
        }
        let find =
            |session: Option<String>, call_id: String| index.get(&(session?, call_id)).copied();
        match kind {
            b"session.started" => {
                let e = parse!(Started);
                if let (Some(s), Some(repo)) = (e.session, e.body.repo) {
                    repos.insert(s, repo);
                }
            }
            b"tool_call.requested" => {
                let e = parse!(Requested);
                if filter
                    .since
                    .as_ref()
                    .is_some_and(|s| !ts_at_or_after(&e.ts, s))
                {
                    continue;
                }
                let session = e.session.unwrap_or_default();
                let r = e.body;
                index.insert((session.clone(), r.call_id.clone()), p.calls.len());
                p.calls.push(Recorded {
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
                    decided: None,
                    outcome: Outcome::Unknown,
                    result_seen: false,
                });
            }
            b"policy.decided" => {
                let e = parse!(PolicyDecided);
                let d = e.body;
                let Some(i) = find(e.session, d.call_id) else {
                    continue;
                };
                let c = &mut p.calls[i];
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
            b"approval.granted" => {
                let e = parse!(Granted);
                if let Some(i) = find(e.session, e.body.call_id) {
                    p.calls[i].outcome = Outcome::Approved {
                        by: e.body.by.iter().map(Approver::label).collect(),
                        remembered: e.body.remembered == Some(true),
                    };
                }
            }
            b"approval.denied" => {
                let e = parse!(Denied);
                let d = e.body;
                if let Some(i) = find(e.session, d.call_id) {
                    p.calls[i].outcome = match (d.by, d.cancelled) {
                        (Some(by), _) => Outcome::HumanDenied {
                            by: by.label(),
                            reason: d.reason,
                        },
                        (None, Some(true)) => {
                            Outcome::NotAnswered("the session ended first".into())
                        }
                        (None, _) => {
                            Outcome::NotAnswered(d.reason.unwrap_or_else(|| "no approver".into()))
                        }
                    };
                }
            }
            b"tool_call.result" => {
                let e = parse!(CallRef);
                if let Some(i) = find(e.session, e.body.call_id) {
                    p.calls[i].result_seen = true;
                }
            }
            b"approval.timeout" => {
                let e = parse!(CallRef);
                if let Some(i) = find(e.session, e.body.call_id) {
                    p.calls[i].outcome = Outcome::NotAnswered("timed out".into());
                }
            }
            _ => {}
        }
    }
    p.lines = frontier.size();
    p.root = frontier.root().iter().map(|b| format!("{b:02x}")).collect();
    Ok(p)
}

/// Verifies the journal in `dir` with `key`, then reads its calls. A journal that is not
/// intact is refused with its findings. The verifier and the reader run side by side; the
/// reader's Merkle root over the lines it parsed must be the verifier's, so the calls come
/// from exactly the verified lines.
pub fn read(dir: &Path, key: &VerifierKey, filter: &Filter) -> Result<History> {
    let path = dir.join(agp_journal::ENTRIES_FILE);
    // A journal a running daemon appends to may grow between the two reads: read again.
    for _ in 0..3 {
        let (report, parsed) = std::thread::scope(|s| {
            let verifier = s.spawn(|| {
                agp_journal::verify_dir(
                    dir,
                    &VerifyOptions {
                        trusted_key: key.clone(),
                        trusted_checkpoint: None,
                    },
                )
            });
            let parsed = parse_entries(&path, filter, None);
            let report = verifier
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (report, parsed)
        });
        let report =
            report.with_context(|| format!("cannot verify the journal in {}", dir.display()))?;
        if !report.intact {
            let errors: Vec<String> = report.errors().take(3).map(ToString::to_string).collect();
            bail!(
                "the journal in {} is NOT intact ({} error(s), first: {}); a tampered journal \
                 is not replayed: `agp verify --journal {}` lists every finding",
                dir.display(),
                report.errors().count(),
                errors.join("; "),
                dir.display()
            );
        }
        let mut parsed = parsed?;
        if parsed.lines != report.entries {
            continue;
        }
        // Lines after the last signed checkpoint are chained by hashes anyone can compute: one
        // appended there could rewrite a call's verdict or outcome. They are left out (a
        // running daemon signs its lines within moments of writing them).
        if report.sealed_size < report.entries {
            parsed = parse_entries(&path, filter, Some(report.sealed_size))?;
            if parsed.lines != report.entries {
                continue;
            }
        }
        if parsed.root != report.root {
            bail!(
                "{} changed while it was read (its lines are not the ones that were verified); \
                 run the command again",
                path.display()
            );
        }
        return Ok(History {
            calls: parsed.calls,
            trust: Trust {
                journal: dir.to_path_buf(),
                verified: true,
                key_id: report
                    .active_key()
                    .map_or_else(|| key.id_hex(), VerifierKey::id_hex),
                entries: report.entries,
                sealed_size: report.sealed_size,
                unsealed_left_out: report.entries - report.sealed_size,
                warnings: report.findings.iter().map(ToString::to_string).collect(),
            },
            session_found: parsed.session_found,
        });
    }
    bail!(
        "{} kept changing while it was read (a daemon appending fast?); run the command again",
        path.display()
    )
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

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn the_envelope_kind_is_found_even_when_the_body_names_one() {
        let line = br#"{"body":{"input":{"kind":"policy.decided","x":"\"kind\":\"approval.granted\""}},"key_id":"ab","kind":"tool_call.requested","prev":"00","seq":1,"session":"s","ts":"t","v":1}"#;
        assert_eq!(kind_of(line), Some(&b"tool_call.requested"[..]));
        assert_eq!(kind_of(b"{}"), None);
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use agp_contracts::Journal as _;
    use agp_journal::{JournalOptions, JournalWriter, SignerKey};
    use serde_json::json;

    #[test]
    fn a_journaled_result_means_the_call_ran_whatever_the_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let key = SignerKey::generate("agp.test/history").unwrap();
        let w = JournalWriter::open(dir.path(), key.clone(), JournalOptions::default()).unwrap();
        let s = Some("s-1");
        w.append(
            "session.started",
            s,
            json!({"intendant": "t", "repo": "/r"}),
        )
        .unwrap();
        for (id, result) in [("c-1", true), ("c-2", false)] {
            w.append(
                "tool_call.requested",
                s,
                json!({"call_id": id, "tool": "Bash",
                "input": {"command": "make"}, "input_sha256": "x", "cwd": "/r", "mode": "gate",
                "tool_use_id": null}),
            )
            .unwrap();
            w.append(
                "policy.decided",
                s,
                json!({"call_id": id, "tool": "Bash",
                "input_sha256": "x", "decision": "deny", "reason": "r", "rule_id": null,
                "policy_sha256": "p", "parts": []}),
            )
            .unwrap();
            if result {
                w.append(
                    "tool_call.result",
                    s,
                    json!({"call_id": id, "tool": "Bash",
                    "input_sha256": "x", "ok": true, "output": "\"kind\":\"x\"",
                    "truncated": false, "output_sha256": "y", "reported_by": "agent"}),
                )
                .unwrap();
            }
        }
        w.close().unwrap();
        let h = read(dir.path(), key.verifier(), &Filter::default()).unwrap();
        assert_eq!(h.calls.len(), 2);
        assert_eq!(h.calls[0].repo.as_deref(), Some(Path::new("/r")));
        assert_eq!(h.calls[0].outcome, Outcome::Denied);
        assert!(h.calls[0].ran(), "a result was journaled");
        assert!(!h.calls[1].ran());
        assert_eq!(h.trust.unsealed_left_out, 0);
    }
}
