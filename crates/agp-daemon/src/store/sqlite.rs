//! The store contract on SQLite: the blocking [`Store`] run on tokio's blocking pool.
//!
//! One daemon serves a SQLite file, so its member owns every row (the file has no host
//! column), wake-ups come from this process's own writes, and relay claims of pending
//! approvals are kept in memory (they are leases among relays of ONE daemon; a restart drops
//! them exactly as their expiry would).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use super::contract::{HostedSession, StateStore, Topic};
use super::*;

pub struct SqliteStore {
    store: Arc<Store>,
    member: String,
    hints: Hints,
    /// (session, call id) -> (relay, lease until).
    relay_claims: Mutex<HashMap<(String, String), (String, i64)>>,
}

/// One watch channel per topic; a hint bumps its counter.
pub(crate) struct Hints {
    outbox: watch::Sender<u64>,
    approvals: watch::Sender<u64>,
}

impl Hints {
    pub(crate) fn new() -> Self {
        Self {
            outbox: watch::Sender::new(0),
            approvals: watch::Sender::new(0),
        }
    }

    fn sender(&self, topic: Topic) -> &watch::Sender<u64> {
        match topic {
            Topic::Outbox => &self.outbox,
            Topic::Approvals => &self.approvals,
        }
    }

    pub(crate) fn hint(&self, topic: Topic) {
        self.sender(topic).send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn hint_all(&self) {
        for topic in Topic::ALL {
            self.hint(topic);
        }
    }

    pub(crate) fn subscribe(&self, topic: Topic) -> watch::Receiver<u64> {
        self.sender(topic).subscribe()
    }
}

impl SqliteStore {
    pub fn new(store: Arc<Store>, member: &str) -> Self {
        Self {
            store,
            member: member.to_owned(),
            hints: Hints::new(),
            relay_claims: Mutex::new(HashMap::new()),
        }
    }

    /// The blocking store underneath (for the daemon's existing call sites).
    pub fn inner(&self) -> &Arc<Store> {
        &self.store
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Invalid(format!("state task failed: {e}")))?
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn member(&self) -> &str {
        &self.member
    }

    fn wakeups(&self, topic: Topic) -> watch::Receiver<u64> {
        self.hints.subscribe(topic)
    }

