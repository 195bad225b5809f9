//! Evaluation: one tool call → one [`Verdict`], judged part by part.

mod command;
mod files;
mod index;
mod mentions;
mod scene;
mod tools;

use std::path::Path;

use agp_contracts::{
    ApprovalSpec, Decision, EvalContext, PartFinding, PolicyEngine, ToolCall, Verdict,
};

use crate::file::{Policy, Rule};
use crate::guards::{GuardHit, GuardId};
use crate::matcher::{Matcher, Spec};

pub use index::RuleIndex;
pub use scene::{BaseCache, Scene};

/// Reason an argument only known at run time keeps a command from being allowed.
fn unknown_word(w: &str, why: &str) -> String {
    format!(
        "`{w}` is only known at run time ({why}); it could name a credential or a protected \
         file, so no rule can allow it"
    )
}

/// One part's judgment.
#[derive(Debug, Clone)]
struct Judgment {
    decision: Decision,
    rule_id: Option<String>,
    reason: String,
    approval: Option<ApprovalSpec>,
}

impl Judgment {
    fn is_self_denial(&self) -> bool {
        self.decision == Decision::Deny && self.rule_id.as_deref() == Some(crate::guards::AGP_SELF)
    }
}

/// Keeps the strictest judgment; on a tie the first one pushed stays.
#[derive(Default)]
struct Strictest(Option<Judgment>);

impl Strictest {
    fn push(&mut self, j: Judgment) {
        if self.0.as_ref().is_none_or(|b| j.decision > b.decision) {
            self.0 = Some(j);
        }
    }
    /// [`push`](Self::push) of a judgment with this `decision`, built only when it would be
    /// kept: most judgments lose to an earlier one, and building their reason costs allocations.
    fn push_with(&mut self, decision: Decision, make: impl FnOnce() -> Judgment) {
        if self.0.as_ref().is_none_or(|b| decision > b.decision) {
            let j = make();
            debug_assert_eq!(j.decision, decision);
            self.0 = Some(j);
        }
    }
    fn push_rule(&mut self, rule: &Rule, matcher: &Matcher, what: impl FnOnce() -> String) {
        self.push_with(rule.effect, || rule_judgment(rule, matcher, &what()));
    }
    fn guard(&mut self, policy: &Policy, hit: GuardHit) {
        if !policy.guard_enabled(hit.guard) {
            return;
        }
        let judgment = Judgment {
            decision: hit.decision,
            rule_id: Some(hit.guard.as_str().to_string()),
            reason: hit.reason,
            approval: None,
        };
        // agp protecting itself names the part's verdict even over another denial, so a mode
        // that does not enforce the policy still sees (and enforces) it.
        if judgment.is_self_denial() && !self.0.as_ref().is_some_and(Judgment::is_self_denial) {
            self.0 = Some(judgment);
        } else {
            self.push(judgment);
        }
    }
    fn builtin(&mut self, id: &str, decision: Decision, reason: impl Into<String>) {
        self.push(Judgment {
            decision,
            rule_id: Some(id.to_string()),
            reason: reason.into(),
            approval: None,
        });
    }
}

fn rule_judgment(rule: &Rule, matcher: &Matcher, what: &str) -> Judgment {
    Judgment {
        decision: rule.effect,
        rule_id: Some(rule.id.clone()),
        reason: rule.reason.clone().unwrap_or_else(|| {
            format!(
                "rule `{}` ({}) {}s {what}",
                rule.id, matcher.source, rule.effect
            )
        }),
        approval: rule.approval.clone(),
    }
}

/// Best rule among `candidates` (ascending rule order): deny > require > allow, then order.
fn best_rule(
    policy: &Policy,
    candidates: impl Iterator<Item = usize>,
    mut matches: impl FnMut(&Rule, &Matcher) -> bool,
) -> Option<(&Rule, &Matcher)> {
    let mut best: Option<(&Rule, &Matcher)> = None;
    for i in candidates {
        let rule = &policy.rules[i];
        if best.is_some_and(|(b, _)| rule.effect <= b.effect) {
            continue;
        }
        if let Some(m) = rule.matchers.iter().find(|m| matches(rule, m)) {
            best = Some((rule, m));
            if rule.effect == Decision::Deny {
                break;
            }
        }
    }
    best
}

