//! [`Approvals`] from the `agp daemon` serving the home, over its socket with its admin token
//! (`list_approvals` / `decide_approval`). The daemon names the approver itself (this
//! process's OS user, by SO_PEERCRED) and checks the binding (nonce, input hash, expiry,
//! approvers, quorum); the console only forwards what the form carried.

use std::path::PathBuf;
use std::time::Duration;

use agp_gateway::{Client, ClientError, ErrorCode};

use crate::data::{
    ApprovalListing, Approvals, DataError, DecideRequest, Decided, PendingApproval, WebDecision,
};

/// Longest wait for the daemon's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct DaemonApprovals {
    socket: PathBuf,
    /// Read at each request: a restarted daemon has a new token.
    admin_token: PathBuf,
}

impl DaemonApprovals {
    pub fn new(socket: PathBuf, admin_token: PathBuf) -> Self {
        DaemonApprovals {
            socket,
            admin_token,
        }
    }

    fn connect(&self) -> Result<(Client, String), DataError> {
        let client = Client::connect(&self.socket, REPLY_TIMEOUT).map_err(|_| {
            DataError::Unavailable(format!(
                "no agp daemon answers on {}: start `agp daemon` (or `agp daemon --console`) to \
                 see and decide approvals",
                self.socket.display()
            ))
        })?;
        let token = std::fs::read_to_string(&self.admin_token).map_err(|e| {
            DataError::Unavailable(format!(
                "the daemon's admin token {} is unreadable: {e}",
                self.admin_token.display()
            ))
        })?;
        Ok((client, token.trim().to_owned()))
    }
}

fn refused(e: ClientError) -> DataError {
    match e {
        ClientError::Refused {
            code: ErrorCode::ApprovalRefused,
            message,
        } => DataError::Refused(message),
        ClientError::Refused { message, .. } => DataError::Refused(message),
        other => DataError::Failed(format!("the agp daemon: {other}")),
    }
}

fn shown_input(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Approvals for DaemonApprovals {
    fn list(&self) -> Result<ApprovalListing, DataError> {
        let (mut client, token) = self.connect()?;
        let list = client.list_approvals(&token).map_err(refused)?;
        Ok(ApprovalListing {
            approver: list.approver,
            view_only: list.view_only,
            omitted: list.omitted,
            items: list
                .approvals
                .into_iter()
                .map(|p| PendingApproval {
                    redacted_input: shown_input(&p.redacted_input),
                    session: p.session,
                    call_id: p.call_id,
                    tool: p.tool.to_string(),
                    input_truncated: p.input_truncated,
                    input_sha256: p.input_sha256,
                    rule_id: p.rule_id,
                    reason: p.reason,
                    approvers: p.approvers,
                    quorum: p.quorum,
                    expires_at_ms: p.expires_at_ms,
                    remember_secs: p.remember_secs,
                    channel: p.channel,
                    nonce: p.nonce,
                    web_can_approve: p.web_can_approve,
                    web_can_deny: p.web_can_deny,
                    why_not: p.why_not,
                })
                .collect(),
        })
    }

    fn decide(&self, d: &DecideRequest) -> Result<Decided, DataError> {
        let (mut client, token) = self.connect()?;
        // The client sends the call id, input hash and nonce of the entry it is given; the
        // rest of the entry is what the listing showed and is not sent.
        let pending = agp_gateway::PendingApproval {
            session: String::new(),
            call_id: d.call_id.clone(),
            tool: agp_contracts::Tool::parse_name(""),
            redacted_input: serde_json::Value::Null,
            input_truncated: false,
            input_sha256: d.input_sha256.clone(),
            rule_id: None,
            reason: String::new(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: 0,
            remember_secs: None,
            nonce: d.nonce.clone(),
            channel: String::new(),
            web_can_approve: false,
            web_can_deny: false,
            why_not: None,
        };
        let decision = match d.decision {
            WebDecision::Allow => agp_gateway::WebDecision::Allow,
            WebDecision::Deny => agp_gateway::WebDecision::Deny,
            WebDecision::AllowSession => agp_gateway::WebDecision::AllowSession,
        };
        let applied = client
            .decide_approval(&token, &pending, decision, d.reason.as_deref())
            .map_err(refused)?;
        Ok(Decided {
            granted: applied.granted,
            reason: applied.reason,
        })
    }
}
