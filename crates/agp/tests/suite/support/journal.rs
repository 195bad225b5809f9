//! Shared helpers for the journal integration tests: a real agp home made by the real `agp`
//! binary, journal entries appended with the real writer, and `agp verify --json` runs.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agp_contracts::Journal as _;
use agp_journal::{keys, JournalOptions, JournalWriter, SignerKey};
use serde_json::{json, Value};

pub fn agp() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agp"));
    c.env_remove("AGP_HOME");
    c
}

pub fn run(args: &[&str]) -> Output {
    agp().args(args).output().expect("agp runs")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The JSON on stdout of a run that must have succeeded.
pub fn json_ok(o: &Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An agp home with a key and a journal, in a temporary folder.
pub struct Home {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Home {
    /// `agp init` + `agp keygen`: the journal holds its journal.created entry.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home");
        let h = root.to_str().unwrap();
        let o = run(&["--home", h, "init"]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        let o = run(&["--home", h, "keygen"]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        Self { tmp, root }
    }

    pub fn home_arg(&self) -> &str {
        self.root.to_str().unwrap()
    }
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }
    pub fn entries(&self) -> PathBuf {
        self.journal().join(agp_journal::ENTRIES_FILE)
    }
    pub fn key(&self) -> SignerKey {
        keys::load_signer_key(&self.root.join("keys").join(keys::SIGNER_FILE)).unwrap()
    }
    pub fn vkey_file(&self) -> PathBuf {
        self.root.join("keys").join(keys::VERIFIER_FILE)
    }

    /// Appends `n` tool-call events in one writer session (closed with a checkpoint).
    pub fn append(&self, n: u64) {
        let w =
            JournalWriter::open(&self.journal(), self.key(), JournalOptions::default()).unwrap();
        for i in 0..n {
            w.append(
                "tool_call.requested",
                Some("s-1"),
                json!({"tool": "Bash", "input": {"command": format!("echo {i}")}, "n": i}),
            )
            .unwrap();
        }
        w.close().unwrap();
    }

    /// A home whose journal has 20 entries, with checkpoints at sizes 10 and 20 at least.
    pub fn with_20_entries() -> Self {
        let h = Self::new();
        h.append(9);
        h.append(10);
        h
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.entries())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn write_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(self.entries(), text).unwrap();
    }

    /// `ssh-keygen -Y verify -s checkpoint.sig` of `checkpoint` (on stdin) with the home's
    /// allowed signers, as an auditor without agp runs it.
    pub fn ssh_verify(&self, checkpoint: &[u8]) -> Output {
        let allowed = self.root.join("keys/allowed_signers");
        let identity = std::fs::read_to_string(&allowed)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let mut child = Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&allowed)
            .args(["-I", &identity, "-n", "agp-journal-checkpoint", "-s"])
            .arg(self.journal().join("checkpoint.sig"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh-keygen (openssh-client) is installed");
        child.stdin.take().unwrap().write_all(checkpoint).unwrap();
        child.wait_with_output().unwrap()
    }

    /// A copy of the journal's current checkpoint at `TMP/NAME`, kept aside as an auditor
    /// would; its path.
    pub fn keep_checkpoint(&self, name: &str) -> PathBuf {
        let kept = self.tmp.path().join(name);
        std::fs::copy(self.journal().join("checkpoint"), &kept).unwrap();
        kept
    }

    /// `agp journal consistency CHECKPOINT` (plus `extra` args) against this home.
    pub fn consistency(&self, checkpoint: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "--home",
            self.home_arg(),
            "journal",
            "consistency",
            checkpoint.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// `agp verify --json` with the home's key (plus `extra` args): (exit code, report).
    pub fn verify(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--home", self.home_arg(), "verify", "--json"];
        args.extend_from_slice(extra);
        let o = run(&args);
        let report: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", text(&o)));
        (code(&o), report)
    }
}

/// The codes of the error findings, sorted and deduplicated.
pub fn error_codes(report: &Value) -> Vec<String> {
    let mut codes: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

pub fn finding<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding in {report:#}"))
}

/// Copies a journal folder (for rollbacks and forks) as `cp -a` would: subfolders
/// (`checkpoint.d`) recursively, symlinks (`checkpoint`, `checkpoint.latest`) as symlinks.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else if kind.is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Re-encodes a JSON line with its members in reverse order (valid JSON, not JCS).
pub fn reorder_keys(line: &str) -> String {
    let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    let parts: Vec<String> = v
        .iter()
        .rev()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}
