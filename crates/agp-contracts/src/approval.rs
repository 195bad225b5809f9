//! Human approval of `require` verdicts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::BoxFuture;

/// What an approver is asked to decide. Bound to one exact call by `call_id` and
/// `input_sha256`: an outcome for any other pair must be refused by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub session: String,
    pub call_id: String,
    /// Serialized as the exact name the harness sent.
    pub tool: crate::Tool,
    /// The input after redaction: never show an approver a secret value.
    pub redacted_input: Value,
    pub input_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub reason: String,
    /// Allowed approver identities (empty: whoever the channel itself accepts).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Unix time in milliseconds after which the request is void (a timeout denies).
    pub expires_at_ms: u64,
    /// Set when the rule lets an approver answer "allow for this session" (its `remember`
    /// bound, in seconds): only then may a channel offer that answer. `None`: approve once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember_secs: Option<u64>,
}

impl ApprovalRequest {
    /// The first 12 hex digits of `input_sha256`, for display next to the call. The full hash
    /// stays the binding; the short form only helps a human match what they saw elsewhere.
    pub fn short_hash(&self) -> &str {
        let end = self
            .input_sha256
            .char_indices()
            .nth(12)
            .map_or(self.input_sha256.len(), |(i, _)| i);
        &self.input_sha256[..end]
    }
}

/// The tool name of an egress approval: a request to a destination nobody listed, put to the
/// channel by agp itself (its input: `egress` {method, host, port, path} and
/// `agent_recent_call`). Harnesses cannot send tools named `agp:…`.
pub const EGRESS_TOOL: &str = "agp:egress";

impl ApprovalRequest {
    /// `(method, host:port, path)` of an egress approval; `None` for a tool call.
    pub fn egress_target(&self) -> Option<(String, String, Option<String>)> {
        if self.tool.name() != EGRESS_TOOL {
            return None;
        }
        let e = self.redacted_input.get("egress")?;
        let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        let host = text("host")?;
        let port = e.get("port").and_then(Value::as_u64)?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Some((text("method").unwrap_or_default(), authority, text("path")))
    }
}

/// Values of [`Approver::via`] used by the channels agp ships.
pub mod via {
    /// A person at the controlling terminal.
    pub const TERMINAL: &str = "terminal";
    /// Answers read from an `--approver-script` file: a test and demo facility, never a person.
    pub const TERMINAL_SCRIPT: &str = "terminal-script";
    /// `--auto-approve`: nobody looked at the call.
    pub const AUTO: &str = "auto";
    pub const SLACK: &str = "slack";
    pub const WEB: &str = "web";
    /// A decision a team's own receiver sent back, signed, to agp's webhook listener.
    pub const WEBHOOK: &str = "webhook";
}

/// A person (or, loudly, a flag such as `--auto-approve`) who decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Approver {
    /// Channel-specific identity: Slack user id, `tty:<user>`, `auto-approve`, ...
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The channel it came through (`terminal`, `slack`, `web`, `auto`).
    pub via: String,
}

