//! The append-only signed journal, as the loop sees it.

use serde_json::Value;

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Leaf index of the event (its `seq`).
    pub seq: u64,
    /// RFC 6962 leaf hash of the event line: SHA-256(0x00 || line).
    pub leaf_hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal refused the event: {0}")]
    Refused(String),
    #[error("journal is unavailable: {0}")]
    Unavailable(String),
}

/// An append-only journal. `append` returns only once the event is durable under the journal's
/// configured durability mode; an error means the event may not be relied upon, and the caller
/// must fail closed (deny) instead of acting on it.
pub trait Journal: Send + Sync {
    fn append(
        &self,
        kind: &str,
        session: Option<&str>,
        body: Value,
    ) -> Result<AppendReceipt, JournalError>;

    /// Appends `events` (kind, session, body) in order and returns once all of them are durable,
    /// with their receipts in the same order. A journal that can should make them consecutive
    /// and share one durable wait between them (the signed journal does). This default appends
    /// one by one, so on an error a prefix may already be appended. Either way an error means
    /// the caller must fail closed, exactly as for `append`.
    fn append_batch(
        &self,
        events: &[(&str, Option<&str>, Value)],
    ) -> Result<Vec<AppendReceipt>, JournalError> {
        events
            .iter()
            .map(|(kind, session, body)| self.append(kind, *session, body.clone()))
            .collect()
    }
}
