//! `/policy`: the policy in force (read from its file at each visit, as a reload would) and an
//! "explain this call" box judging a hypothetical call with `agp_policy::explain`, the same
//! core `agp policy explain` uses. A GET: it changes nothing.

use std::path::PathBuf;

use agp_contracts::Verdict;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::sessions::css_word;
use super::{blocking, layout, problem, Nav};
use crate::data::DataError;
use crate::text::{shown, shown_lines};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ExplainParams {
    tool: Option<String>,
    input: Option<String>,
    cwd: Option<String>,
}

struct Read {
    text: String,
    verdict: Option<Result<Verdict, String>>,
}

pub async fn show(State(st): State<AppState>, Query(p): Query<ExplainParams>) -> Response {
    let settings = st.settings.clone();
    let asked = p.tool.as_deref().is_some_and(|t| !t.trim().is_empty());
    let (tool, input, cwd) = (
        p.tool.clone().unwrap_or_default(),
        p.input.clone().unwrap_or_default(),
        p.cwd.clone().unwrap_or_default(),
    );
    let path = settings.policy_path.clone();
    let read = blocking(move || {
        let Some(path) = settings.policy_path.clone() else {
            return Err(DataError::Unavailable(
                "no policy file is configured for this home".into(),
            ));
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| DataError::Failed(format!("cannot read {}: {e}", path.display())))?;
        let verdict = asked.then(|| {
            let policy = agp_policy::Policy::from_str(&text, &path.to_string_lossy())
                .map_err(|e| format!("the policy does not load: {e}"))?;
            let input: serde_json::Value = serde_json::from_str(if input.trim().is_empty() {
                "{}"
            } else {
                &input
            })
            .map_err(|e| format!("the input is not JSON: {e}"))?;
            let cwd = (!cwd.trim().is_empty()).then(|| PathBuf::from(cwd.trim()));
            Ok(agp_policy::explain::explain_call(
                &policy,
                &settings.eval_context,
                &tool,
                input,
                cwd.as_deref(),
            ))
        });
        Ok(Read { text, verdict })
    })
    .await;
    let body = html! {
        p { "File " code data-testid="policy-path" { (shown(&path.as_ref().map(|p| p.display().to_string()).unwrap_or_default())) } }
        h2 { "Explain this call" }
        form method="get" action="/policy" data-testid="explain-form" {
            label { "tool " input name="tool" value=(p.tool.as_deref().unwrap_or("Bash")) data-testid="explain-tool"; }
            " "
            label { "input (JSON) " input name="input" size="60" value=(p.input.as_deref().unwrap_or(r#"{"command":""}"#)) data-testid="explain-input"; }
            " "
            label { "cwd " input name="cwd" value=(p.cwd.as_deref().unwrap_or("")) placeholder="project root"; }
            " " button type="submit" data-testid="explain" { "Explain" }
        }
        @match &read {
            Err(e) => (problem(e)),
            Ok(r) => {
                @if let Some(v) = &r.verdict { (verdict(v)) }
                h2 { "Policy in force" }
                pre data-testid="policy-text" { (shown_lines(&r.text)) }
            }
        }
    };
    layout("Policy", Nav::Policy, &body)
}

fn verdict(v: &Result<Verdict, String>) -> Markup {
    match v {
        Err(e) => html! { p.err data-testid="explain-error" { (shown(e)) } },
        Ok(v) => html! {
            div data-testid="explain-verdict" data-decision=(v.decision.as_str()) {
                p { "decision " strong class=(css_word(v.decision.as_str())) { (v.decision.as_str()) } }
                p { "reason " (shown(&v.reason)) }
                p { "decided by " code { (shown(v.rule_id.as_deref().unwrap_or("the policy default"))) } }
                @if let Some(part) = &v.deciding_part { p { "deciding part " code { (shown(part)) } } }
                @if let Some(a) = &v.approval {
                    p { "approval: " (a.quorum) " of " @if a.approvers.is_empty() { "any approver" } @else { (shown(&a.approvers.join(", "))) } }
                }
                p { "policy sha256 " code { (v.policy_sha256) } }
                table {
                    tr { th { "part" } th { "decision" } th { "rule" } th { "reason" } }
                    @for part in &v.parts {
                        tr { td { code { (shown(&part.part)) } } td { (part.decision.as_str()) }
                             td { (shown(part.rule_id.as_deref().unwrap_or("default"))) } td { (shown(&part.reason)) } }
                    }
                }
            }
        },
    }
}
