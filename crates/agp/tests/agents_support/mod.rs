//! Shared by the real-agent tests (`agents_claude.rs`, `agents_codex.rs`): finds the pinned
//! Claude Code and Codex installs (`.ci/run` puts them under `target/agent-clients`), builds an
//! agp home with a test policy, and reads the journal.
//!
//! When a client is not installed the tests SKIP WITH A LOUD MESSAGE (never silently); with
//! `AGP_REQUIRE_AGENT_CLIENTS=1` they fail instead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const AGP: &str = env!("CARGO_BIN_EXE_agp");

pub const CLAUDE_VERSION: &str = "2.1.331";
pub const CODEX_VERSION: &str = "0.169.0";

/// Policy for the tests: echo/cat/python3 allowed (python3's writes and connections are
/// invisible to the policy, which is what the sandbox and egress tests need), writes inside the
/// project allowed, `mkdir` needs a human, everything else denied.
pub const POLICY: &str = r#"
version = 1
default = "deny"

[[rule]]
id = "harmless"
effect = "allow"
match = ["Bash(echo *)", "Bash(cat *)", "Bash(ls *)", "Bash(python3 *)"]
reason = "harmless commands"

[[rule]]
id = "write-project"
effect = "allow"
match = ["Edit(/**)"]
reason = "writing inside the project"

[[rule]]
id = "docs-site"
effect = "allow"
match = ["WebFetch(domain:allowed.example)"]
reason = "the docs site"

[[rule]]
id = "needs-human"
effect = "require"
match = ["Bash(mkdir *)"]
reason = "creating directories needs a human"
"#;

fn agent_dir() -> PathBuf {
    match std::env::var_os("AGP_AGENT_CLIENTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/agent-clients"),
    }
}

fn installed(path: PathBuf, version: &str, what: &str) -> Option<PathBuf> {
    let ok = Command::new(&path)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(version))
        .unwrap_or(false);
    if ok {
        return Some(path);
    }
    let msg = format!(
        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {what} {version} is not installed at {}\n\
         !!! (the npm registry was unreachable when .ci/run tried to install it).\n\
         !!! Install: npm install --prefix target/agent-clients {}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        path.display(),
        if what == "Claude Code" {
            format!("@anthropic-ai/claude-code@{version}")
        } else {
            format!("@openai/codex@{version}")
        }
    );
    if std::env::var_os("AGP_REQUIRE_AGENT_CLIENTS").is_some() {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must never be silent.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    None
}

pub fn claude() -> Option<PathBuf> {
    installed(
        agent_dir().join("node_modules/@anthropic-ai/claude-code/bin/claude.exe"),
        CLAUDE_VERSION,
        "Claude Code",
    )
}

pub fn codex() -> Option<PathBuf> {
    installed(
        agent_dir().join(
            "node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex",
        ),
        CODEX_VERSION,
        "Codex",
    )
}

/// A fresh agp home (initialized, keyed), a repository and the test policy, in one tempdir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub policy: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agp-agents-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        for args in [&["init"][..], &["keygen"][..]] {
            let out = Command::new(AGP)
                .arg("--home")
                .arg(&home)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "agp {args:?}: {}", text(&out.stderr));
        }
        Self {
            dir,
            home,
            repo,
            policy,
        }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `agp run` for a live agent, headless, with answers for approvals from `approvals`.
    pub fn run(&self, intendant: &str, env: &[(&str, &str)], approvals: &str) -> Output {
        let script = self.file("approvals.txt", approvals);
        let mut cmd = Command::new(AGP);
        cmd.arg("--home")
            .arg(&self.home)
            .args(["run", "--intendant", intendant, "--repo"])
            .arg(&self.repo)
            .args(["--task", "do the scripted work", "--policy"])
            .arg(&self.policy)
            .arg("--approver-script")
            .arg(&script)
            .args(["--approval-timeout", "20"])
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn journal(&self) -> Vec<Value> {
        journal(&self.home)
    }

    pub fn verify(&self) -> Output {
        Command::new(AGP)
            .arg("--home")
            .arg(&self.home)
            .arg("verify")
            .output()
            .unwrap()
    }
}

pub fn journal(home: &Path) -> Vec<Value> {
    std::fs::read_to_string(home.join("journal/entries.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The journal entries of one kind for one call id.
pub fn of_call<'a>(j: &'a [Value], kind: &str, call: &str) -> Vec<&'a Value> {
    j.iter()
        .filter(|e| e["kind"] == kind && e["body"]["call_id"] == call)
        .collect()
}

/// The journal's call id of the n-th (1-based) scripted tool call of the fake model.
pub fn call_id(n: u64) -> String {
    format!("tu:toolu_fake_{n}")
}

/// The same for Codex (the Responses API names calls `call_…`).
pub fn codex_call_id(n: u64) -> String {
    format!("tu:call_fake_{n}")
}

/// The tool result text the model received for a call id (the harness's id, without `tu:`).
pub fn result_for(results: &[(String, String, Option<bool>)], harness_id: &str) -> String {
    results
        .iter()
        .find(|(id, _, _)| id == harness_id)
        .map(|(_, t, _)| t.clone())
        .unwrap_or_else(|| panic!("the model never got a result for {harness_id}: {results:?}"))
}

/// A path outside everything the sandbox binds, which exists on the host.
pub fn host_only_dir(world: &World) -> PathBuf {
    let p = world.dir.path().join("outside");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Programs the agent runs with `python3 FILE` (allowed by policy): what they do is invisible
/// to the policy, so only the sandbox and the egress proxy stand in the way.
pub fn write_scripts(world: &World, outside: &std::path::Path, settings: &str) {
    let w = |name: &str, body: String| std::fs::write(world.repo.join(name), body).unwrap();
    w(
        "escape.py",
        format!(
            "open({:?}, 'w').write('x')\n",
            outside.display().to_string()
        ),
    );
    w(
        "edit_settings.py",
        format!("open({settings:?}, 'w').write('{{}}')\n"),
    );
    w(
        "fetch_allowed.py",
        "import urllib.request as u\ntry:\n    u.urlopen('http://allowed.example/docs', timeout=10)\n\
         except Exception as e:\n    print('fetch failed:', e)\n"
            .into(),
    );
    w(
        "fetch.py",
        "import urllib.request as u\nu.urlopen('http://blocked.example/x', timeout=10)\n".into(),
    );
}
