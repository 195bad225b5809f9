//! What the index answers with. Every struct is `Serialize` so the console can hand it to a
//! template or as JSON; text fields hold the journal's (already redacted) text verbatim,
//! escaping is the web layer's job.

use serde::Serialize;

/// Most rows one page may hold; larger limits are cut to it.
pub const MAX_PAGE: u32 = 500;
/// Rows per page when the query does not say.
pub const DEFAULT_PAGE: u32 = 50;

/// One page of rows and the cursor of the next page (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as the query's cursor (`before` for sessions, `after` for timelines and events).
    pub next: Option<u64>,
}

/// What [`crate::JournalIndex::catch_up`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// Set when the index was thrown away and rebuilt from the start of the journal, with why
    /// (the journal was cut back, rewritten, replaced, or the index was of another format).
    pub rebuilt: Option<String>,
    /// Entries indexed by this call.
    pub new_entries: u64,
    /// Entries in the index now.
    pub entries: u64,
    /// Bytes of `entries.jsonl` indexed (whole lines only).
    pub bytes: u64,
    /// Bytes after the last newline, not indexed (a line being written, or a torn tail).
    pub partial_tail_bytes: u64,
}

/// The journal as indexed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    pub entries: u64,
    pub bytes: u64,
    pub sessions: u64,
    pub calls: u64,
    /// The journal's name (its checkpoint origin), from its `journal.created` entry.
    pub origin: Option<String>,
    /// The verifier key the journal names as in force (after any `key.rotated`), C2SP form.
    pub key: Option<String>,
    /// That key's id (8 hex digits, as in each line's `key_id`).
    pub key_id: Option<String>,
    pub checkpoint: Option<CheckpointInfo>,
    /// Entries with seq below this are covered by the latest checkpoint (0: none is).
    pub covered: u64,
    /// Entries indexed but not yet covered by a signed checkpoint.
    pub not_covered: u64,
}

/// The latest checkpoint file as the index read it. The index is not the verifier: it checks
/// the signature with the key the journal itself names, and the root when it could compute the
/// tree of that size while reading; `agp verify` (the console's Verify button) is the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CheckpointInfo {
    pub size: u64,
    /// Base64 root hash, as in the note.
    pub root: String,
    /// The signed note, verbatim (text and signature lines).
    pub note: String,
    /// The note opens with the journal's own key (see [`JournalStats::key`]).
    pub signature_ok: bool,
    /// The root matches the indexed lines (`None`: the index did not see the tree at that
    /// size while reading, so it could not compare).
    pub root_matches: Option<bool>,
    /// Why the checkpoint is not trusted for coverage, when it is not.
    pub problem: Option<String>,
}

/// Sessions page query: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    /// Cursor: only sessions that began before this seq (from [`Page::next`]).
    pub before: Option<u64>,
    pub limit: Option<u32>,
    /// Only sessions in this state (`live`, `ended`, `stopped`, `reaped`).
    pub state: Option<String>,
    /// Only sessions of this agent (intendant).
    pub agent: Option<String>,
    /// ASCII-case-insensitive substring of the id, repo, task or operator.
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    pub id: String,
    /// Seq of the session's first entry.
    pub first_seq: u64,
    pub last_seq: u64,
    pub agent: Option<String>,
    pub repo: Option<String>,
    pub task: Option<String>,
    /// Who started it (`started_by`).
    pub operator: Option<String>,
    /// `proxy-exec` or `gate`.
    pub mode: Option<String>,
    /// `enforce`, `shadow` or `observe` (absent: enforced).
    pub policy_mode: Option<String>,
    /// `live` (no end journaled yet), `ended`, `stopped`, `reaped`.
    pub state: String,
    /// The status `session.ended` / `session.reaped` gave.
    pub end_status: Option<String>,
    pub started_ts: Option<String>,
    pub ended_ts: Option<String>,
    pub last_ts: Option<String>,
    pub calls: u64,
    pub allowed: u64,
    pub denied: u64,
    pub approved: u64,
    /// Calls waiting for a verdict or an approval at the end of what is indexed.
    pub pending: u64,
    pub egress: u64,
    /// Every entry of the session is covered by a signed checkpoint.
    pub covered: bool,
}