    fn blocking_sqlite(&self) -> Option<&Store> {
        Some(&self.store)
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(Store::schema_version).await
    }

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
    ) -> Result<i64, StoreError> {
        let a = [id, intendant, repo, task, mode, token_sha256, owner].map(str::to_owned);
        self.run(move |s| s.insert_session(&a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], now_ms))
            .await
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let id = id.to_owned();
        self.run(move |s| s.session(&id)).await
    }

    async fn active_session_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let t = token_sha256.to_owned();
        self.run(move |s| s.active_session_by_token(&t)).await
    }

    async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        self.run(Store::sessions).await
    }

    async fn team_sessions(&self) -> Result<Vec<HostedSession>, StoreError> {
        let host = self.member.clone();
        Ok(self
            .sessions()
            .await?
            .into_iter()
            .map(|session| HostedSession {
                host: host.clone(),
                session,
            })
            .collect())
    }

    async fn claim_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (id, owner) = (id.to_owned(), owner.to_owned());
        self.run(move |s| s.claim_lease(&id, &owner, now_ms)).await
    }

    async fn heartbeat(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError> {
        let owner = owner.to_owned();
        self.run(move |s| s.heartbeat(&owner, now_ms)).await
    }

    async fn end_session(
        &self,
        id: &str,
        status: &str,
        fencing_token: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (id, status) = (id.to_owned(), status.to_owned());
        self.run(move |s| s.end_session(&id, &status, fencing_token, now_ms))
            .await
    }

    async fn reap_expired(
        &self,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.run(move |s| s.reap_expired(cutoff_ms, now_ms)).await
    }

    async fn end_orphans(
        &self,
        owner_prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let p = owner_prefix.to_owned();
        self.run(move |s| s.end_orphans(&p, now_ms)).await
    }

    async fn set_agent_confined(&self, session: &str, confined: bool) -> Result<(), StoreError> {
        let session = session.to_owned();
        self.run(move |s| s.set_agent_confined(&session, confined))
            .await
    }

    async fn unconfined_sessions(
        &self,
        since_ms: Option<i64>,
    ) -> Result<Vec<UnconfinedSession>, StoreError> {
        self.run(move |s| s.unconfined_sessions(since_ms)).await
    }

    async fn record_call(
        &self,
        session: &str,
        call_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (session, call_id) = (session.to_owned(), call_id.to_owned());
        self.run(move |s| s.record_call(&session, &call_id, now_ms))
            .await
    }

    async fn call_seen(&self, session: &str, call_id: &str) -> Result<bool, StoreError> {
        let (session, call_id) = (session.to_owned(), call_id.to_owned());
        self.run(move |s| s.call_seen(&session, &call_id)).await
    }

    async fn insert_pending(&self, row: &PendingRow, now_ms: i64) -> Result<(), StoreError> {
        let row = row.clone();
        self.run(move |s| s.insert_pending(&row, now_ms)).await?;
        self.hints.hint(Topic::Approvals);
        Ok(())
    }

    async fn resolve_pending(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let a = [session, call_id, input_sha256, status].map(str::to_owned);
        let done = self
            .run(move |s| s.resolve_pending(&a[0], &a[1], &a[2], &a[3], now_ms))
            .await?;
        if done {
            self.hints.hint(Topic::Approvals);
        }
        Ok(done)
    }

    async fn pending(&self) -> Result<Vec<PendingRow>, StoreError> {
        self.run(Store::pending).await
    }

    async fn claim_pending_relay(
        &self,
        relay: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingRow>, StoreError> {
        let pending = self.pending().await?;
        let mut claims = self
            .relay_claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Claims of rows no longer pending are dropped.
        claims.retain(|k, _| {
            pending
                .iter()
                .any(|p| (&p.session, &p.call_id) == (&k.0, &k.1))
        });
        let mut out = Vec::new();
        for row in pending {
            if out.len() as i64 >= limit {
                break;
            }
            let key = (row.session.clone(), row.call_id.clone());
            let free = claims
                .get(&key)
                .is_none_or(|(holder, until)| holder == relay || *until <= now_ms);
            if free {
                claims.insert(key, (relay.to_owned(), lease_until_ms));
                out.push(row);
            }
        }
        Ok(out)
    }

    async fn remember_approval(
        &self,
        key: &RememberedKey,
        by_json: &str,
        call_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let (key, by, call) = (key.clone(), by_json.to_owned(), call_id.to_owned());
        self.run(move |s| s.remember_approval(&key, &by, &call, now_ms, expires_at_ms))
            .await
    }

    async fn remembered_approval(
        &self,
        key: &RememberedKey,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let key = key.clone();
        self.run(move |s| s.remembered_approval(&key, now_ms)).await
    }

    async fn forget_remembered_key(&self, key: &RememberedKey) -> Result<usize, StoreError> {
        let key = key.clone();
        self.run(move |s| s.forget_remembered_key(&key)).await
    }

    async fn forget_remembered(&self, session: &str) -> Result<usize, StoreError> {
        let session = session.to_owned();
        self.run(move |s| s.forget_remembered(&session)).await
    }

    async fn count_remembered(&self) -> Result<i64, StoreError> {
        self.run(Store::count_remembered).await
    }

    async fn enqueue_outbox(
        &self,
        kind: &str,
        session: Option<&str>,
        body_json: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let (kind, session, body) = (
            kind.to_owned(),
            session.map(str::to_owned),
            body_json.to_owned(),
        );
        let id = self
            .run(move |s| s.enqueue_outbox(&kind, session.as_deref(), &body, now_ms))
            .await?;
        self.hints.hint(Topic::Outbox);
        Ok(id)
    }

    async fn due_outbox(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.run(move |s| s.due_outbox(now_ms, limit)).await
    }

    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        self.run(move |s| s.claim_outbox(now_ms, lease_until_ms, limit))
            .await
    }

    async fn outbox_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.run(move |s| s.outbox_delivered(id)).await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        dead: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.run(move |s| s.outbox_failed(id, &error, next_attempt_ms, dead))
            .await
    }

    async fn outbox_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        self.run(Store::outbox_counts).await
    }

    async fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.run(move |s| s.prune(before_ms)).await
    }
}