impl Policy {
    fn default_judgment(&self, what: &str) -> Judgment {
        Judgment {
            decision: self.default,
            rule_id: None,
            reason: format!(
                "no rule matches {what}; the policy default is {}",
                self.default
            ),
            approval: None,
        }
    }

    /// Judges a call. Never fails: what cannot be judged is required or denied.
    pub fn evaluate_call(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict {
        if let Err(reason) = crate::schema::check(&call.tool, &call.input) {
            return self.single(Decision::Deny, "schema", &call.tool.name(), reason);
        }
        if self.guard_enabled(GuardId::Secrets) {
            let kinds = crate::redact::find_secrets_in_value(&call.input);
            if !kinds.is_empty() {
                return self.single(
                    Decision::Deny,
                    GuardId::Secrets.as_str(),
                    "input",
                    secrets_reason(&kinds),
                );
            }
        }
        let mut scene = Scene::with_cache(ctx, &call.cwd, &self.base_cache);
        scene.policy_files = std::sync::Arc::clone(&self.files);
        let judged = self.judge_tool(call, &mut scene);
        let mut deciding = 0;
        for (i, (_, j)) in judged.iter().enumerate() {
            let current = &judged[deciding].1;
            if j.decision > current.decision || (j.is_self_denial() && !current.is_self_denial()) {
                deciding = i;
            }
        }
        let (label, j) = &judged[deciding];
        let decision = j.decision;
        let approval = (decision == Decision::Require).then(|| {
            let mut spec = j.approval.clone().unwrap_or(ApprovalSpec {
                approvers: Vec::new(),
                quorum: 1,
                remember_secs: None,
            });
            for (_, other) in &judged {
                if other.decision == Decision::Require {
                    if let Some(a) = &other.approval {
                        spec.quorum = spec.quorum.max(a.quorum);
                    }
                }
            }
            spec
        });
        let reason = if judged.len() > 1 {
            format!("{} (part: {label})", j.reason)
        } else {
            j.reason.clone()
        };
        Verdict {
            decision,
            reason: crate::redact::redact_str(&reason),
            rule_id: j.rule_id.clone(),
            deciding_part: (judged.len() > 1).then(|| crate::redact::redact_str(label)),
            policy_sha256: self.sha256.clone(),
            approval,
            parts: judged
                .iter()
                .map(|(label, j)| PartFinding {
                    part: crate::redact::redact_str(label),
                    decision: j.decision,
                    rule_id: j.rule_id.clone(),
                    reason: crate::redact::redact_str(&j.reason),
                })
                .collect(),
        }
    }

    fn single(&self, decision: Decision, id: &str, part: &str, reason: String) -> Verdict {
        Verdict {
            decision,
            reason: reason.clone(),
            rule_id: Some(id.to_string()),
            deciding_part: None,
            policy_sha256: self.sha256.clone(),
            approval: (decision == Decision::Require).then(|| ApprovalSpec {
                approvers: Vec::new(),
                quorum: 1,
                remember_secs: None,
            }),
            parts: vec![PartFinding {
                part: part.to_string(),
                decision,
                rule_id: Some(id.to_string()),
                reason,
            }],
        }
    }
}

fn secrets_reason(kinds: &[&str]) -> String {
    format!(
        "the input contains a secret value ({}); never put secrets in tool inputs — refer to \
         them instead (e.g. an environment variable such as \"$API_TOKEN\", or a secret \
         reference your tooling resolves)",
        kinds.join(", ")
    )
}

fn path_spec_matches(m: &Matcher, p: &Path, scene: &Scene) -> bool {
    match &m.spec {
        Spec::All => true,
        Spec::Path(pat) => pat.matches(p, &scene.bases),
        _ => false,
    }
}

impl PolicyEngine for Policy {
    fn evaluate(&self, call: &ToolCall, ctx: &EvalContext) -> Verdict {
        // A bug in the engine must not take the gate down or let the call through.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.evaluate_call(call, ctx)
        }))
        .unwrap_or_else(|_| {
            self.single(
                Decision::Deny,
                "internal",
                &call.tool.name(),
                "the policy engine failed while judging this call".into(),
            )
        })
    }
    fn policy_sha256(&self) -> String {
        self.sha256.clone()
    }
}
