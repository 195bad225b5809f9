//! A throwaway project and home for evaluating calls against real files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use agp_contracts::{EvalContext, PolicyEngine, ToolCall, Verdict};
use agp_policy::Policy;
use serde_json::{json, Value};

pub const DEFAULT_POLICY: &str = include_str!("../../../../agp/assets/policy.toml");

pub struct World {
    _dir: tempfile::TempDir,
    pub project: PathBuf,
    pub home: PathBuf,
    pub ctx: EvalContext,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("proj");
        let home = dir.path().join("home");
        for d in ["src", ".git/hooks", "certs", ".claude"] {
            std::fs::create_dir_all(project.join(d)).expect("mkdir");
        }
        for d in [".ssh", ".aws", ".agp/keys"] {
            std::fs::create_dir_all(home.join(d)).expect("mkdir");
        }
        for (base, f) in [
            (&project, "src/main.rs"),
            (&project, ".env"),
            (&project, ".env.example"),
            (&project, "Cargo.toml"),
            (&home, ".ssh/id_rsa"),
            (&home, ".ssh/id_rsa.pub"),
            (&home, ".bashrc"),
            (&home, ".aws/credentials"),
        ] {
            std::fs::write(base.join(f), "x").expect("write");
        }
        let ctx = EvalContext {
            project_root: project.clone(),
            home: home.clone(),
            agp_home: home.join(".agp"),
        };
        Self {
            _dir: dir,
            project,
            home,
            ctx,
        }
    }

    pub fn call(&self, tool: &str, input: Value) -> ToolCall {
        call_in(tool, input, &self.project)
    }

    /// What `policy` says of the Bash command `command` run in the project.
    pub fn bash(&self, policy: &Policy, command: &str) -> Verdict {
        policy.evaluate(&self.call("Bash", json!({ "command": command })), &self.ctx)
    }
}

/// A verdict as failure lists show it: `decision (rule: reason)`.
pub fn outcome(v: &Verdict) -> String {
    format!(
        "{} ({}: {})",
        v.decision,
        v.rule_id.as_deref().unwrap_or("-"),
        v.reason
    )
}

/// A call of `tool` with `input`, made from the directory `cwd`.
pub fn call_in(tool: &str, input: Value, cwd: &Path) -> ToolCall {
    ToolCall {
        id: "c1".into(),
        session: "s1".into(),
        tool_use_id: None,
        tool: tool.into(),
        input,
        cwd: cwd.to_path_buf(),
    }
}
