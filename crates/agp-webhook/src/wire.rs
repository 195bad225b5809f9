//! The JSON documents on the wire (README "Webhook approvals" describes them for receivers).

use agp_contracts::ApprovalRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `type` of an approval request document.
pub const REQUEST_TYPE: &str = "agp.approval.request";
/// Bumped on any incompatible change of either document.
pub const VERSION: u32 = 1;
/// Path of the decision endpoint on agp's listener.
pub const DECISION_PATH: &str = "/agp/v1/decision";
/// Characters of the input summary; the whole redacted input is in `input`.
pub const SUMMARY_CHARS: usize = 600;

/// What agp POSTs to the receiver for one approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDoc {
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u32,
    pub session: String,
    pub call_id: String,
    pub tool: String,
    /// One line for a chat message: the command of a shell call, else compact JSON; cut at
    /// [`SUMMARY_CHARS`]. Redacted.
    pub input_summary: String,
    /// The whole redacted input.
    pub input: Value,
    pub input_sha256: String,
    pub rule: Option<String>,
    pub reason: String,
    /// Who may decide this call (the configured approvers the rule allows).
    pub approvers: Vec<String>,
    /// Distinct `allow` decisions needed; any `deny` wins.
    pub quorum: u32,
    /// Single-use: echoed in every decision about this call.
    pub nonce: String,
    /// Unix milliseconds after which decisions are refused and the call is denied.
    pub expires_at_ms: u64,
    /// Where decisions go (POST, signed the same way).
    pub callback_url: String,
}

impl RequestDoc {
    pub fn new(
        request: &ApprovalRequest,
        approvers: Vec<String>,
        nonce: &str,
        callback_url: &str,
    ) -> Self {
        RequestDoc {
            kind: REQUEST_TYPE.to_owned(),
            version: VERSION,
            session: request.session.clone(),
            call_id: request.call_id.clone(),
            tool: request.tool.name().to_string(),
            input_summary: summary(&request.redacted_input),
            input: request.redacted_input.clone(),
            input_sha256: request.input_sha256.clone(),
            rule: request.rule_id.clone(),
            reason: request.reason.clone(),
            approvers,
            quorum: request.quorum.max(1),
            nonce: nonce.to_owned(),
            expires_at_ms: request.expires_at_ms,
            callback_url: callback_url.to_owned(),
        }
    }
}

/// The command of a shell call, else the compact JSON of the input, cut to
/// [`SUMMARY_CHARS`] characters (an ellipsis marks the cut).
pub fn summary(input: &Value) -> String {
    let text = match input.get("command").and_then(Value::as_str) {
        Some(cmd) => cmd.to_owned(),
        None => input.to_string(),
    };
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(SUMMARY_CHARS).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What the receiver POSTs back to agp's listener. Unknown members are refused: a receiver
/// that thinks it said something agp did not read must find out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionDoc {
    pub call_id: String,
    pub input_sha256: String,
    pub nonce: String,
    pub decision: Decision,
    /// The deciding person's identity, as listed in `approvers`.
    pub approver: String,
    /// A display name for the journal; defaults to `approver`.
    #[serde(default)]
    pub approver_name: Option<String>,
    /// Why (a deny's reason is shown to the agent).
    #[serde(default)]
    pub reason: Option<String>,
}

/// agp's answer to a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// `counted` (more approvals needed), `granted`, `denied`, or `refused`.
    pub status: String,
    /// Why a decision was refused (`bad_signature`, `replayed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub have: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_prefers_the_command_and_cuts_long_input() {
        assert_eq!(summary(&json!({"command": "ls -l"})), "ls -l");
        assert_eq!(summary(&json!({"path": "/a"})), r#"{"path":"/a"}"#);
        let long = summary(&json!({"command": "é".repeat(SUMMARY_CHARS + 5)}));
        assert_eq!(long.chars().count(), SUMMARY_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_decision_with_an_unknown_member_or_verdict_is_refused() {
        let ok = json!({"call_id": "c", "input_sha256": "h", "nonce": "n",
                        "decision": "allow", "approver": "alice"});
        assert!(serde_json::from_value::<DecisionDoc>(ok.clone()).is_ok());
        let mut extra = ok.clone();
        extra["quorum"] = json!(0);
        assert!(serde_json::from_value::<DecisionDoc>(extra).is_err());
        let mut odd = ok;
        odd["decision"] = json!("ALLOW");
        assert!(serde_json::from_value::<DecisionDoc>(odd).is_err());
    }
}