impl Approver {
    /// The approver journaled for every call granted under `--auto-approve`.
    pub fn auto_approve() -> Self {
        Approver {
            id: "auto-approve".to_owned(),
            name: "--auto-approve".to_owned(),
            via: via::AUTO.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ApprovalOutcome {
    /// Quorum reached.
    Granted { by: Vec<Approver> },
    /// Quorum reached, and every approver counted chose "allow for this session": the daemon
    /// remembers the grant for this exact call within the rule's `remember` bound. A channel
    /// returns it only for a request with `remember_secs`; the daemon treats it as a plain
    /// grant otherwise.
    #[serde(rename = "granted_for_session")]
    GrantedForSession { by: Vec<Approver> },
    /// Someone allowed to decide said no (any deny wins).
    Denied {
        by: Approver,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Nobody decided in time.
    Timeout,
    /// The channel could not put the question to anyone (no TTY, channel down, ...).
    Unavailable { reason: String },
}

impl ApprovalOutcome {
    /// Only a reached quorum lets a call run; every other outcome denies it.
    pub fn is_granted(&self) -> bool {
        self.granted_by().is_some_and(|by| !by.is_empty())
    }

    /// Who granted, for either kind of grant.
    pub fn granted_by(&self) -> Option<&[Approver]> {
        match self {
            ApprovalOutcome::Granted { by } | ApprovalOutcome::GrantedForSession { by } => Some(by),
            _ => None,
        }
    }
}

/// Who asked to stop a session, and why (the kill switch: `agp sessions stop`, a channel's
/// Stop button).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub session: String,
    pub by: Approver,
    pub reason: Option<String>,
}

/// What stopping a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The session was live and is now ended; these approvals were cancelled.
    Stopped { cancelled_approvals: Vec<String> },
    /// The session had already ended: nothing was changed.
    AlreadyEnded,
    /// No such session is known.
    Unknown,
}

/// The daemon's side of a channel's session controls (a Stop button): handed to the channel
/// once the daemon runs, see [`ApprovalChannel::attach_control`].
pub trait SessionControl: Send + Sync {
    fn stop_session<'a>(
        &'a self,
        request: StopRequest,
    ) -> BoxFuture<'a, Result<StopOutcome, String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("approval channel {channel} failed: {message}")]
    Failed { channel: String, message: String },
}

/// A way to reach human approvers. Implementations must be cancel-safe: the caller drops the
/// future on timeout, and a decision arriving afterwards must not be applied.
pub trait ApprovalChannel: Send + Sync {
    /// Short name journaled with outcomes (`terminal`, `slack`, ...).
    fn name(&self) -> &str;

    /// Put the request to approvers and wait for a decision.
    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>>;

    /// Tell humans about an event (session start/end, a denial). Best effort: failures are
    /// retried through the outbox and never block the loop.
    fn project<'a>(
        &'a self,
        session: Option<&'a str>,
        event: &'a crate::events::Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// The daemon settled `request` without the channel (its session was stopped or ended):
    /// withdraw the prompt and show `reason`. Best effort; the default does nothing (the
    /// dropped request future already voids any late answer).
    fn cancel<'a>(&'a self, request: &'a ApprovalRequest, reason: &'a str) -> BoxFuture<'a, ()> {
        let _ = (request, reason);
        Box::pin(async {})
    }

    /// Called once the daemon runs, so that the channel's own controls (a Stop button) can act
    /// on sessions. The default ignores it: a channel without controls needs none.
    fn attach_control(&self, control: std::sync::Arc<dyn SessionControl>) {
        let _ = control;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(hash: &str) -> ApprovalRequest {
        ApprovalRequest {
            session: "s".into(),
            call_id: "c".into(),
            tool: "Bash".into(),
            redacted_input: json!({"command": "ls"}),
            input_sha256: hash.into(),
            rule_id: None,
            reason: "r".into(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: 0,
            remember_secs: None,
        }
    }

    #[test]
    fn short_hash_is_a_prefix_and_tolerates_short_values() {
        assert_eq!(request(&"ab".repeat(32)).short_hash(), "abababababab");
        assert_eq!(request("abc").short_hash(), "abc");
    }

    #[test]
    fn only_a_nonempty_grant_is_granted() {
        assert!(ApprovalOutcome::Granted {
            by: vec![Approver::auto_approve()]
        }
        .is_granted());
        assert!(!ApprovalOutcome::Granted { by: vec![] }.is_granted());
        assert!(!ApprovalOutcome::Timeout.is_granted());
        assert!(!ApprovalOutcome::Unavailable { reason: "x".into() }.is_granted());
    }

    #[test]
    fn auto_approver_is_recognisable_in_the_journal() {
        let v = serde_json::to_value(Approver::auto_approve()).unwrap();
        assert_eq!(
            v,
            json!({"id": "auto-approve", "name": "--auto-approve", "via": "auto"})
        );
    }
}
