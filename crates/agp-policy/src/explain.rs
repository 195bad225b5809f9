//! The verdict for one hypothetical tool call, as `agp policy explain` and the web console's
//! "explain this call" box ask for it: one definition of how such a call is built.

use std::path::Path;

use agp_contracts::{PolicyEngine as _, Tool, ToolCall, Verdict};

use crate::Policy;

/// Judges `tool` with `input` run from `cwd` (the project root when `None`) under `policy`.
/// The call carries the session and id `explain`, so it can never be mistaken for a real one.
pub fn explain_call(
    policy: &Policy,
    ctx: &agp_contracts::EvalContext,
    tool: &str,
    input: serde_json::Value,
    cwd: Option<&Path>,
) -> Verdict {
    let call = ToolCall {
        id: "explain".into(),
        session: "explain".into(),
        tool_use_id: None,
        tool: Tool::parse_name(tool),
        input,
        cwd: cwd.map_or_else(|| ctx.project_root.clone(), Path::to_path_buf),
    };
    policy.evaluate(&call, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_with_the_project_root_as_default_cwd() {
        let policy = Policy::from_str(
            "[[rule]]\nid = \"ls\"\neffect = \"allow\"\nmatch = [\"Bash(ls *)\"]\n",
            "p.toml",
        )
        .unwrap();
        let ctx = agp_contracts::EvalContext {
            project_root: "/repo".into(),
            home: "/home/u".into(),
            agp_home: "/home/u/.agp".into(),
        };
        let v = explain_call(
            &policy,
            &ctx,
            "Bash",
            serde_json::json!({"command": "ls -l"}),
            None,
        );
        assert_eq!(v.decision, agp_contracts::Decision::Allow);
        assert_eq!(v.rule_id.as_deref(), Some("ls"));
    }
}
