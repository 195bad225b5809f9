//! Egress destinations a human decides about: a request to a host no rule or allowlist covers
//! (or a `require` rule of an inspected host) becomes an approval of its own kind, put to the
//! session's channel through the same path as a tool call's (`ask`): pending row, call id,
//! input hash, approver allowlist, quorum, approval timeout, `approval.*` journal entries.
//!
//! It is not a tool call: no `tool_call.requested` or `policy.decided` is journaled for it and
//! the policy is not consulted (the policy judges tool calls; the egress rules judged this
//! request already). The approval carries the reserved tool name [`EGRESS_TOOL`], which the
//! gateway refuses from harnesses, so a prompt for a destination cannot be posed by an agent.

use serde_json::{json, Value};

use super::*;
use crate::store::RememberedKey;

/// The tool name egress approvals carry; refused as a harness's tool name.
pub use agp_contracts::approval::EGRESS_TOOL;
/// The rule id egress approvals carry, and the rule of a remembered host.
pub const EGRESS_RULE: &str = "agp.egress.destination";
/// How long "allow this host for the session" lasts at most; the answer is bound to the
/// session, so it ends with it anyway.
const HOST_FOR_SESSION_SECS: u64 = 7 * 24 * 3600;

/// One request the egress proxy wants a human to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressAsk {
    pub method: String,
    pub host: String,
    pub port: u16,
    /// The request's path, when known (not for CONNECT, whose requests stay encrypted).
    pub path: Option<String>,
    /// Why it is asked: the egress rule that said `require`, or that no rule covers the host.
    pub reason: String,
}

/// How it ended. Only a journaled grant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressAnswer {
    pub allowed: bool,
    /// Who decided, or why it was refused.
    pub reason: String,
}

impl Mediator {
    /// Asks the session's channel whether `ask` may go out. Every path that is not a journaled
    /// grant refuses. A grant "for this session" covers later requests to the same host and
    /// port in this session.
    pub async fn approve_egress(&self, session_id: &str, ask: EgressAsk) -> EgressAnswer {
        let refused = |reason: String| EgressAnswer {
            allowed: false,
            reason,
        };
        let Some(session) = self.sessions.by_id(session_id) else {
            return refused("the session is not live; refused".into());
        };
        let admitted = session.gate.read().await;
        if session.is_ended() {
            return refused("the session ended before approval was asked; refused".into());
        }
        let channel = self.parts.channel.name().to_owned();
        let destination = json!({ "host": ask.host, "port": ask.port });
        let Ok(host_sha256) = agp_contracts::canonical::sha256_of_value(&destination) else {
            return refused("the destination cannot be hashed; refused".into());
        };
        let key = RememberedKey {
            session: session.id.clone(),
            rule_id: EGRESS_RULE.into(),
            tool: EGRESS_TOOL.into(),
            cwd: String::new(),
            input_sha256: host_sha256,
            policy_sha256: String::new(),
        };
        let call_id = match crate::util::random_hex(8) {
            Ok(r) => format!("egress-{r}"),
            Err(e) => return refused(format!("no call id for the approval ({e}); refused")),
        };
        let input = egress_input(&ask, session.recent_call().as_ref());
        let Ok(input_sha256) = agp_contracts::canonical::sha256_of_value(&input) else {
            return refused("the request cannot be hashed; refused".into());
        };

        if let Some(by) = self.remembered_by(&key).await {
            let granted = ev::ApprovalGranted {
                call_id,
                input_sha256,
                by: by.clone(),
                channel,
                remembered: Some(true),
                waited_ms: None,
            };
            return match self.record(Some(&session.id), &granted).await {
                Ok(()) => EgressAnswer {
                    allowed: true,
                    reason: format!("host allowed for the session by {}", approver_names(&by)),
                },
                Err(e) => refused(format!("agp could not journal the approval ({e}); refused")),
            };
        }

        let request = ApprovalRequest {
            session: session.id.clone(),
            call_id,
            tool: agp_contracts::Tool::parse_name(EGRESS_TOOL),
            redacted_input: input,
            input_sha256,
            rule_id: Some(EGRESS_RULE.into()),
            reason: ask.reason.clone(),
            approvers: self.config.egress_approvers.clone(),
            quorum: 1,
            expires_at_ms: 0,
            remember_secs: Some(HOST_FOR_SESSION_SECS),
        };
        // Nobody disconnects from an egress approval: the proxy bounds its own wait, and this
        // runs to its end so the pending approval is always settled.
        let (_keep, abandon) = Abandon::new();
        let end = self
            .ask(
                &session,
                request,
                Some((HOST_FOR_SESSION_SECS, key)),
                admitted,
                &abandon,
            )
            .await;
        EgressAnswer {
            allowed: end.granted,
            reason: match (end.granted, end.by) {
                (true, Some(by)) => format!("approved by {by}"),
                _ => end.reason,
            },
        }
    }
}

/// What the approver sees and the approval's hash binds: the request and the agent's most
/// recent call (redacted as journaled).
fn egress_input(ask: &EgressAsk, recent_call: Option<&Value>) -> Value {
    json!({
        "egress": {
            "method": ask.method,
            "host": ask.host,
            "port": ask.port,
            "path": ask.path,
        },
        "agent_recent_call": recent_call,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_binds_method_host_port_path_and_the_recent_call() {
        let ask = EgressAsk {
            method: "GET".into(),
            host: "example.com".into(),
            port: 443,
            path: Some("/a".into()),
            reason: "no rule covers example.com:443".into(),
        };
        let base = agp_contracts::canonical::sha256_of_value(&egress_input(&ask, None)).unwrap();
        let mut other = ask.clone();
        other.path = Some("/b".into());
        let changed = [
            egress_input(&other, None),
            egress_input(&ask, Some(&json!({"tool": "Bash"}))),
        ];
        for v in changed {
            assert_ne!(agp_contracts::canonical::sha256_of_value(&v).unwrap(), base);
        }
    }
}
