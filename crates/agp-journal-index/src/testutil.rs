//! Real journals for the tests, written by `agp_journal`'s writer as the daemon writes them.

use std::path::{Path, PathBuf};

use agp_contracts::Journal as _;
use agp_journal::{JournalOptions, JournalWriter, SignerKey};
use serde_json::{json, Value};

use crate::JournalIndex;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: SignerKey,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            key: SignerKey::generate("agp.test/console").unwrap(),
        }
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.path().join("console").join("index.db")
    }

    pub fn writer(&self) -> JournalWriter {
        JournalWriter::open(&self.journal(), self.key.clone(), JournalOptions::default()).unwrap()
    }

    pub fn index(&self) -> JournalIndex {
        JournalIndex::open(&self.journal(), &self.index_path()).unwrap()
    }

    pub fn entries_file(&self) -> PathBuf {
        self.journal().join(agp_journal::ENTRIES_FILE)
    }
}

/// What becomes of a scripted call.
#[derive(Clone, Copy, Debug)]
pub enum Fate {
    Allowed,
    Denied,
    Approved,
    ApprovalDenied,
    TimedOut,
    /// Asked and still waiting.
    Waiting,
}

pub struct Call {
    pub id: String,
    pub tool: &'static str,
    pub input: Value,
    pub fate: Fate,
    pub exit_code: i64,
    /// Egress requests made while it runs.
    pub egress: usize,
}

impl Call {
    pub fn bash(id: &str, command: &str, fate: Fate) -> Self {
        Self {
            id: id.into(),
            tool: "Bash",
            input: json!({ "command": command }),
            fate,
            exit_code: 0,
            egress: 0,
        }
    }
}

pub fn approver(name: &str) -> Value {
    json!({"id": format!("tty:{name}"), "name": name, "via": "terminal"})
}

pub fn start_session(w: &JournalWriter, s: &str, task: &str) {
    w.append(
        "session.started",
        Some(s),
        json!({"session": s, "intendant": "claude-code", "repo": "/src/app", "task": task,
               "mode": "proxy-exec", "started_by": "alice", "policy_mode": "enforce"}),
    )
    .unwrap();
}

pub fn end_session(w: &JournalWriter, s: &str, status: &str) {
    w.append(
        "session.ended",
        Some(s),
        json!({"session": s, "status": status, "lease_held": true}),
    )
    .unwrap();
}

/// Journals one call as the daemon does: request, verdict, approval, egress, result.
pub fn write_call(w: &JournalWriter, s: &str, c: &Call) {
    let sha = format!("{:0>64}", hex::encode(c.id.as_bytes()));
    let sha = &sha[sha.len() - 64..];
    let ap = |k: &str, b: Value| w.append(k, Some(s), b).unwrap();
    ap(
        "tool_call.requested",
        json!({"call_id": c.id, "tool_use_id": null, "tool": c.tool, "input": c.input,
               "input_sha256": sha, "cwd": "/src/app", "mode": "proxy-exec"}),
    );
    let (decision, rule) = match c.fate {
        Fate::Allowed => ("allow", "safe-reads"),
        Fate::Denied => ("deny", "no-force-push"),
        _ => ("require", "ask-network"),
    };
    ap(
        "policy.decided",
        json!({"call_id": c.id, "tool": c.tool, "input_sha256": sha, "decision": decision,
               "reason": format!("rule {rule} matched"), "rule_id": rule, "deciding_part": null,
               "policy_sha256": "ab".repeat(32)}),
    );
    if decision == "require" {
        ap(
            "approval.requested",
            json!({"call_id": c.id, "tool": c.tool, "input_sha256": sha, "rule_id": rule,
                   "reason": "asks a human", "channel": "terminal", "approvers": [],
                   "quorum": 1, "expires_at_ms": 1_900_000_000_000_i64}),
        );
    }
    let runs = match c.fate {
        Fate::Allowed => true,
        Fate::Approved => {
            ap(
                "approval.granted",
                json!({"call_id": c.id, "input_sha256": sha, "by": [approver("bob")],
                       "channel": "terminal", "waited_ms": 1200}),
            );
            true
        }
        Fate::ApprovalDenied => {
            ap(
                "approval.denied",
                json!({"call_id": c.id, "input_sha256": sha, "by": approver("carol"),
                       "reason": "not today", "channel": "terminal"}),
            );
            false
        }
        Fate::TimedOut => {
            ap(
                "approval.timeout",
                json!({"call_id": c.id, "input_sha256": sha, "channel": "terminal", "waited_ms": 60000}),
            );
            false
        }
        Fate::Denied | Fate::Waiting => false,
    };
    if runs {
        for i in 0..c.egress {
            ap(
                "egress.request",
                json!({"host": "api.example.com", "port": 443, "method": "GET",
                       "path": format!("/v1/{i}"), "allowed": true, "rule": "allow-api",
                       "reason": "listed", "status": 200, "bytes_up": 10, "bytes_down": 20,
                       "count": 1}),
            );
        }
        ap(
            "tool_call.result",
            json!({"call_id": c.id, "tool": c.tool, "input_sha256": sha, "ok": c.exit_code == 0,
                   "exit_code": c.exit_code, "timed_out": false, "error": null, "output": "ok",
                   "truncated": false, "output_bytes": 2, "output_sha256": "cd".repeat(32),
                   "reported_by": "sandbox"}),
        );
    }
}

/// Length in bytes of the journal's lines file.
pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}
