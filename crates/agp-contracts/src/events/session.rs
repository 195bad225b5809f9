//! `session.*` bodies.

use super::{nullable, Event, SESSION_ENDED, SESSION_INTEGRITY, SESSION_REAPED, SESSION_STARTED};
use crate::integrity::Report;
use crate::sandbox::Isolation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// A session began (or a daemon restart resumed it). Also projected to approval channels,
/// where it opens the session's thread.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStarted {
    /// The session id (the event's envelope carries it too); absent in channel test threads.
    pub session: Option<String>,
    /// Set when a restarted daemon resumed a session it had leased.
    pub resumed: Option<bool>,
    pub intendant: String,
    #[serde(serialize_with = "super::path_text::path")]
    pub repo: PathBuf,
    /// The redacted task text.
    pub task: Option<String>,
    /// `proxy-exec` or `gate`.
    pub mode: Option<String>,
    pub lease_owner: Option<String>,
    pub fencing_token: Option<i64>,
    pub policy_sha256: Option<String>,
    /// What the sandbox guarantees; `null` when the session runs without one.
    #[serde(default, with = "nullable")]
    #[schemars(with = "Option<Isolation>")]
    pub isolation: Option<Option<Isolation>>,
    pub approval_channel: Option<String>,
    pub approval_timeout_secs: Option<u64>,
    /// The operator (OS user) who started the session.
    pub started_by: Option<String>,
    /// What the agent binary is (path, version, digest), when agp resolved it.
    pub intendant_identity: Option<Value>,
    /// How the daemon applies its policy to this session's calls (`enforce`, `shadow`,
    /// `observe`); absent in sessions of an agp before modes (enforced).
    pub policy_mode: Option<crate::PolicyMode>,
    /// Whether the agent is confined by agp's sandbox: `true` when agp launched it in its
    /// sandbox or runs each of its calls there, `false` when it runs on the host as the
    /// operator (a hook session of the user's own agent, or `--sandbox none`). While such a
    /// session lives, the daemon does not reload a changed policy.
    pub agent_confined: Option<bool>,
}

impl SessionStarted {
    /// A body with only the members every writer sets; the rest are added field by field.
    pub fn new(intendant: impl Into<String>, repo: impl Into<PathBuf>) -> Self {
        Self {
            session: None,
            resumed: None,
            intendant: intendant.into(),
            repo: repo.into(),
            task: None,
            mode: None,
            lease_owner: None,
            fencing_token: None,
            policy_sha256: None,
            isolation: None,
            approval_channel: None,
            approval_timeout_secs: None,
            started_by: None,
            intendant_identity: None,
            policy_mode: None,
            agent_confined: None,
        }
    }
}

impl Event for SessionStarted {
    const KIND: &'static str = SESSION_STARTED;
}

/// A session ended. Also projected to approval channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionEnded {
    pub session: String,
    /// `completed`, `failed`, `interrupted`, ...
    pub status: String,
    /// Whether this daemon still held the session's lease when it ended it.
    pub lease_held: bool,
}

impl Event for SessionEnded {
    const KIND: &'static str = SESSION_ENDED;
}

/// A session whose holder is gone was ended by a daemon that found it on start.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionReaped {
    pub session: String,
    pub intendant: String,
    pub lease_owner: String,
    pub fencing_token: i64,
    pub last_heartbeat_ms: i64,
    /// Set for a session of an `agp run` process that is gone (`interrupted`).
    pub status: Option<String>,
    pub reason: Option<String>,
}

impl Event for SessionReaped {
    const KIND: &'static str = SESSION_REAPED;
}

/// The end-of-session integrity report of the repository. The counts and quarantine are absent
/// when the check itself failed (then `report.complete` is false and says why).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionIntegrity {
    pub session: String,
    pub findings_total: Option<u64>,
    pub by_session: Option<u64>,
    pub not_neutralized: Option<u64>,
    #[serde(default, serialize_with = "super::path_text::opt_path")]
    pub quarantine: Option<PathBuf>,
    /// The integrity report: of the scan, or of a check that failed (then only `complete`,
    /// `incomplete` and `findings`).
    pub report: Report,
}

impl Event for SessionIntegrity {
    const KIND: &'static str = SESSION_INTEGRITY;
}
