//! The policy gate's verdicts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ToolCall;

/// What the gate says about a call. Ordered by strictness: `Allow < Require < Deny`, so the
/// verdict of a compound command is the maximum over its parts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Require,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Require => "require",
            Decision::Deny => "deny",
        }
    }
}

/// The word is not `allow`, `require` or `deny` (exactly, lowercase, as on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a decision (allow, require or deny)")]
pub struct UnknownDecision(pub String);

impl std::str::FromStr for Decision {
    type Err = UnknownDecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Decision::Allow, Decision::Require, Decision::Deny]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDecision(s.to_owned()))
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who must approve a `require` verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSpec {
    /// Identities allowed to approve (channel-specific ids, e.g. Slack user ids); empty means any
    /// approver the channel itself accepts.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Number of distinct approvers needed; at least 1.
    pub quorum: u32,
    /// For how long an identical approved call in the same session is not asked again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_secs: Option<u64>,
}

/// How one part of a (possibly compound) call was judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartFinding {
    /// The part as text, e.g. one simple command of a pipeline, or `write:/path` for a redirection.
    pub part: String,
    pub decision: Decision,
    /// Rule id or guard id that decided this part; `None` when the policy default applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub reason: String,
}

/// The rule id of the guard with which agp protects its own home, signing keys and the policy
/// in force. Its denials hold in every policy mode.
pub const AGP_SELF_RULE: &str = "agp-self";

/// The gate's answer for one call.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
    /// Rule or guard id that decided; `None` when the policy default applied.
    pub rule_id: Option<String>,
    /// The part of a compound command that decided, when there was more than one part.
    pub deciding_part: Option<String>,
    /// SHA-256 of the policy text that ruled, so an auditor knows which policy it was.
    pub policy_sha256: String,
    /// Present when `decision` is `Require`.
    pub approval: Option<ApprovalSpec>,
    /// Every part and how it was judged, for `explain` and for the journal.
    #[serde(default)]
    pub parts: Vec<PartFinding>,
}

/// Where a call is judged from: paths used to resolve `./`, `/`, `~/` in rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalContext {
    /// The repository the session governs (`/` in rules).
    pub project_root: PathBuf,
    /// The user's home (`~/` in rules).
    pub home: PathBuf,
    /// agp's own home, always protected from writes.
    pub agp_home: PathBuf,
}

/// The gate. Evaluation never fails: anything the engine cannot judge becomes `Deny` or
/// `Require` with a reason (fail closed).
pub trait PolicyEngine: Send + Sync {
    fn evaluate(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict;
    /// SHA-256 (hex) of the policy in force.
    fn policy_sha256(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_parse_exactly_the_words_serde_writes() {
        for d in [Decision::Allow, Decision::Require, Decision::Deny] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(d.as_str().parse::<Decision>(), Ok(d));
            assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
        }
        for bad in ["Allow", "ALLOW", "allow ", "", "ask", "block"] {
            assert_eq!(
                bad.parse::<Decision>(),
                Err(UnknownDecision(bad.to_owned()))
            );
            assert!(serde_json::from_str::<Decision>(&format!("{bad:?}")).is_err());
        }
    }
}
