//! What the console reads and asks for, as two small traits: [`ConsoleData`] (sessions,
//! timelines and journal figures, served from the journal index) and [`Approvals`] (the
//! daemon's pending approvals and decisions, over its socket). The pages depend on these
//! shapes only; the real implementations live in [`crate::index`] and the `agp` binary.

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The source cannot be reached now (no daemon, index being rebuilt): said on the page.
    #[error("{0}")]
    Unavailable(String),
    /// The daemon refused the request, with its reason (a used nonce, a hash that differs...).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// One page of rows and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque cursor for the next page (older sessions, later calls); `None` on the last.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub agent: String,
    pub repo: String,
    pub task: String,
    /// Who started it (OS user).
    pub operator: String,
    pub mode: String,
    pub allowed: u64,
    pub denied: u64,
    pub approved: u64,
    pub pending: u64,
    /// live, ended, stopped, ...
    pub state: String,
    pub started: String,
    pub ended: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub cursor: Option<String>,
    pub limit: u32,
    /// live, ended, stopped, reaped.
    pub state: Option<String>,
    pub agent: Option<String>,
    /// A substring of the id, repo, task or operator.
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApprovalInfo {
    /// allow, deny, timeout, ...
    pub decision: String,
    pub by: String,
    pub via: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ResultInfo {
    pub exit_status: Option<i64>,
    pub output_sha256: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CallRow {
    /// Seq of the journal entry that opened the call (its proof is downloadable).
    pub seq: u64,
    pub call_id: String,
    pub tool: String,
    /// The input as the journal holds it: already redacted.
    pub input: String,
    pub verdict: String,
    pub rule: Option<String>,
    pub reason: String,
    pub approval: Option<ApprovalInfo>,
    pub result: Option<ResultInfo>,
    /// Egress requests journaled in the session while the call ran.
    pub egress: u64,
    /// allowed, denied, approved, pending: what became of the call.
    pub outcome: String,
    /// A signed checkpoint covers every entry of the call (else: not yet signed).
    pub covered: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TimelineQuery {
    pub verdict: Option<String>,
    /// allowed, denied, approved, pending.
    pub outcome: Option<String>,
    pub tool: Option<String>,
    pub text: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

/// A journal entry of a session that is not a call: session.*, egress, integrity report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventRow {
    pub seq: u64,
    pub kind: String,
    pub summary: String,
    pub covered: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalStats {
    pub entries: u64,
    pub bytes: u64,
    pub sessions: u64,
    pub checkpoint_size: Option<u64>,
    pub checkpoint_root: Option<String>,
    /// Why the index does not trust the latest checkpoint, when it does not.
    pub checkpoint_problem: Option<String>,
    /// Entries no signed checkpoint covers yet.
    pub not_covered: u64,
    pub key_id: Option<String>,
    pub origin: Option<String>,
}

/// One journal line as the file holds it (the journal is redacted at the source).
#[derive(Debug, Clone, Default, Serialize)]
pub struct EntryView {
    pub seq: u64,
    pub line: String,
    /// RFC 6962 leaf hash, hex.
    pub leaf_hash: String,
    pub covered: bool,
}

/// Sessions, timelines and journal figures. Methods block (SQLite, files): handlers call them
/// on the blocking pool.
pub trait ConsoleData: Send + Sync + 'static {
    /// Reads what the journal gained since the last call; returns the entry count after it.
    fn catch_up(&self) -> Result<u64, DataError>;
    fn stats(&self) -> Result<JournalStats, DataError>;
    fn sessions(&self, q: &SessionQuery) -> Result<Page<SessionRow>, DataError>;
    fn session(&self, id: &str) -> Result<Option<SessionRow>, DataError>;
    fn timeline(&self, session: &str, q: &TimelineQuery) -> Result<Page<CallRow>, DataError>;
    fn session_events(&self, session: &str) -> Result<Vec<EventRow>, DataError>;
    /// The exact line of entry `seq`, if the index has it.
    fn entry(&self, seq: u64) -> Result<Option<EntryView>, DataError>;
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PendingApproval {
    pub session: String,
    pub call_id: String,
    pub tool: String,
    /// Redacted by the daemon before it leaves it.
    pub redacted_input: String,
    /// The input was too large to list whole.
    pub input_truncated: bool,
    pub input_sha256: String,
    pub rule_id: Option<String>,
    pub reason: String,
    pub approvers: Vec<String>,
    pub quorum: u32,
    pub expires_at_ms: u64,
    /// Set when "allow for the session" is offered (the rule remembers approvals).
    pub remember_secs: Option<u64>,
    /// The configured channel asked as well (terminal, slack, ...): first answer wins.
    pub channel: String,
    /// Single-use, bound to this listing: it goes into the form and nowhere else.
    #[serde(skip)]
    pub nonce: String,
    pub web_can_approve: bool,
    pub web_can_deny: bool,
    pub why_not: Option<String>,
}

/// What the daemon lists for this console.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApprovalListing {
    /// The identity a decision from here is journaled with (`tty:<user>`).
    pub approver: String,
    /// The daemon takes no decisions from consoles (`[approvals] web = false`).
    pub view_only: bool,
    pub items: Vec<PendingApproval>,
    /// Pending approvals not listed (the daemon bounds the list).
    pub omitted: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebDecision {
    Allow,
    Deny,
    AllowSession,
}

#[derive(Debug, Clone)]
pub struct DecideRequest {
    pub call_id: String,
    pub input_sha256: String,
    pub nonce: String,
    pub decision: WebDecision,
    pub reason: Option<String>,
}

/// What the daemon did with a decision.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Decided {
    /// The call may now run.
    pub granted: bool,
    /// What the agent is told.
    pub reason: String,
}

/// The daemon's pending approvals and web decisions. Methods block (a Unix socket).
pub trait Approvals: Send + Sync + 'static {
    fn list(&self) -> Result<ApprovalListing, DataError>;
    /// A refusal (used nonce, other hash, expired, not an approver) is `DataError::Refused`
    /// with the daemon's reason.
    fn decide(&self, d: &DecideRequest) -> Result<Decided, DataError>;
}
