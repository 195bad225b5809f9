//! Durable state of approvals posted to Slack, so a daemon restart re-attaches to the messages
//! already posted (and to the votes already cast) instead of asking again.

use std::path::Path;
use std::sync::Mutex;

use agp_contracts::{ApprovalOutcome, ApprovalRequest, Approver};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Slack approval store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("Slack approval store holds a corrupt record: {0}")]
    Corrupt(String),
    #[error("Slack approval store: {0}")]
    Schema(#[from] agp_daemon::store::StoreError),
    #[error("Slack approval store lock poisoned")]
    Poisoned,
    /// Team mode: this daemon no longer holds the Slack lease, so it may not write.
    #[error("Slack approval store: this daemon no longer holds the team's Slack lease")]
    Fenced,
}

/// One approval put to Slack. The nonce is what the buttons carry; everything a click is
/// checked against lives here, never in the click itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// 256-bit random hex; the buttons' binding to this exact call.
    pub nonce: String,
    pub request: ApprovalRequest,
    pub channel: String,
    /// The session's root message (the approval is posted in its thread).
    pub thread_ts: Option<String>,
    /// The approval message; `None` until chat.postMessage succeeded.
    pub message_ts: Option<String>,
    /// Distinct approvers who allowed so far.
    pub votes: Vec<Approver>,
    /// The ids among `votes` who chose "allow for this session": the grant is for the session
    /// only when every counted vote chose it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub for_session: Vec<String>,
    /// Set once decided (granted, denied or timed out): the nonce is then burned.
    pub outcome: Option<ApprovalOutcome>,
}

impl PendingRecord {
    pub fn is_decided(&self) -> bool {
        self.outcome.is_some()
    }
}

/// Persistence of pending approvals and session root messages. Implementations must make
/// `save` durable before returning: a vote acknowledged to a person must survive a crash.
pub trait PendingStore: Send + Sync {
    fn save(&self, record: &PendingRecord) -> Result<(), StoreError>;
    fn load(&self, nonce: &str) -> Result<Option<PendingRecord>, StoreError>;
    /// The record bound to exactly this call and input, if one was posted before.
    fn load_for_call(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<PendingRecord>, StoreError>;
    /// Records not decided yet (a restarted daemon re-attaches to them).
    fn undecided(&self) -> Result<Vec<PendingRecord>, StoreError>;
    fn remove(&self, nonce: &str) -> Result<(), StoreError>;
    fn session_root(&self, session: &str) -> Result<Option<String>, StoreError>;
    fn set_session_root(&self, session: &str, channel: &str, ts: &str) -> Result<(), StoreError>;
}

/// SQLite tables of their own (prefixed `slack_`) in the daemon's state.db, whose one migration
/// list (`agp_daemon::schema`) creates them: this store uses them, it never creates them.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// Decided records are kept this long after their expiry so a late click is recognised as a
/// replay rather than an unknown button.
const KEEP_DECIDED_MS: u64 = 7 * 24 * 3600 * 1000;

impl SqliteStore {
    /// Opens the database at `path`, creating and migrating it if needed (WAL, synchronous=FULL).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        agp_daemon::schema::create_private(path)?;
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // journal_mode returns a row; query it rather than execute.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        agp_daemon::schema::migrate(&mut conn)?;
        let cutoff = crate::now_ms().saturating_sub(KEEP_DECIDED_MS);
        conn.execute(
            "DELETE FROM slack_approvals WHERE decided = 1 AND expires_at_ms < ?1",
            params![cutoff as i64],
        )?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&conn)
    }
}

