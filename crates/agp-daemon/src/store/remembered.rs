//! "Allow for this session" answers, kept so that a daemon restart keeps them.

use rusqlite::{params, OptionalExtension, ToSql};

use super::*;

/// What must all be equal for a remembered answer to cover a later call. The rule id is the
/// one the policy gives the NEW call (a call another rule matches is not covered); the policy
/// sha256 is the policy in force (after a reload the answer is not reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedKey {
    pub session: String,
    pub rule_id: String,
    pub tool: String,
    pub cwd: String,
    pub input_sha256: String,
    pub policy_sha256: String,
}

/// A row is exactly the key of [`RememberedKey::columns`] (?1 to ?6).
const KEY_IS: &str = "session = ?1 AND rule_id = ?2 AND tool = ?3 AND cwd = ?4
    AND input_sha256 = ?5 AND policy_sha256 = ?6";

impl RememberedKey {
    /// The key's values in the order of [`KEY_IS`]; a statement numbers its own after them.
    fn columns(&self) -> Vec<&dyn ToSql> {
        vec![
            &self.session,
            &self.rule_id,
            &self.tool,
            &self.cwd,
            &self.input_sha256,
            &self.policy_sha256,
        ]
    }

    /// [`Self::columns`] followed by `more` (?7 on).
    fn columns_and<'a>(&'a self, more: &[&'a dyn ToSql]) -> Vec<&'a dyn ToSql> {
        let mut all = self.columns();
        all.extend_from_slice(more);
        all
    }
}

impl Store {
    /// Stores (or renews) an answer until `expires_at_ms`.
    pub fn remember_approval(
        &self,
        key: &RememberedKey,
        by_json: &str,
        call_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO remembered_approvals (session, rule_id, tool, cwd,
                 input_sha256, policy_sha256, by_json, call_id, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            &*key.columns_and(&[&by_json, &call_id, &now_ms, &expires_at_ms]),
        )?;
        Ok(())
    }

    /// The approvers' JSON of a live answer for exactly this key; expired ones are removed.
    pub fn remembered_approval(
        &self,
        key: &RememberedKey,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM remembered_approvals WHERE expires_at_ms <= ?1",
            params![now_ms],
        )?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT by_json FROM remembered_approvals
                     WHERE {KEY_IS} AND expires_at_ms > ?7"
                ),
                &*key.columns_and(&[&now_ms]),
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Forgets one answer (it could not be journaled, so it must not be used).
    pub fn forget_remembered_key(&self, key: &RememberedKey) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            &format!("DELETE FROM remembered_approvals WHERE {KEY_IS}"),
            &*key.columns(),
        )?)
    }

    /// Forgets a session's answers (it ended: no later call can use them).
    pub fn forget_remembered(&self, session: &str) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM remembered_approvals WHERE session = ?1",
            params![session],
        )?)
    }

    /// How many answers are kept (all sessions).
    pub fn count_remembered(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM remembered_approvals", [], |r| {
                r.get(0)
            })?)
    }
}
