//! The policy mode of a daemon (`[policy] mode`, `--mode`): whether the policy's verdicts are
//! enforced, only journaled, or not asked for at all.

use serde::{Deserialize, Serialize};

use crate::Decision;

/// How a daemon applies its policy. Whatever the mode, allowed calls still run in the sandbox
/// with its limits and egress rules: a mode changes what the *policy* does, nothing else.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Verdicts apply: deny refuses, require asks a human.
    #[default]
    Enforce,
    /// Every call is judged and the verdict journaled as it would have been
    /// (`shadow_verdict`), but the call runs and no approval is asked.
    Shadow,
    /// Calls are recorded and run; the policy does not judge them.
    Observe,
}

impl PolicyMode {
    pub const ALL: [PolicyMode; 3] = [PolicyMode::Enforce, PolicyMode::Shadow, PolicyMode::Observe];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Shadow => "shadow",
            PolicyMode::Observe => "observe",
        }
    }

    pub fn enforced(self) -> bool {
        self == PolicyMode::Enforce
    }
}

impl std::fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The word is not `enforce`, `shadow` or `observe`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a policy mode (enforce, shadow or observe)")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for PolicyMode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// What an unenforced policy said about a call (shadow mode), as journaled in
/// `policy.decided`'s `shadow_verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShadowVerdict {
    WouldAllow,
    WouldRequire,
    WouldDeny,
}

impl ShadowVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowVerdict::WouldAllow => "would_allow",
            ShadowVerdict::WouldRequire => "would_require",
            ShadowVerdict::WouldDeny => "would_deny",
        }
    }

    /// The decision the policy reached.
    pub fn decision(self) -> Decision {
        match self {
            ShadowVerdict::WouldAllow => Decision::Allow,
            ShadowVerdict::WouldRequire => Decision::Require,
            ShadowVerdict::WouldDeny => Decision::Deny,
        }
    }
}

impl From<Decision> for ShadowVerdict {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Allow => ShadowVerdict::WouldAllow,
            Decision::Require => ShadowVerdict::WouldRequire,
            Decision::Deny => ShadowVerdict::WouldDeny,
        }
    }
}

impl std::fmt::Display for ShadowVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_verdicts_read_exactly_the_words_serde_writes() {
        for m in PolicyMode::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(m.as_str().parse::<PolicyMode>(), Ok(m));
        }
        assert!("Shadow".parse::<PolicyMode>().is_err());
        for d in [Decision::Allow, Decision::Require, Decision::Deny] {
            let v = ShadowVerdict::from(d);
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{v}\""));
            assert_eq!(v.decision(), d);
        }
        assert_eq!(ShadowVerdict::WouldDeny.as_str(), "would_deny");
    }
}