fn decode(json: &str) -> Result<PendingRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl PendingStore for SqliteStore {
    fn save(&self, r: &PendingRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.with(|c| {
            c.execute(
                "INSERT INTO slack_approvals
                   (nonce, session, call_id, input_sha256, decided, expires_at_ms, record_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (nonce) DO UPDATE SET decided = ?5, record_json = ?7",
                params![
                    r.nonce,
                    r.request.session,
                    r.request.call_id,
                    r.request.input_sha256,
                    r.is_decided(),
                    r.request.expires_at_ms as i64,
                    json
                ],
            )?;
            Ok(())
        })
    }

    fn load(&self, nonce: &str) -> Result<Option<PendingRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT record_json FROM slack_approvals WHERE nonce = ?1",
                [nonce],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .as_deref()
            .map(decode)
            .transpose()
        })
    }

    fn load_for_call(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
    ) -> Result<Option<PendingRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT record_json FROM slack_approvals
                 WHERE session = ?1 AND call_id = ?2 AND input_sha256 = ?3",
                [session, call_id, input_sha256],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .as_deref()
            .map(decode)
            .transpose()
        })
    }

    fn undecided(&self) -> Result<Vec<PendingRecord>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT record_json FROM slack_approvals WHERE decided = 0 ORDER BY expires_at_ms",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| decode(&r?)).collect()
        })
    }

    fn remove(&self, nonce: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM slack_approvals WHERE nonce = ?1", [nonce])?;
            Ok(())
        })
    }

    fn session_root(&self, session: &str) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT root_ts FROM slack_sessions WHERE session = ?1",
                [session],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    fn set_session_root(&self, session: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO slack_sessions (session, channel, root_ts) VALUES (?1, ?2, ?3)
                 ON CONFLICT (session) DO UPDATE SET channel = ?2, root_ts = ?3",
                [session, channel, ts],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A stored quorum-2 request for `call`, posted in thread `1.0`, far from expiring.
    pub(crate) fn record(nonce: &str, call: &str) -> PendingRecord {
        PendingRecord {
            nonce: nonce.into(),
            request: ApprovalRequest {
                session: "s1".into(),
                call_id: call.into(),
                tool: "Bash".into(),
                redacted_input: json!({"command": "rm -rf build"}),
                input_sha256: "ab".repeat(32),
                rule_id: Some("r1".into()),
                reason: "deletes files".into(),
                approvers: vec![],
                quorum: 2,
                expires_at_ms: u64::MAX / 4,
                remember_secs: None,
            },
            channel: "C1".into(),
            thread_ts: Some("1.0".into()),
            message_ts: None,
            votes: vec![],
            for_session: vec![],
            outcome: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_track_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let s = SqliteStore::open(&db).unwrap();
            let mut r = record("n1", "c1");
            s.save(&r).unwrap();
            r.message_ts = Some("2.0".into());
            r.votes.push(Approver {
                id: "U1".into(),
                name: "Alice".into(),
                via: "slack".into(),
            });
            s.save(&r).unwrap();
            s.save(&record("n2", "c2")).unwrap();
            s.set_session_root("s1", "C1", "1.0").unwrap();
        }
        let s = SqliteStore::open(&db).unwrap();
        let r = s.load("n1").unwrap().unwrap();
        assert_eq!(r.message_ts.as_deref(), Some("2.0"));
        assert_eq!(r.votes.len(), 1);
        let same = s.load_for_call("s1", "c1", &"ab".repeat(32)).unwrap();
        assert_eq!(same, Some(r.clone()));
        assert!(s
            .load_for_call("s1", "c1", &"cd".repeat(32))
            .unwrap()
            .is_none());
        assert_eq!(s.undecided().unwrap().len(), 2);
        let mut d = r;
        d.outcome = Some(ApprovalOutcome::Timeout);
        s.save(&d).unwrap();
        assert_eq!(s.undecided().unwrap().len(), 1);
        assert_eq!(s.session_root("s1").unwrap().as_deref(), Some("1.0"));
        s.remove("n2").unwrap();
        assert!(s.load("n2").unwrap().is_none());
    }

    #[test]
    fn a_second_record_for_the_same_call_is_refused() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.save(&record("n1", "c1")).unwrap();
        assert!(s.save(&record("n2", "c1")).is_err());
    }

    /// A state.db of the previous schema code: the daemon's tables at version 1, and the
    /// Slack tables this crate created on the side (untracked) holding a pending approval.
    /// Opening it migrates it, and the approval is still there for both owners' code.
    #[test]
    fn a_state_db_of_the_previous_schema_keeps_its_pending_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(agp_daemon::schema::MIGRATIONS[0])
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            // What this crate created before the daemon's migrations owned its tables: the same
            // statements as migration 2, but untracked (user_version stays 1).
            conn.execute_batch(agp_daemon::schema::MIGRATIONS[1])
                .unwrap();
            let r = record("n1", "c1");
            conn.execute(
                "INSERT INTO slack_approvals VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                params![
                    r.nonce,
                    r.request.session,
                    r.request.call_id,
                    r.request.input_sha256,
                    r.request.expires_at_ms as i64,
                    serde_json::to_string(&r).unwrap()
                ],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&db).unwrap();
        assert_eq!(s.load("n1").unwrap(), Some(record("n1", "c1")));
        assert_eq!(s.undecided().unwrap().len(), 1);
        drop(s);
        let daemon = agp_daemon::store::Store::open(&db).unwrap();
        assert_eq!(
            daemon.schema_version().unwrap(),
            agp_daemon::store::SCHEMA_VERSION
        );
    }

    /// The Slack channel opens state.db before the daemon does: it must create it private.
    #[test]
    fn a_state_db_first_made_by_the_slack_store_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        s.set_session_root("s1", "C1", "1.0").unwrap();
        let modes: Vec<u32> = ["state.db", "state.db-wal", "state.db-shm"]
            .iter()
            .map(|f| {
                std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            })
            .collect();
        assert_eq!(modes, [0o600; 3]);
    }
}
