//! The Slack channel's records in the team's PostgreSQL: shared, so that a daemon taking the
//! Slack lease over adopts the messages its predecessor posted (no second post; a click on an
//! old message is checked against the same record, a replay still refused), and fenced: every
//! write checks the lease it was made under in the same statement.

use std::future::Future;
use std::sync::Arc;

use agp_daemon::store::{ChannelLease, PgStore};

use crate::pending::{PendingRecord, PendingStore, StoreError};

/// The channel name in the shared tables.
pub const CHANNEL: &str = "slack";

/// [`PendingStore`] on the team's PostgreSQL, writing under one lease.
pub struct PgPendingStore {
    store: Arc<PgStore>,
    lease: ChannelLease,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PgPendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPendingStore")
            .field("fencing_token", &self.lease.fencing_token)
            .finish_non_exhaustive()
    }
}

impl PgPendingStore {
    /// Must be made inside the runtime the store's pool runs on.
    pub fn new(store: Arc<PgStore>, lease: ChannelLease) -> Self {
        Self {
            store,
            lease,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The trait is blocking (SQLite commits wait for the disk); the channel calls it from the
    /// blocking pool, where waiting on the runtime is allowed. From a runtime worker thread it
    /// steps out of the worker first (multi-thread runtimes only, as the daemon's is).
    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
            Err(_) => self.runtime.block_on(f),
        }
    }
}

fn decode(json: &str) -> Result<PendingRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn fenced(written: bool) -> Result<(), StoreError> {
    if written {
        Ok(())
    } else {
        Err(StoreError::Fenced)
    }
}

impl PendingStore for PgPendingStore {
    fn save(&self, r: &PendingRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let expires = i64::try_from(r.request.expires_at_ms).unwrap_or(i64::MAX);
        fenced(self.block(self.store.save_channel_record(
            &self.lease,
            &r.nonce,
            &r.request.session,
            &r.request.call_id,
            &r.request.input_sha256,
            r.is_decided(),
            expires,
            &json,
        ))?)
    }

    fn load(&self, nonce: &str) -> Result<Option<PendingRecord>, StoreError> {
        self.block(self.store.channel_record(CHANNEL, nonce))?
            .as_deref()
            .map(decode)
            .transpose()
    }

    fn load_for_call(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<PendingRecord>, StoreError> {
        self.block(
            self.store
                .channel_record_for_call(CHANNEL, session, call_id, input_sha256),
        )?
        .as_deref()
        .map(decode)
        .transpose()
    }

    fn undecided(&self) -> Result<Vec<PendingRecord>, StoreError> {
        self.block(self.store.undecided_channel_records(CHANNEL))?
            .iter()
            .map(|j| decode(j))
            .collect()
    }

    fn remove(&self, nonce: &str) -> Result<(), StoreError> {
        fenced(self.block(self.store.remove_channel_record(&self.lease, nonce))?)
    }

    fn session_root(&self, session: &str) -> Result<Option<String>, StoreError> {
        Ok(self.block(self.store.channel_root(CHANNEL, session))?)
    }

    fn set_session_root(&self, session: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
        fenced(
            self.block(
                self.store
                    .set_channel_root(&self.lease, session, channel, ts),
            )?,
        )
    }
}
