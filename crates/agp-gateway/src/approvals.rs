//! Approvals from a console over the admin channel: `list_approvals` shows what waits for a
//! human, `decide_approval` answers one. The daemon names the approver itself (the connecting
//! process's OS user, SO_PEERCRED), never the message.

use agp_contracts::Tool;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a console may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebDecision {
    Allow,
    Deny,
    /// "Allow for this session": only where the request offers it (`remember_secs`).
    AllowSession,
}

impl WebDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            WebDecision::Allow => "allow",
            WebDecision::Deny => "deny",
            WebDecision::AllowSession => "allow_session",
        }
    }
}

/// One approval waiting for a human, as a console may show it. The input is the redacted one
/// the channel shows (cut when large); nothing secret is ever in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub session: String,
    pub call_id: String,
    /// `agp:egress` for a request to a destination nobody listed.
    pub tool: Tool,
    pub redacted_input: Value,
    /// The input was too large to list: `redacted_input` holds the start of its JSON text.
    #[serde(default)]
    pub input_truncated: bool,
    pub input_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub reason: String,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_secs: Option<u64>,
    /// Single use, bound to this call id, input hash and expiry: a decision must echo it.
    pub nonce: String,
    /// The configured channel that was asked as well (`terminal`, `slack`, ...).
    pub channel: String,
    /// Whether this console's user may allow it, and may deny it; `why_not` says why not.
    pub web_can_approve: bool,
    pub web_can_deny: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_not: Option<String>,
}

/// The answer to `list_approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalList {
    /// The identity decisions from this connection are journaled with (`tty:<user>`).
    pub approver: String,
    /// Decisions from the console are refused by the daemon (`[approvals] web = false`).
    pub view_only: bool,
    pub approvals: Vec<PendingApproval>,
    /// Pending approvals not listed (the list is bounded to fit one frame).
    #[serde(default)]
    pub omitted: u32,
}

/// A decision the daemon took: `granted` when the call (or destination) may now go ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionApplied {
    pub call_id: String,
    pub granted: bool,
    /// What the agent is told (who decided, or why it was denied).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMessage, ErrorCode, ServerMessage};
    use serde_json::json;

    #[test]
    fn a_decision_is_one_of_three_words_on_the_wire() {
        let m = ClientMessage::DecideApproval {
            protocol: 1,
            admin_token: "t".into(),
            call_id: "c1".into(),
            input_sha256: "ab".into(),
            nonce: "n".into(),
            decision: WebDecision::AllowSession,
            reason: None,
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            json!({"type": "decide_approval", "protocol": 1, "admin_token": "t",
                   "call_id": "c1", "input_sha256": "ab", "nonce": "n",
                   "decision": "allow_session"})
        );
        for word in ["maybe", "Allow", "allow_for_session", ""] {
            let mut bad = v.clone();
            bad["decision"] = json!(word);
            assert!(
                serde_json::from_value::<ClientMessage>(bad).is_err(),
                "{word:?}"
            );
        }
        let e = serde_json::to_value(ServerMessage::Error {
            code: ErrorCode::ApprovalRefused,
            message: "replayed: x".into(),
            id: None,
        })
        .unwrap();
        assert_eq!(e["code"], "approval_refused");
    }

    #[test]
    fn a_listing_round_trips() {
        let list = ServerMessage::Approvals(ApprovalList {
            approver: "tty:alice".into(),
            view_only: false,
            approvals: vec![PendingApproval {
                session: "s".into(),
                call_id: "c".into(),
                tool: "agp:egress".into(),
                redacted_input: json!({"egress": {"host": "example.com"}}),
                input_truncated: false,
                input_sha256: "ab".into(),
                rule_id: None,
                reason: "r".into(),
                approvers: vec![],
                quorum: 1,
                expires_at_ms: 5,
                remember_secs: Some(60),
                nonce: "n".into(),
                channel: "terminal".into(),
                web_can_approve: true,
                web_can_deny: true,
                why_not: None,
            }],
            omitted: 0,
        });
        let text = serde_json::to_string(&list).unwrap();
        assert!(text.starts_with(r#"{"type":"approvals","#), "{text}");
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), list);
    }
}
