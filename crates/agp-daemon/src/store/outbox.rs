//! The projection outbox: queue, due items, delivery and dead letters, pruning.

use rusqlite::params;

use super::*;

impl Store {
    pub fn enqueue_outbox(
        &self,
        kind: &str,
        session: Option<&str>,
        body_json: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO outbox (kind, session, body_json, next_attempt_ms, status, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?4)",
            params![kind, session, body_json, now_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn due_outbox(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        super::select_all(
            &self.conn(),
            "SELECT id, kind, session, body_json, attempts FROM outbox
             WHERE status = 'pending' AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2",
            params![now_ms, limit],
            |r| {
                from_row!(
                    r,
                    OutboxRow {
                        id,
                        kind,
                        session,
                        body_json,
                        attempts
                    }
                )
            },
        )
    }

    /// Claims due items until `lease_until_ms` (their next attempt moves there), in one
    /// statement: concurrent claimers each get different rows.
    pub fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        super::select_all(
            &self.conn(),
            "UPDATE outbox SET next_attempt_ms = ?2
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_ms <= ?1
                          ORDER BY id LIMIT ?3)
             RETURNING id, kind, session, body_json, attempts",
            params![now_ms, lease_until_ms, limit],
            |r| {
                from_row!(
                    r,
                    OutboxRow {
                        id,
                        kind,
                        session,
                        body_json,
                        attempts
                    }
                )
            },
        )
        .map(|mut rows| {
            // RETURNING gives no order guarantee.
            rows.sort_by_key(|r| r.id);
            rows
        })
    }

    pub fn outbox_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Records a failed attempt: retried at `next_attempt_ms`, or dead-lettered.
    pub fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        dead: bool,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3,
                 status = CASE WHEN ?4 THEN 'dead' ELSE 'pending' END
             WHERE id = ?1",
            params![id, error, next_attempt_ms, dead],
        )?;
        Ok(())
    }

    /// Drops bookkeeping nobody needs any more: call ids of sessions that ended before
    /// `before_ms` (their ids can no longer be replayed: the session is closed), delivered
    /// projections and settled approvals older than that. Sessions and dead letters stay.
    pub fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut n = tx.execute(
            "DELETE FROM calls WHERE session IN
                 (SELECT id FROM sessions WHERE status != 'active' AND ended_at_ms < ?1)",
            [before_ms],
        )?;
        n += tx.execute(
            "DELETE FROM outbox WHERE status = 'delivered' AND created_at_ms < ?1",
            [before_ms],
        )?;
        n += tx.execute(
            "DELETE FROM pending_approvals WHERE status != 'pending' AND resolved_at_ms < ?1",
            [before_ms],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// (pending, delivered, dead) counts.
    pub fn outbox_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        Ok(self.conn().query_row(
            "SELECT
                COALESCE(SUM(status = 'pending'), 0),
                COALESCE(SUM(status = 'delivered'), 0),
                COALESCE(SUM(status = 'dead'), 0)
             FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }
}
