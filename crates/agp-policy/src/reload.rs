//! A policy that can be reloaded while in use: a reload that fails keeps the previous policy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use agp_contracts::{EvalContext, PolicyEngine, ToolCall, Verdict};

use crate::file::{Policy, PolicyError};

/// The policy in force plus where it came from. Cheap to share (`Arc`); evaluations in flight
/// keep the policy they started with.
#[derive(Debug)]
pub struct ReloadablePolicy {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
}

impl ReloadablePolicy {
    /// Loads the policy at `path`; fails (and nothing is in force) when it is malformed.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(Policy::load(path)?)),
        })
    }

    /// Re-reads the file. On error the previous policy stays in force and the error is returned
    /// (for the caller to report and journal); on success returns the new SHA-256.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let fresh = Arc::new(Policy::load(&self.path)?);
        let sha = fresh.sha256().to_string();
        match self.current.write() {
            Ok(mut slot) => *slot = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(sha)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PolicyEngine for ReloadablePolicy {
    fn evaluate(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict {
        self.current().evaluate(call, ctx)
    }
    fn policy_sha256(&self) -> String {
        self.current().sha256().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reload_keeps_the_previous_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "default = \"deny\"\n").unwrap();
        let p = ReloadablePolicy::load(&path).unwrap();
        let first = p.policy_sha256();
        std::fs::write(&path, "default = \"maybe\"\n").unwrap();
        let err = p.reload().unwrap_err();
        assert!(err.to_string().contains("policy.toml:1:11:"), "{err}");
        assert_eq!(p.policy_sha256(), first);
        std::fs::write(&path, "default = \"require\"\n").unwrap();
        let second = p.reload().unwrap();
        assert_ne!(second, first);
        assert_eq!(
            p.current().default_decision(),
            agp_contracts::Decision::Require
        );
    }
}
