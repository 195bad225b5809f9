//! Running a policy's own `[[test]]` cases (`agp policy test`).

use agp_contracts::{EvalContext, PolicyEngine, Tool, ToolCall, Verdict};

use crate::file::{Policy, PolicyTest};

#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub test: PolicyTest,
    pub verdict: Verdict,
    /// `None` when the test passed, else what was wrong.
    pub failure: Option<String>,
}

/// Evaluates every `[[test]]` case; relative `cwd`s are relative to the project root.
pub fn run_tests(policy: &Policy, ctx: &EvalContext) -> Vec<TestOutcome> {
    policy
        .tests()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let cwd = match &t.cwd {
                Some(c) => ctx.project_root.join(c),
                None => ctx.project_root.clone(),
            };
            let call = ToolCall {
                id: format!("policy-test-{}", i + 1),
                session: "policy-test".into(),
                tool_use_id: None,
                tool: Tool::parse_name(&t.tool),
                input: t.input.clone(),
                cwd,
            };
            let verdict = policy.evaluate(&call, ctx);
            let mut failure = None;
            if verdict.decision != t.expect {
                failure = Some(format!(
                    "expected {}, got {} ({}: {})",
                    t.expect,
                    verdict.decision,
                    verdict.rule_id.as_deref().unwrap_or("default"),
                    verdict.reason
                ));
            } else if let Some(want) = &t.rule {
                // `rule = "default"` expects the policy default to decide.
                let got = verdict.rule_id.as_deref().unwrap_or("default");
                if got != want {
                    failure = Some(format!(
                        "expected rule `{want}` to decide, but `{}` did ({})",
                        verdict.rule_id.as_deref().unwrap_or("default"),
                        verdict.reason
                    ));
                }
            }
            TestOutcome {
                test: t.clone(),
                verdict,
                failure,
            }
        })
        .collect()
}
