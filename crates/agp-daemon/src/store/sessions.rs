//! Sessions: insert, look up, leases and fencing, end, reap.

use rusqlite::{params, OptionalExtension};

use super::*;

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub fn insert_session(
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
        self.conn().execute(
            "INSERT INTO sessions (id, intendant, repo, task, mode, status, token_sha256,
                 started_at_ms, lease_owner, fencing_token, heartbeat_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?8, 1, ?7)",
            params![id, intendant, repo, task, mode, token_sha256, now_ms, owner],
        )?;
        Ok(1)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                session_from_row,
            )
            .optional()?)
    }

    /// An active session by the hash of its token.
    pub fn active_session_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions
                     WHERE token_sha256 = ?1 AND status = 'active'"
                ),
                [token_sha256],
                session_from_row,
            )
            .optional()?)
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        super::select_all(
            &self.conn(),
            &format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at_ms, id"),
            [],
            session_from_row,
        )
    }

    /// Takes over a session's lease, bumping the fencing token. Returns the new token, or `None`
    /// when the session is not active.
    pub fn claim_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "UPDATE sessions SET lease_owner = ?2, fencing_token = fencing_token + 1,
                     heartbeat_ms = ?3
                 WHERE id = ?1 AND status = 'active' RETURNING fencing_token",
                params![id, owner, now_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Renews the lease of every active session this owner holds.
    pub fn heartbeat(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self.conn().execute(
            "UPDATE sessions SET heartbeat_ms = ?2 WHERE lease_owner = ?1 AND status = 'active'",
            params![owner, now_ms],
        )?)
    }

    /// Ends a session, only if `fencing_token` still holds the lease (a stale owner cannot end a
    /// session someone else took over).
    pub fn end_session(
        &self,
        id: &str,
        status: &str,
        fencing_token: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "UPDATE sessions SET status = ?2, ended_at_ms = ?4
             WHERE id = ?1 AND status = 'active' AND fencing_token = ?3",
            params![id, status, fencing_token, now_ms],
        )? == 1)
    }

    /// Marks every active session whose lease expired before `cutoff_ms` as reaped and returns
    /// them.
    pub fn reap_expired(&self, cutoff_ms: i64, now_ms: i64) -> Result<Vec<SessionRow>, StoreError> {
        self.end_active("heartbeat_ms < ?1", &cutoff_ms, "reaped", now_ms)
    }

    /// Marks every active session whose lease owner starts with `owner_prefix` as interrupted
    /// and returns them.
    pub fn end_orphans(
        &self,
        owner_prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let owned = "substr(lease_owner, 1, length(?1)) = ?1";
        self.end_active(owned, &owner_prefix, "interrupted", now_ms)
    }

    /// Ends, as `status`, every active session meeting `condition` (SQL on `?1` = `arg`), in one
    /// transaction, and returns them as they were.
    fn end_active(
        &self,
        condition: &str,
        arg: &dyn rusqlite::ToSql,
        status: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let rows = super::select_all(
            &tx,
            &format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'active' AND {condition}"
            ),
            [arg],
            session_from_row,
        )?;
        for row in &rows {
            tx.execute(
                "UPDATE sessions SET status = ?3, ended_at_ms = ?2 WHERE id = ?1",
                params![row.id, now_ms, status],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }
}
