//! The daemon's policy mode: what agp does with the policy's word on a call. Enforced, the
//! verdict is the policy's; in shadow the policy judges but the call goes ahead (its verdict
//! journaled as `shadow_verdict`); in observe the policy is not asked. What is not the
//! policy's (a malformed input, a replayed id, the sandbox and its limits, egress) applies in
//! every mode.

use agp_contracts::events::PolicyDecided;
use agp_contracts::{
    Decision, EvalContext, PolicyEngine, PolicyMode, ShadowVerdict, ToolCall, Verdict,
};

/// The rule id journaled for calls of an observe-mode daemon (nothing judged them).
pub(crate) const OBSERVE_RULE: &str = "agp.observe";

/// What agp does with `call` (the verdict the loop acts on) and the `policy.decided` entry
/// that records it.
pub(super) fn judge(
    policy: &dyn PolicyEngine,
    mode: PolicyMode,
    call: &ToolCall,
    ctx: &EvalContext,
    input_sha256: &str,
) -> (Verdict, PolicyDecided) {
    let decided = |v: &Verdict| PolicyDecided {
        call_id: call.id.clone(),
        tool: call.tool.clone(),
        input_sha256: Some(input_sha256.to_owned()),
        decision: v.decision,
        reason: v.reason.clone(),
        rule_id: v.rule_id.clone(),
        deciding_part: Some(v.deciding_part.clone()),
        policy_sha256: v.policy_sha256.clone(),
        parts: Some(v.parts.clone()),
        mode: None,
        shadow_verdict: None,
    };
    match mode {
        PolicyMode::Enforce => {
            let verdict = policy.evaluate(call, ctx);
            let record = decided(&verdict);
            (verdict, record)
        }
        PolicyMode::Shadow | PolicyMode::Observe => {
            let judged = policy.evaluate(call, ctx);
            if let Some(enforced) = self_protection(&judged) {
                let record = PolicyDecided {
                    mode: Some(mode),
                    ..decided(&enforced)
                };
                return (enforced, record);
            }
            if mode == PolicyMode::Observe {
                return observed(policy, mode, &decided);
            }
            let would = ShadowVerdict::from(judged.decision);
            let record = PolicyDecided {
                decision: Decision::Allow,
                mode: Some(mode),
                shadow_verdict: Some(would),
                ..decided(&judged)
            };
            let goes_ahead = Verdict {
                decision: Decision::Allow,
                reason: format!("agp shadow mode, not enforced ({would}): {}", judged.reason),
                approval: None,
                ..judged
            };
            (goes_ahead, record)
        }
    }
}

/// agp protecting its own home, keys and the policy in force (the `agp-self` guard) holds in
/// every mode: a mode tries out the user's policy, it does not hand the agent the audit trail.
/// The denial is the verdict's own when any part of the call carries it.
fn self_protection(judged: &Verdict) -> Option<Verdict> {
    let is_self = |rule: Option<&str>| rule == Some(agp_contracts::AGP_SELF_RULE);
    let part = judged
        .parts
        .iter()
        .find(|p| p.decision == Decision::Deny && is_self(p.rule_id.as_deref()));
    if judged.decision == Decision::Deny && is_self(judged.rule_id.as_deref()) {
        return Some(Verdict {
            reason: format!("enforced in every mode: {}", judged.reason),
            ..judged.clone()
        });
    }
    part.map(|p| Verdict {
        decision: Decision::Deny,
        reason: format!("enforced in every mode: {}", p.reason),
        rule_id: p.rule_id.clone(),
        deciding_part: Some(p.part.clone()),
        approval: None,
        ..judged.clone()
    })
}

