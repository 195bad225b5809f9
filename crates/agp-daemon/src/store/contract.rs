//! The store contract: what the daemon keeps as durable state, whichever engine holds it.
//!
//! Two implementations: [`super::SqliteStore`] (one machine; the default, `state.db` in the agp
//! home) and [`super::PgStore`] (team mode: many daemons sharing one PostgreSQL, selected by
//! `[state] url = "postgres://…"`). The contract suite (`contract_tests.rs`) runs the same tests
//! against both.
//!
//! Every row a daemon writes carries its *member* id (the host it runs on, see
//! [`StateStore::member`]). Operations that settle another daemon's leftovers (orphans, reaping,
//! re-attaching pending approvals) are scoped to the caller's own member: on a shared store a
//! daemon restarting must not end its colleagues' sessions. Listings for operators
//! ([`StateStore::team_sessions`]) span the team.
//!
//! Failure is typed: [`StoreError::Unavailable`] when the engine cannot be reached (PostgreSQL
//! down, pool exhausted); callers deny what needed the state (fail closed) and retry later.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::watch;

use super::{OutboxRow, PendingRow, RememberedKey, SessionRow, StoreError, UnconfinedSession};

/// A kind of change other daemons (or this one's tasks) wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A projection was queued.
    Outbox,
    /// A pending approval was posted or settled.
    Approvals,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Outbox, Topic::Approvals];

    /// The PostgreSQL NOTIFY channel (the migrations' triggers use the same names).
    pub fn channel(self) -> &'static str {
        match self {
            Topic::Outbox => "agp_outbox",
            Topic::Approvals => "agp_approvals",
        }
    }
}

/// A session as the team sees it: which member (host) runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostedSession {
    pub host: String,
    #[serde(flatten)]
    pub session: SessionRow,
}

/// Waits for a hint that `topic` changed, or `poll` elapsed, whichever comes first. A hint is
/// never the data: the caller re-reads after every return (hints are lost while a connection
/// is down, which is why there is a poll at all).
pub async fn wait_hint(rx: &mut watch::Receiver<u64>, poll: Duration) {
    // A closed sender (store dropped) ends in the poll's sleep: never a busy loop.
    if let Ok(Err(_)) = tokio::time::timeout(poll, rx.changed()).await {
        tokio::time::sleep(poll).await;
    }
}

/// Durable daemon state. All methods are async; the SQLite implementation runs its blocking
/// calls on the blocking pool, the PostgreSQL one is natively async.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// This daemon's member id: written into the rows it creates.
    fn member(&self) -> &str;
    /// A receiver that changes on every hint for `topic`; see [`wait_hint`].
    fn wakeups(&self, topic: Topic) -> watch::Receiver<u64>;
    /// The blocking SQLite store underneath, if that is what this is: code already on a
    /// blocking thread calls it directly instead of hopping to another one.
    fn blocking_sqlite(&self) -> Option<&super::Store> {
        None
    }

    async fn schema_version(&self) -> Result<i64, StoreError>;

    // Sessions, leases and fencing.
    #[allow(clippy::too_many_arguments)]
    async fn insert_session(
        &self,
        id: &str,
        intendant: &str,
        repo: &str,
        task: &str,
        mode: &str,
        token_sha256: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError>;
    async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError>;
    async fn active_session_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<SessionRow>, StoreError>;
    /// This member's sessions, oldest first.
    async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError>;
    /// Every member's sessions with their host, oldest first.
    async fn team_sessions(&self) -> Result<Vec<HostedSession>, StoreError>;
    /// Takes over one of this member's sessions' lease, bumping the fencing token; `None` when
    /// not active (or another member's).
    async fn claim_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError>;
    async fn heartbeat(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError>;
    /// Ends a session only while `fencing_token` still holds its lease.
    async fn end_session(
        &self,
        id: &str,
        status: &str,
        fencing_token: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// This member's active sessions whose lease expired before `cutoff_ms`, now `reaped`.
    async fn reap_expired(
        &self,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError>;
    /// This member's active sessions whose owner starts with `owner_prefix`, now `interrupted`.
    async fn end_orphans(
        &self,
        owner_prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError>;
    async fn set_agent_confined(&self, session: &str, confined: bool) -> Result<(), StoreError>;
    async fn unconfined_sessions(
        &self,
        since_ms: Option<i64>,
    ) -> Result<Vec<UnconfinedSession>, StoreError>;

    // Call ids (replay protection).
    /// `false` when the session already saw this call id (a replay).
    async fn record_call(
        &self,
        session: &str,
        call_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    async fn call_seen(&self, session: &str, call_id: &str) -> Result<bool, StoreError>;

    // Pending approvals.
    async fn insert_pending(&self, row: &PendingRow, now_ms: i64) -> Result<(), StoreError>;
    /// `false` when already resolved or the binding differs: the outcome must not be applied.
    async fn resolve_pending(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// This member's pending approvals, oldest first.
    async fn pending(&self) -> Result<Vec<PendingRow>, StoreError>;
    /// Claims up to `limit` pending approvals (any member's) for relaying until
    /// `lease_until_ms`: each is handed to one relay at a time; a relay that dies loses its
    /// claims when the lease runs out, and a relay re-claiming renews its own.
    async fn claim_pending_relay(
        &self,
        relay: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingRow>, StoreError>;

    // Remembered ("allow for this session") answers.
    async fn remember_approval(
        &self,
        key: &RememberedKey,
        by_json: &str,
        call_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError>;
    async fn remembered_approval(
        &self,
        key: &RememberedKey,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError>;
    async fn forget_remembered_key(&self, key: &RememberedKey) -> Result<usize, StoreError>;
    async fn forget_remembered(&self, session: &str) -> Result<usize, StoreError>;
    async fn count_remembered(&self) -> Result<i64, StoreError>;

    // The projection outbox.
    async fn enqueue_outbox(
        &self,
        kind: &str,
        session: Option<&str>,
        body_json: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError>;
    /// This member's due items, without claiming them (the daemon projects its own sessions'
    /// events to its own channel, one pass at a time).
    async fn due_outbox(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError>;
    /// Claims up to `limit` due items of any member until `lease_until_ms` (their next attempt
    /// moves there), for a relay serving the team: concurrent claimers each get different
    /// rows; a claimer that dies leaves its rows to be claimed again when the lease runs out.
    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError>;
    async fn outbox_delivered(&self, id: i64) -> Result<(), StoreError>;
    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        dead: bool,
    ) -> Result<(), StoreError>;
    /// (pending, delivered, dead).
    async fn outbox_counts(&self) -> Result<(i64, i64, i64), StoreError>;
    /// Drops settled bookkeeping older than `before_ms`; see [`super::Store::prune`].
    async fn prune(&self, before_ms: i64) -> Result<usize, StoreError>;
}
