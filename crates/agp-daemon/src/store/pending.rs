//! Call ids (replay protection) and pending approvals.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Store {
    /// Records a call id; `false` when the session already saw it (a replay).
    pub fn record_call(
        &self,
        session: &str,
        call_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO calls (session, call_id, received_at_ms) VALUES (?1, ?2, ?3)",
            params![session, call_id, now_ms],
        )? == 1)
    }

    pub fn call_seen(&self, session: &str, call_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM calls WHERE session = ?1 AND call_id = ?2",
                params![session, call_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn insert_pending(&self, row: &PendingRow, now_ms: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO pending_approvals (session, call_id, input_sha256, request_json,
                 expires_at_ms, status, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            params![
                row.session,
                row.call_id,
                row.input_sha256,
                row.request_json,
                row.expires_at_ms,
                now_ms
            ],
        )?;
        Ok(())
    }

    /// Resolves a pending approval bound to (session, call id, input hash). `false` when it was
    /// already resolved or the binding does not match: the caller must not apply the outcome.
    pub fn resolve_pending(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE pending_approvals SET status = ?4, resolved_at_ms = ?5
             WHERE session = ?1 AND call_id = ?2 AND input_sha256 = ?3 AND status = 'pending'",
            params![session, call_id, input_sha256, status, now_ms],
        )? == 1)
    }

    pub fn pending(&self) -> Result<Vec<PendingRow>, StoreError> {
        super::select_all(
            &self.conn(),
            "SELECT session, call_id, input_sha256, request_json, expires_at_ms
             FROM pending_approvals WHERE status = 'pending' ORDER BY created_at_ms",
            [],
            |r| {
                from_row!(
                    r,
                    PendingRow {
                        session,
                        call_id,
                        input_sha256,
                        request_json,
                        expires_at_ms,
                    }
                )
            },
        )
    }
}
