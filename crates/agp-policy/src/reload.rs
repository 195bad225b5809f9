//! A policy that can be reloaded while in use: a reload that fails keeps the previous policy.
//!
//! The policy in force is an `Arc<Policy>` behind a `RwLock`: a call takes the lock only to
//! clone the `Arc` (nanoseconds, against a journal append of milliseconds per call), so an
//! evaluation never holds it and a call in flight keeps the policy it started with. A reload
//! parses the new file outside that lock and swaps the `Arc` in, holding the lock only while
//! the change is recorded (a journal append, on a rare event); reloads themselves are
//! serialized, so two of them (the file watch and SIGHUP at once) cannot apply an older file
//! after a newer one, and each reports the policy it really replaced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use agp_contracts::{EvalContext, PolicyEngine, ToolCall, Verdict};

use crate::file::{Policy, PolicyError};

/// The policy in force plus where it came from. Cheap to share (`Arc`); evaluations in flight
/// keep the policy they started with.
#[derive(Debug)]
pub struct ReloadablePolicy {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
    reloading: Mutex<()>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The file holds another policy, now in force.
    Reloaded {
        old_sha256: String,
        new_sha256: String,
    },
    /// The file holds the policy already in force (same SHA-256): nothing changed.
    Unchanged { sha256: String },
}

/// A reload that failed: the policy `kept_sha256` stays in force.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ReloadRefused {
    /// Names `file:line:col` for a problem in the file.
    pub error: PolicyError,
    pub kept_sha256: String,
}

impl ReloadablePolicy {
    /// Loads the policy at `path`; fails (and nothing is in force) when it is malformed.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(Policy::load(path)?)),
            reloading: Mutex::new(()),
        })
    }

    /// Re-reads the file by its path (following a symlink anew, so a replaced file or a
    /// retargeted link is seen). On error the previous policy stays in force.
    pub fn reload(&self) -> Result<Reload, ReloadRefused> {
        match self.reload_recorded(|_| Ok::<(), std::convert::Infallible>(())) {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        }
    }

    /// [`Self::reload`], with `record` (e.g. the journal append of the change) run while the
    /// swap holds off every evaluation: no call is judged by a policy whose coming into force
    /// is not recorded, and every call that starts after the record is judged by the new one.
    /// When `record` fails, the previous policy stays and its error is returned.
    pub fn reload_recorded<E>(
        &self,
        record: impl FnOnce(&Reload) -> Result<(), E>,
    ) -> Result<Result<Reload, ReloadRefused>, E> {
        let _one_at_a_time = match self.reloading.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Only a reload changes the policy in force, and reloads hold `reloading`: what is
        // read here is what the swap below replaces.
        let old_sha256 = self.current().sha256().to_owned();
        let fresh = match Policy::load(&self.path) {
            Ok(p) => Arc::new(p),
            Err(error) => {
                return Ok(Err(ReloadRefused {
                    error,
                    kept_sha256: old_sha256,
                }))
            }
        };
        let new_sha256 = fresh.sha256().to_owned();
        if old_sha256 == new_sha256 {
            return Ok(Ok(Reload::Unchanged { sha256: new_sha256 }));
        }
        let outcome = Reload::Reloaded {
            old_sha256,
            new_sha256,
        };
        // Recorded while the new policy is in and no call can take a policy: once the record
        // is visible (say in the journal), the next call is judged by the new policy; when
        // recording fails, no call ever saw it.
        let mut slot = match self.current.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        let previous = std::mem::replace(&mut *slot, fresh);
        if let Err(e) = record(&outcome) {
            *slot = previous;
            return Err(e);
        }
        drop(slot);
        Ok(Ok(outcome))
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
    /// Judged by one policy, whose SHA-256 the verdict names, even when a reload lands meanwhile.
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
    use agp_contracts::Decision;

    #[test]
    fn failed_reload_keeps_the_previous_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "default = \"deny\"\n").unwrap();
        let p = ReloadablePolicy::load(&path).unwrap();
        let first = p.policy_sha256();
        std::fs::write(&path, "default = \"maybe\"\n").unwrap();
        let refused = p.reload().unwrap_err();
        assert!(
            refused.to_string().contains("policy.toml:1:11:"),
            "{refused}"
        );
        assert_eq!(refused.kept_sha256, first);
        assert_eq!(p.policy_sha256(), first);
        std::fs::write(&path, "default = \"require\"\n").unwrap();
        let Reload::Reloaded {
            old_sha256,
            new_sha256,
        } = p.reload().unwrap()
        else {
            panic!("a changed file is a reload");
        };
        assert_eq!(old_sha256, first);
        assert_ne!(new_sha256, first);
        assert_eq!(p.policy_sha256(), new_sha256);
        assert_eq!(p.current().default_decision(), Decision::Require);
    }

    #[test]
    fn the_same_policy_again_is_not_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "default = \"deny\"\n").unwrap();
        let p = ReloadablePolicy::load(&path).unwrap();
        let sha = p.policy_sha256();
        assert_eq!(p.reload().unwrap(), Reload::Unchanged { sha256: sha });
    }

    #[test]
    fn a_policy_taken_before_a_reload_keeps_judging_with_its_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "default = \"deny\"\n").unwrap();
        let p = ReloadablePolicy::load(&path).unwrap();
        let in_flight = p.current();
        std::fs::write(&path, "default = \"require\"\n").unwrap();
        p.reload().unwrap();
        assert_eq!(in_flight.default_decision(), Decision::Deny);
        assert_ne!(in_flight.sha256(), p.policy_sha256());
    }

    #[test]
    fn a_change_whose_record_fails_is_not_put_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "default = \"deny\"\n").unwrap();
        let p = ReloadablePolicy::load(&path).unwrap();
        let first = p.policy_sha256();
        std::fs::write(&path, "default = \"require\"\n").unwrap();
        let failed = p.reload_recorded(|_| Err("journal unavailable"));
        assert_eq!(failed.unwrap_err(), "journal unavailable");
        assert_eq!(p.policy_sha256(), first);
        assert_eq!(p.current().default_decision(), Decision::Deny);
    }

    #[test]
    fn a_symlinked_policy_is_read_through_its_link_anew() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, "default = \"deny\"\n").unwrap();
        std::fs::write(&b, "default = \"require\"\n").unwrap();
        let link = dir.path().join("policy.toml");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let p = ReloadablePolicy::load(&link).unwrap();
        let tmp = dir.path().join("policy.toml.new");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        assert!(matches!(p.reload().unwrap(), Reload::Reloaded { .. }));
        assert_eq!(p.current().default_decision(), Decision::Require);
    }
}