/// Timeline query: oldest first, keyset-paged by seq.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineQuery {
    /// Cursor: only calls requested after this seq (from [`Page::next`]).
    pub after: Option<u64>,
    pub limit: Option<u32>,
    /// The policy's verdict: `allow`, `require`, `deny`.
    pub verdict: Option<String>,
    /// What became of the call: `allowed`, `denied`, `approved`, `pending`.
    pub outcome: Option<String>,
    pub tool: Option<String>,
    /// ASCII-case-insensitive substring of the input summary, reason, rule, tool or call id.
    pub text: Option<String>,
}

/// One tool call, folded from its `tool_call.requested`, `policy.decided`, `approval.*` and
/// `tool_call.result` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRow {
    /// Seq of the call's first entry (normally its `tool_call.requested`).
    pub seq: u64,
    /// Seq of its latest entry.
    pub last_seq: u64,
    pub call_id: String,
    pub tool: Option<String>,
    /// The redacted input, shortened: a command, a path, a URL, or compact JSON.
    pub input_summary: Option<String>,
    pub input_sha256: Option<String>,
    pub cwd: Option<String>,
    /// `allow`, `require` or `deny` (what agp did; see `shadow_verdict` in shadow mode).
    pub verdict: Option<String>,
    pub shadow_verdict: Option<String>,
    pub policy_mode: Option<String>,
    pub rule_id: Option<String>,
    pub reason: Option<String>,
    pub deciding_part: Option<String>,
    /// `requested`, `granted`, `denied`, `timeout`, `unavailable`, `cancelled`.
    pub approval: Option<String>,
    pub approval_channel: Option<String>,
    pub approval_reason: Option<String>,
    /// Who approved or denied.
    pub approvers: Vec<Approver>,
    /// `allowed`, `denied`, `approved`, `pending`.
    pub outcome: Option<String>,
    pub result: Option<CallResult>,
    /// Egress entries of the session journaled while this call had no result yet.
    pub egress: u64,
    pub requested_ts: Option<String>,
    pub decided_ts: Option<String>,
    pub approval_ts: Option<String>,
    pub result_ts: Option<String>,
    /// Every entry of the call is covered by a signed checkpoint.
    pub covered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Approver {
    pub id: String,
    pub name: String,
    pub via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallResult {
    pub seq: u64,
    pub ok: Option<bool>,
    pub exit_code: Option<i64>,
    pub timed_out: Option<bool>,
    pub error: Option<String>,
    pub output_sha256: Option<String>,
    pub output_bytes: Option<u64>,
    /// `sandbox`, `harness` or `agent`.
    pub reported_by: Option<String>,
}

/// Events query: oldest first, keyset-paged by seq.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Kinds to return: exact (`session.integrity`) or a family (`egress.*`); empty: all.
    pub kinds: Vec<String>,
    pub after: Option<u64>,
    pub limit: Option<u32>,
}

/// An entry not folded into a call row (session, egress, sandbox, policy reloads, journal
/// entries, kinds this version does not know, unreadable lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    pub seq: u64,
    pub session: Option<String>,
    /// The entry's kind; `unreadable` when the line is not a journal entry this index can read.
    pub kind: String,
    pub call_id: Option<String>,
    pub ts: Option<String>,
    /// The entry's body, verbatim JSON text.
    pub body: String,
    pub covered: bool,
}

/// One journal line exactly as the file holds it (without its newline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRow {
    pub seq: u64,
    /// Byte offset of the line in `entries.jsonl`.
    pub offset: u64,
    /// The line's bytes as text (lines are JSON, so UTF-8; a line that is not is lossily shown
    /// and its `leaf_hash` still names the true bytes).
    pub line: String,
    /// RFC 6962 leaf hash of the line, hex.
    pub leaf_hash: String,
    pub covered: bool,
    /// The exact bytes of the line, for `agp_journal::proof` (not serialized: `line` shows it).
    #[serde(skip)]
    pub bytes: Vec<u8>,
}
