//! Durable daemon state in SQLite: sessions (with leases), call ids (replay protection), pending
//! approvals and the projection outbox.
//!
//! All methods are blocking; async callers go through `spawn_blocking`. One connection behind a
//! mutex is enough: every statement is short, and WAL keeps readers (`agp sessions`) off the
//! writer's back.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database schema version {found} is newer than this agp understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("state database: {0}")]
    Invalid(String),
}

pub use crate::schema::SCHEMA_VERSION;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub intendant: String,
    pub repo: String,
    pub task: String,
    pub mode: String,
    pub status: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub lease_owner: String,
    pub fencing_token: i64,
    pub heartbeat_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub session: String,
    pub call_id: String,
    pub input_sha256: String,
    pub request_json: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub session: Option<String>,
    pub body_json: String,
    pub attempts: i64,
}

pub struct Store {
    conn: Mutex<Connection>,
}

const SESSION_COLUMNS: &str =
    "id, intendant, repo, task, mode, status, started_at_ms, ended_at_ms, \
     lease_owner, fencing_token, heartbeat_ms";

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        intendant: r.get(1)?,
        repo: r.get(2)?,
        task: r.get(3)?,
        mode: r.get(4)?,
        status: r.get(5)?,
        started_at_ms: r.get(6)?,
        ended_at_ms: r.get(7)?,
        lease_owner: r.get(8)?,
        fencing_token: r.get(9)?,
        heartbeat_ms: r.get(10)?,
    })
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        crate::schema::create_private(path)?;
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// Opens without creating or migrating: for read-only operator commands, which read any
    /// schema from `schema::OLDEST_READABLE` on (a home upgraded while its daemon is stopped).
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < crate::schema::OLDEST_READABLE {
            return Err(StoreError::Invalid(format!(
                "schema version {version}, expected {SCHEMA_VERSION} (start the daemon once to migrate)"
            )));
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    #[cfg(test)]
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the daemon; NORMAL is durable across process crashes (the
        // journal, not this database, is the record of truth for what happened).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (statements are
        // atomic), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// `PRAGMA quick_check`: "ok" when the file is sound.
    pub fn quick_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA quick_check", [], |r| r.get(0))?)
    }

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
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at_ms, id"
        ))?;
        let rows = stmt.query_map([], session_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let rows: Vec<SessionRow> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'active' AND heartbeat_ms < ?1"
            ))?;
            let rows = stmt.query_map([cutoff_ms], session_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        for row in &rows {
            tx.execute(
                "UPDATE sessions SET status = 'reaped', ended_at_ms = ?2 WHERE id = ?1",
                params![row.id, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

    /// Marks every active session whose lease owner starts with `owner_prefix` as interrupted
    /// and returns them.
    pub fn end_orphans(
        &self,
        owner_prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let rows: Vec<SessionRow> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE status = 'active'
                     AND substr(lease_owner, 1, length(?1)) = ?1"
            ))?;
            let rows = stmt.query_map([owner_prefix], session_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        for row in &rows {
            tx.execute(
                "UPDATE sessions SET status = 'interrupted', ended_at_ms = ?2 WHERE id = ?1",
                params![row.id, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(rows)
    }

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
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT session, call_id, input_sha256, request_json, expires_at_ms
             FROM pending_approvals WHERE status = 'pending' ORDER BY created_at_ms",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PendingRow {
                session: r.get(0)?,
                call_id: r.get(1)?,
                input_sha256: r.get(2)?,
                request_json: r.get(3)?,
                expires_at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

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
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, kind, session, body_json, attempts FROM outbox
             WHERE status = 'pending' AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit], |r| {
            Ok(OutboxRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                session: r.get(2)?,
                body_json: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_session() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.insert_session("s1", "scripted", "/r", "", "proxy_exec", "th", "d1", 1000)
            .unwrap();
        s
    }

    #[test]
    fn migrations_are_versioned_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        use std::os::unix::fs::PermissionsExt;
        for f in ["state.db", "state.db-wal", "state.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.quick_check().unwrap(), "ok");
        drop(s);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { .. })));
    }

    #[test]
    fn replayed_call_ids_are_detected_per_session() {
        let s = store_with_session();
        assert!(s.record_call("s1", "c1", 1).unwrap());
        assert!(!s.record_call("s1", "c1", 2).unwrap());
        assert!(s.record_call("s2", "c1", 2).unwrap());
    }

    #[test]
    fn fencing_token_guards_session_end() {
        let s = store_with_session();
        assert_eq!(s.claim_lease("s1", "d2", 2000).unwrap(), Some(2));
        // The old owner (token 1) can no longer end it.
        assert!(!s.end_session("s1", "ended", 1, 3000).unwrap());
        assert!(s.end_session("s1", "ended", 2, 3000).unwrap());
        assert_eq!(s.claim_lease("s1", "d3", 4000).unwrap(), None);
    }

    #[test]
    fn expired_leases_are_reaped_once() {
        let s = store_with_session();
        s.insert_session("s2", "scripted", "/r", "", "gate", "th2", "d1", 5000)
            .unwrap();
        let reaped = s.reap_expired(3000, 6000).unwrap();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].id, "s1");
        assert_eq!(s.session("s1").unwrap().unwrap().status, "reaped");
        assert!(s.reap_expired(3000, 6000).unwrap().is_empty());
        assert!(s.active_session_by_token("th2").unwrap().is_some());
        assert!(s.active_session_by_token("th").unwrap().is_none());
    }

    #[test]
    fn pending_approval_resolves_once_and_only_for_its_binding() {
        let s = store_with_session();
        let row = PendingRow {
            session: "s1".into(),
            call_id: "c1".into(),
            input_sha256: "aa".into(),
            request_json: "{}".into(),
            expires_at_ms: 10,
        };
        s.insert_pending(&row, 1).unwrap();
        assert_eq!(s.pending().unwrap(), vec![row]);
        assert!(!s.resolve_pending("s1", "c1", "bb", "granted", 2).unwrap());
        assert!(s.resolve_pending("s1", "c1", "aa", "granted", 2).unwrap());
        assert!(!s.resolve_pending("s1", "c1", "aa", "denied", 3).unwrap());
        assert!(s.pending().unwrap().is_empty());
    }

    #[test]
    fn prune_keeps_live_sessions_pending_approvals_and_dead_letters() {
        let s = store_with_session();
        s.insert_session("old", "scripted", "/r", "", "gate", "t-old", "d1", 10)
            .unwrap();
        s.record_call("s1", "c1", 10).unwrap();
        s.record_call("old", "c1", 10).unwrap();
        assert!(s.end_session("old", "completed", 1, 20).unwrap());
        let row = |call: &str| PendingRow {
            session: "s1".into(),
            call_id: call.into(),
            input_sha256: "h".into(),
            request_json: "{}".into(),
            expires_at_ms: 100,
        };
        s.insert_pending(&row("p1"), 10).unwrap();
        s.insert_pending(&row("p2"), 10).unwrap();
        s.resolve_pending("s1", "p1", "h", "granted", 20).unwrap();
        let delivered = s.enqueue_outbox("k", None, "{}", 10).unwrap();
        s.outbox_delivered(delivered).unwrap();
        let dead = s.enqueue_outbox("k", None, "{}", 10).unwrap();
        s.outbox_failed(dead, "x", 0, true).unwrap();

        assert_eq!(s.prune(1000).unwrap(), 3);
        assert!(s.call_seen("s1", "c1").unwrap());
        assert!(!s.call_seen("old", "c1").unwrap());
        assert_eq!(s.pending().unwrap().len(), 1);
        assert_eq!(s.outbox_counts().unwrap(), (0, 0, 1));
        assert_eq!(s.sessions().unwrap().len(), 2);
    }

    #[test]
    fn outbox_retries_then_dead_letters() {
        let s = Store::open_in_memory().unwrap();
        let id = s
            .enqueue_outbox("session.started", Some("s1"), "{}", 100)
            .unwrap();
        assert_eq!(s.due_outbox(100, 10).unwrap().len(), 1);
        s.outbox_failed(id, "down", 200, false).unwrap();
        assert!(s.due_outbox(150, 10).unwrap().is_empty());
        let due = s.due_outbox(200, 10).unwrap();
        assert_eq!(due[0].attempts, 1);
        s.outbox_failed(id, "down", 400, true).unwrap();
        assert!(s.due_outbox(1000, 10).unwrap().is_empty());
        assert_eq!(s.outbox_counts().unwrap(), (0, 0, 1));
    }
}
