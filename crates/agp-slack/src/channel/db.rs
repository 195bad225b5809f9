//! The pending store, off the async threads.

use std::sync::Arc;

use super::SlackError;
use crate::pending::{PendingRecord, PendingStore, StoreError};

/// The pending store, used off the async threads: SQLite commits wait for the disk.
#[derive(Clone)]
pub(super) struct Db(pub(super) Arc<dyn PendingStore>);

impl Db {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn PendingStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SlackError> {
        let store = self.0.clone();
        // Not cancelled with the caller: a save that started completes.
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| SlackError::Task(e.to_string()))?
            .map_err(SlackError::from)
    }

    pub(super) async fn load(&self, nonce: &str) -> Result<Option<PendingRecord>, SlackError> {
        let nonce = nonce.to_owned();
        self.run(move |s| s.load(&nonce)).await
    }

    pub(super) async fn save(&self, record: &PendingRecord) -> Result<(), SlackError> {
        let record = record.clone();
        self.run(move |s| s.save(&record)).await
    }

    pub(super) async fn load_for_call(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<PendingRecord>, SlackError> {
        let (s1, c, h) = (
            session.to_owned(),
            call_id.to_owned(),
            input_sha256.to_owned(),
        );
        self.run(move |s| s.load_for_call(&s1, &c, &h)).await
    }

    pub(super) async fn session_root(&self, session: &str) -> Result<Option<String>, SlackError> {
        let session = session.to_owned();
        self.run(move |s| s.session_root(&session)).await
    }

    pub(super) async fn set_session_root(
        &self,
        session: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), SlackError> {
        let (s1, c, t) = (session.to_owned(), channel.to_owned(), ts.to_owned());
        self.run(move |s| s.set_session_root(&s1, &c, &t)).await
    }
}
