//! The schema of `state.db`, owned here and nowhere else: one versioned list of migrations for
//! every table in the file, the daemon's and its channels' (the Slack channel keeps its pending
//! approvals next to the daemon's). Whoever opens the file first migrates it; the others find it
//! current. Channels use their tables, they never create them.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;

/// Schema migrations, applied in order; `user_version` records how many ran. Never edit a
/// shipped migration: append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: sessions, call ids, pending approvals, outbox.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        intendant TEXT NOT NULL,
        repo TEXT NOT NULL,
        task TEXT NOT NULL DEFAULT '',
        mode TEXT NOT NULL,
        status TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        lease_owner TEXT NOT NULL,
        fencing_token INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL
    );
    CREATE INDEX sessions_status ON sessions(status);
    CREATE TABLE calls (
        session TEXT NOT NULL,
        call_id TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session, call_id)
    ) WITHOUT ROWID;
    CREATE TABLE pending_approvals (
        session TEXT NOT NULL,
        call_id TEXT NOT NULL,
        input_sha256 TEXT NOT NULL,
        request_json TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        resolved_at_ms INTEGER,
        PRIMARY KEY (session, call_id)
    );
    CREATE INDEX pending_status ON pending_approvals(status);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        session TEXT,
        body_json TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        status TEXT NOT NULL,
        last_error TEXT,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_ms);",
    // 2: the Slack channel's pending approvals and session root messages. Before version 2 the
    // Slack channel created these itself, untracked: IF NOT EXISTS adopts those tables as they are.
    "CREATE TABLE IF NOT EXISTS slack_approvals (
        nonce TEXT PRIMARY KEY,
        session TEXT NOT NULL,
        call_id TEXT NOT NULL,
        input_sha256 TEXT NOT NULL,
        decided INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        record_json TEXT NOT NULL,
        UNIQUE (session, call_id, input_sha256)
    );
    CREATE TABLE IF NOT EXISTS slack_sessions (
        session TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        root_ts TEXT NOT NULL
    );",
    // 3: whether a session's agent is confined by agp's sandbox (1) or runs on the host (0);
    // NULL for sessions an older agp opened: not known, so treated as not confined.
    "ALTER TABLE sessions ADD COLUMN agent_confined INTEGER;",
    // 4: "allow for this session" answers: the exact call (rule, tool, cwd, canonical input)
    // under one policy, until a wall-clock expiry, so a daemon restart keeps them.
    "CREATE TABLE remembered_approvals (
        session TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        cwd TEXT NOT NULL,
        input_sha256 TEXT NOT NULL,
        policy_sha256 TEXT NOT NULL,
        by_json TEXT NOT NULL,
        call_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (session, rule_id, tool, cwd, input_sha256, policy_sha256)
    );",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest schema the read-only operator commands (`Store::open_existing`) can read: the
/// daemon tables they query have not changed since. Raise it when a migration changes them.
pub const OLDEST_READABLE: i64 = 1;

/// Creates the database file 0600 if it does not exist yet: SQLite gives its -wal and -shm
/// files the database file's mode, and the file holds session tokens' hashes and approvals.
pub fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        // Created meanwhile by another opener: theirs is as good.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Invalid(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Applies the migrations `conn` has not had yet, each in its own write transaction, and
/// returns the resulting version. The version is read inside the transaction, so two openers
/// racing on a fresh file apply each migration once.
pub fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let Some(migration) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(version);
        };
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        let names = stmt.query_map([], |r| r.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    }

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// The tables every owner of the file uses, all made by the one migration list.
    const ALL_TABLES: [&str; 7] = [
        "calls",
        "outbox",
        "pending_approvals",
        "remembered_approvals",
        "sessions",
        "slack_approvals",
        "slack_sessions",
    ];

    #[test]
    fn a_fresh_file_gets_every_table_and_the_current_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(version(&conn), SCHEMA_VERSION);
        assert_eq!(tables(&conn), ALL_TABLES);
        // Again: nothing to do.
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(tables(&conn), ALL_TABLES);
    }

    /// A state.db holding the version-1 tables (and its directory).
    fn version_1_db() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        (dir, path, conn)
    }

    /// A state.db written by the schema code before version 2: the daemon's version-1 tables,
    /// and the Slack channel's tables created on the side (untracked), holding a record.
    #[test]
    fn a_state_db_of_the_previous_schema_code_is_migrated_and_keeps_its_rows() {
        let (_dir, path, conn) = version_1_db();
        // Exactly what agp-slack created before it stopped owning its tables.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS slack_approvals (
                nonce TEXT PRIMARY KEY, session TEXT NOT NULL, call_id TEXT NOT NULL,
                input_sha256 TEXT NOT NULL, decided INTEGER NOT NULL,
                expires_at_ms INTEGER NOT NULL, record_json TEXT NOT NULL,
                UNIQUE (session, call_id, input_sha256));
             CREATE TABLE IF NOT EXISTS slack_sessions (
                session TEXT PRIMARY KEY, channel TEXT NOT NULL, root_ts TEXT NOT NULL);
             INSERT INTO slack_sessions VALUES ('s1', 'C1', '171.1');",
        )
        .unwrap();
        drop(conn);

        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(tables(&conn), ALL_TABLES);
        let root: String = conn
            .query_row(
                "SELECT root_ts FROM slack_sessions WHERE session = 's1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(root, "171.1");
    }

    /// A file only the Slack channel had opened (it used to open state.db before the daemon).
    #[test]
    fn a_state_db_with_only_the_old_slack_tables_is_migrated() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        assert_eq!(version(&conn), 0);
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(tables(&conn), ALL_TABLES);
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found, known }) if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION
        ));
        assert!(tables(&conn).is_empty());
    }

    #[test]
    fn two_openers_of_a_fresh_file_migrate_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        create_private(&path).unwrap();
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut conn = Connection::open(&path).unwrap();
                    conn.busy_timeout(std::time::Duration::from_secs(30))
                        .unwrap();
                    migrate(&mut conn).unwrap()
                })
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap(), SCHEMA_VERSION);
        }
        assert_eq!(tables(&Connection::open(&path).unwrap()), ALL_TABLES);
    }

    /// `agp sessions` and `agp doctor` on a home upgraded while its daemon is stopped: the
    /// version-1 file is read as it is, and left unmigrated.
    #[test]
    fn operator_commands_read_a_version_1_file_without_migrating_it() {
        let (_dir, path, conn) = version_1_db();
        drop(conn);
        let store = crate::store::Store::open_existing(&path).unwrap();
        assert!(store.sessions().unwrap().is_empty());
        assert_eq!(store.schema_version().unwrap(), 1);
        // Older than anything readable: refused with the fix.
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 0).unwrap();
        drop(conn);
        let err = crate::store::Store::open_existing(&path).err().unwrap();
        assert!(
            err.to_string().contains("start the daemon once to migrate"),
            "{err}"
        );
    }
}