/// An observe-mode call: recorded, not judged (its verdict is not journaled).
fn observed(
    policy: &dyn PolicyEngine,
    mode: PolicyMode,
    decided: &dyn Fn(&Verdict) -> PolicyDecided,
) -> (Verdict, PolicyDecided) {
    let recorded = Verdict {
        decision: Decision::Allow,
        reason: "agp observe mode: recorded, not judged".into(),
        rule_id: Some(OBSERVE_RULE.into()),
        deciding_part: None,
        policy_sha256: policy.policy_sha256(),
        approval: None,
        parts: Vec::new(),
    };
    let record = PolicyDecided {
        deciding_part: None,
        parts: None,
        mode: Some(mode),
        ..decided(&recorded)
    };
    (recorded, record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Denies everything and counts how often it was asked.
    #[derive(Default)]
    struct DenyAll(AtomicUsize);

    impl PolicyEngine for DenyAll {
        fn evaluate(&self, _: &ToolCall, _: &EvalContext) -> Verdict {
            self.0.fetch_add(1, Ordering::SeqCst);
            Verdict {
                decision: Decision::Deny,
                reason: "no".into(),
                rule_id: Some("r".into()),
                deciding_part: None,
                policy_sha256: "p".into(),
                approval: None,
                parts: Vec::new(),
            }
        }
        fn policy_sha256(&self) -> String {
            "p".into()
        }
    }

    fn call() -> (ToolCall, EvalContext) {
        let call = ToolCall {
            id: "c1".into(),
            session: "s".into(),
            tool_use_id: None,
            tool: agp_contracts::Tool::Bash,
            input: serde_json::json!({"command": "rm -rf /"}),
            cwd: PathBuf::from("/r"),
        };
        let ctx = EvalContext {
            project_root: "/r".into(),
            home: "/h".into(),
            agp_home: "/h/.agp".into(),
        };
        (call, ctx)
    }

    #[test]
    fn enforced_verdicts_are_the_policys_and_say_no_mode() {
        let (c, ctx) = call();
        let (v, d) = judge(&DenyAll::default(), PolicyMode::Enforce, &c, &ctx, "h");
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(d.decision, Decision::Deny);
        assert_eq!((d.mode, d.shadow_verdict), (None, None));
    }

    #[test]
    fn shadow_judges_but_lets_the_call_go_ahead() {
        let (c, ctx) = call();
        let policy = DenyAll::default();
        let (v, d) = judge(&policy, PolicyMode::Shadow, &c, &ctx, "h");
        assert_eq!(policy.0.load(Ordering::SeqCst), 1);
        assert_eq!(v.decision, Decision::Allow);
        assert!(v.reason.contains("would_deny"), "{}", v.reason);
        assert_eq!(d.decision, Decision::Allow);
        assert_eq!(d.mode, Some(PolicyMode::Shadow));
        assert_eq!(d.shadow_verdict, Some(ShadowVerdict::WouldDeny));
        assert_eq!(d.rule_id.as_deref(), Some("r"));
    }

    #[test]
    fn observe_records_without_the_policys_verdict() {
        let (c, ctx) = call();
        let policy = DenyAll::default();
        let (v, d) = judge(&policy, PolicyMode::Observe, &c, &ctx, "h");
        // Asked only for agp's own protection, which this verdict does not carry.
        assert_eq!(policy.0.load(Ordering::SeqCst), 1);
        assert_eq!(v.decision, Decision::Allow);
        assert_eq!(d.mode, Some(PolicyMode::Observe));
        assert_eq!(d.shadow_verdict, None);
        assert_eq!(d.rule_id.as_deref(), Some(OBSERVE_RULE));
        assert_eq!(d.policy_sha256, "p");
    }

    /// A policy whose verdict denies one part of a compound call by agp's own guard, while the
    /// call as a whole is decided by another rule's denial.
    struct SelfDenialInAPart;

    impl PolicyEngine for SelfDenialInAPart {
        fn evaluate(&self, _: &ToolCall, _: &EvalContext) -> Verdict {
            let part = |part: &str, rule: &str| agp_contracts::PartFinding {
                part: part.into(),
                decision: Decision::Deny,
                rule_id: Some(rule.into()),
                reason: format!("{part} denied by {rule}"),
            };
            Verdict {
                decision: Decision::Deny,
                reason: "rm denied by no-rm".into(),
                rule_id: Some("no-rm".into()),
                deciding_part: Some("rm x".into()),
                policy_sha256: "p".into(),
                approval: None,
                parts: vec![
                    part("rm x", "no-rm"),
                    part("cat /h/.agp/keys/journal.key", agp_contracts::AGP_SELF_RULE),
                ],
            }
        }
        fn policy_sha256(&self) -> String {
            "p".into()
        }
    }

    #[test]
    fn agps_own_protection_holds_in_shadow_and_observe() {
        let (c, ctx) = call();
        for mode in [PolicyMode::Shadow, PolicyMode::Observe] {
            let (v, d) = judge(&SelfDenialInAPart, mode, &c, &ctx, "h");
            assert_eq!(v.decision, Decision::Deny, "{mode:?}");
            assert_eq!(
                v.rule_id.as_deref(),
                Some(agp_contracts::AGP_SELF_RULE),
                "{mode:?}"
            );
            assert!(v.reason.contains("enforced in every mode"), "{}", v.reason);
            assert!(v.reason.contains("keys"), "{}", v.reason);
            assert_eq!(d.decision, Decision::Deny, "{mode:?}");
            assert_eq!(d.mode, Some(mode));
            assert_eq!(d.shadow_verdict, None, "it was denied, not would-be");
        }
        // Another rule's denial alone is still only a would_deny in shadow.
        let (v, _) = judge(&DenyAll::default(), PolicyMode::Shadow, &c, &ctx, "h");
        assert_eq!(v.decision, Decision::Allow);
    }
}
