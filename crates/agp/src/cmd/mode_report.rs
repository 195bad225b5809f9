//! Anything but enforcing the policy is loud: the warning at every session start, and what an
//! unenforced session's calls would have met, from its journal, in the run summary.

use agp_contracts::events::{Event, PolicyDecided, SessionStarted};
use agp_contracts::{Decision, PolicyMode};
use serde_json::Value;

/// The warning printed when a daemon or session runs unenforced; `None` when enforced.
pub fn banner(mode: PolicyMode) -> Option<String> {
    match mode {
        PolicyMode::Enforce => None,
        PolicyMode::Shadow => Some(
            "agp: WARNING: policy mode SHADOW: the policy judges every call but does NOT \
             enforce it: calls it would deny or send for approval run anyway (in the sandbox, \
             where the session has one) and nobody is asked; verdicts are journaled as \
             would_deny / would_require"
                .into(),
        ),
        PolicyMode::Observe => Some(
            "agp: WARNING: policy mode OBSERVE: calls are journaled and run (in the sandbox, \
             where the session has one) WITHOUT being judged by the policy"
                .into(),
        ),
    }
}

/// What a session's journal says about its policy mode and its unenforced calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeTally {
    /// The mode of the session's latest start (a resumed session takes its new daemon's).
    pub mode: Option<PolicyMode>,
    pub would_deny: usize,
    pub would_require: usize,
    /// Calls an observing daemon let through without asking the policy.
    pub unjudged: usize,
}

impl ModeTally {
    /// Tallies a session's journal entries (envelopes with `kind` and `body`).
    pub fn of(entries: &[Value]) -> Self {
        let mut tally = Self::default();
        for entry in entries {
            let body = &entry["body"];
            match entry["kind"].as_str() {
                Some(SessionStarted::KIND) => {
                    if let Ok(started) = SessionStarted::from_body(body) {
                        tally.mode = started.policy_mode.or(tally.mode);
                    }
                }
                Some(PolicyDecided::KIND) => {
                    let Ok(decided) = PolicyDecided::from_body(body) else {
                        continue;
                    };
                    match (
                        decided.mode,
                        decided
                            .shadow_verdict
                            .map(agp_contracts::ShadowVerdict::decision),
                    ) {
                        (Some(_), Some(Decision::Deny)) => tally.would_deny += 1,
                        (Some(_), Some(Decision::Require)) => tally.would_require += 1,
                        (Some(PolicyMode::Observe), None) => tally.unjudged += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        tally
    }

    /// Whether any call of the session went unenforced (or the session was not enforced).
    pub fn unenforced(&self) -> bool {
        self.mode.is_some_and(|m| !m.enforced())
            || self.would_deny + self.would_require + self.unjudged > 0
    }

    /// The summary line; `None` for an enforced session.
    pub fn line(&self) -> Option<String> {
        if !self.unenforced() {
            return None;
        }
        let mode = self
            .mode
            .map_or("unknown", PolicyMode::as_str)
            .to_uppercase();
        let mut line = format!("agp: ⚠ policy mode {mode}: the policy was NOT enforced");
        if self.would_deny + self.would_require > 0 || self.mode == Some(PolicyMode::Shadow) {
            line.push_str(&format!(
                "; {} call(s) would have been denied and {} would have needed approval, and \
                 ran",
                self.would_deny, self.would_require
            ));
        }
        if self.unjudged > 0 {
            line.push_str(&format!("; {} call(s) ran unjudged", self.unjudged));
        }
        Some(line)
    }

    /// The `policy_mode` member of a `--json` summary.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "mode": self.mode.map(PolicyMode::as_str),
            "enforced": !self.unenforced(),
            "would_deny": self.would_deny,
            "would_require": self.would_require,
            "unjudged": self.unjudged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(mode: Option<PolicyMode>, would: Option<&str>) -> Value {
        let mut body = serde_json::json!({
            "call_id": "c", "tool": "Bash", "input_sha256": null, "decision": "allow",
            "reason": "r", "rule_id": null, "policy_sha256": "p",
        });
        if let Some(m) = mode {
            body["mode"] = serde_json::json!(m.as_str());
        }
        if let Some(w) = would {
            body["shadow_verdict"] = serde_json::json!(w);
        }
        serde_json::json!({"kind": "policy.decided", "body": body})
    }

    fn started(mode: &str) -> Value {
        serde_json::json!({"kind": "session.started",
            "body": {"intendant": "scripted", "repo": "/r", "policy_mode": mode}})
    }

    #[test]
    fn a_shadow_session_counts_what_would_have_been_refused() {
        let shadow = Some(PolicyMode::Shadow);
        let t = ModeTally::of(&[
            started("shadow"),
            decided(shadow, Some("would_deny")),
            decided(shadow, Some("would_deny")),
            decided(shadow, Some("would_require")),
            decided(shadow, Some("would_allow")),
        ]);
        assert_eq!((t.would_deny, t.would_require, t.unjudged), (2, 1, 0));
        let line = t.line().unwrap();
        assert!(line.contains("SHADOW") && line.contains("2 call(s) would have been denied"));
        assert_eq!(t.json()["enforced"], false);
    }

    #[test]
    fn an_enforced_session_says_nothing() {
        let t = ModeTally::of(&[started("enforce"), decided(None, None)]);
        assert!(!t.unenforced());
        assert_eq!(t.line(), None);
        assert_eq!(t.json()["mode"], "enforce");
        assert_eq!(banner(PolicyMode::Enforce), None);
    }

    #[test]
    fn an_observed_session_counts_its_unjudged_calls() {
        let t = ModeTally::of(&[started("observe"), decided(Some(PolicyMode::Observe), None)]);
        assert_eq!(t.unjudged, 1);
        assert!(t.line().unwrap().contains("OBSERVE"));
        assert!(banner(PolicyMode::Observe)
            .unwrap()
            .contains("WITHOUT being judged"));
    }
}
