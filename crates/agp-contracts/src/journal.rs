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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    /// Takes appends until `room` runs out.
    struct Limited {
        room: Mutex<usize>,
        kinds: Mutex<Vec<String>>,
    }

    impl Journal for Limited {
        fn append(
            &self,
            kind: &str,
            _session: Option<&str>,
            _body: Value,
        ) -> Result<AppendReceipt, JournalError> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(JournalError::Unavailable("full".into()));
            }
            *room -= 1;
            let mut kinds = self.kinds.lock().unwrap();
            kinds.push(kind.to_owned());
            Ok(AppendReceipt {
                seq: kinds.len() as u64 - 1,
                leaf_hash: [0; 32],
            })
        }
    }

    #[test]
    fn default_batch_appends_in_order_and_reports_a_failure() {
        let j = Limited {
            room: Mutex::new(3),
            kinds: Mutex::new(Vec::new()),
        };
        let r = j
            .append_batch(&[("a.one", None, json!({})), ("a.two", Some("s"), json!({}))])
            .unwrap();
        assert_eq!((r[0].seq, r[1].seq), (0, 1));
        assert!(j
            .append_batch(&[("b.one", None, json!({})), ("b.two", None, json!({}))])
            .is_err());
        // The default is not atomic: the prefix that fitted is in.
        assert_eq!(*j.kinds.lock().unwrap(), ["a.one", "a.two", "b.one"]);
    }
}
