//! An in-memory [`Journal`] for tests of the parts that write one (daemon, channels, egress).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use agp_contracts::{AppendReceipt, Journal, JournalError};
use serde_json::Value;

/// One appended event: kind, session, body.
pub type Appended = (String, Option<String>, Value);

/// Keeps every appended event in order. Like the signed journal it refuses a body that has no
/// canonical form (so a test cannot pass on an event the real journal would reject), and it can
/// be broken to fail every append, as a full disk would.
#[derive(Debug, Default)]
pub struct MemJournal {
    events: Mutex<Vec<Appended>>,
    broken: AtomicBool,
    /// Bodies of a typed kind that are not exactly their type's JSON
    /// (`agp_contracts::events::check_body`); every reader of this journal asserts there are
    /// none, so a writer cannot drift from the documented event format.
    untyped: Mutex<Vec<String>>,
}

/// What a broken [`MemJournal`] answers.
pub const BROKEN: &str = "disk full";

impl MemJournal {
    pub fn new() -> Self {
        Self::default()
    }

    /// A journal whose every append fails with [`JournalError::Unavailable`].
    pub fn broken() -> Self {
        let j = Self::default();
        j.set_broken(true);
        j
    }

    /// From now on every append fails (or succeeds again with `false`).
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// Panics when a body of a typed kind was not exactly its type's JSON.
    pub fn assert_typed(&self) {
        let untyped = self
            .untyped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(
            untyped.is_empty(),
            "bodies unlike their types: {untyped:#?}"
        );
    }

    /// Everything appended so far, in order.
    pub fn events(&self) -> Vec<Appended> {
        self.assert_typed();
        self.lock().clone()
    }

    /// The kinds appended so far, in order.
    pub fn kinds(&self) -> Vec<String> {
        self.assert_typed();
        self.lock().iter().map(|e| e.0.clone()).collect()
    }

    /// The bodies of the events of `kind`, in order.
    pub fn of(&self, kind: &str) -> Vec<Value> {
        self.assert_typed();
        self.lock()
            .iter()
            .filter(|e| e.0 == kind)
            .map(|e| e.2.clone())
            .collect()
    }

    /// `[[kind, body], ...]` as JSON, for assertion messages.
    pub fn dump(&self) -> String {
        let events = self.lock();
        let pairs: Vec<(&String, &Value)> = events.iter().map(|e| (&e.0, &e.2)).collect();
        serde_json::to_string(&pairs).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Appended>> {
        // A test that panicked while holding the lock has already failed; keep its events readable.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Journal for MemJournal {
    fn append(
        &self,
        kind: &str,
        session: Option<&str>,
        body: Value,
    ) -> Result<AppendReceipt, JournalError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(JournalError::Unavailable(BROKEN.into()));
        }
        agp_contracts::canonical::to_canonical_string(&body)
            .map_err(|e| JournalError::Refused(e.to_string()))?;
        if let Err(e) = agp_contracts::events::check_body(kind, &body) {
            self.untyped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(e);
        }
        let mut events = self.lock();
        events.push((kind.to_owned(), session.map(str::to_owned), body));
        Ok(AppendReceipt {
            seq: events.len() as u64 - 1,
            leaf_hash: [0; 32],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_events_in_order_and_numbers_them_from_zero() {
        let j = MemJournal::new();
        assert_eq!(j.append("a", Some("s"), json!({"x": 1})).unwrap().seq, 0);
        assert_eq!(j.append("b", None, json!({})).unwrap().seq, 1);
        assert_eq!(j.kinds(), ["a", "b"]);
        assert_eq!(j.of("a"), [json!({"x": 1})]);
        assert_eq!(j.events()[0].1.as_deref(), Some("s"));
        assert_eq!(j.dump(), r#"[["a",{"x":1}],["b",{}]]"#);
    }

    #[test]
    fn refuses_what_the_signed_journal_refuses_and_fails_when_broken() {
        let j = MemJournal::new();
        let refused = j.append("a", None, json!({"f": 1.5})).unwrap_err();
        assert!(matches!(refused, JournalError::Refused(_)), "{refused}");
        j.set_broken(true);
        let err = j.append("a", None, json!({})).unwrap_err();
        assert!(err.to_string().contains(BROKEN), "{err}");
        assert!(j.events().is_empty());
    }
}
