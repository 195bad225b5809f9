//! The index file: tables, pragmas, and the progress record (`meta`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::IndexError;

/// Bumped when the tables or what goes into them change: an index of another format is
/// rebuilt, never migrated (it is a cache of the journal).
pub const FORMAT: i64 = 1;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
-- One row per journal line: where it is, and its leaf hash to check a re-read against.
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, off INTEGER NOT NULL, len INTEGER NOT NULL, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    agent TEXT, repo TEXT, task TEXT, operator TEXT, mode TEXT, policy_mode TEXT,
    state TEXT NOT NULL, end_status TEXT, started_ts TEXT, ended_ts TEXT, last_ts TEXT,
    calls INTEGER NOT NULL DEFAULT 0, allowed INTEGER NOT NULL DEFAULT 0,
    denied INTEGER NOT NULL DEFAULT 0, approved INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0, egress INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sessions_first ON sessions(first_seq);
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, session TEXT NOT NULL,
    call_id TEXT NOT NULL, tool TEXT, summary TEXT, input_sha256 TEXT, cwd TEXT,
    verdict TEXT, shadow_verdict TEXT, policy_mode TEXT, rule_id TEXT, reason TEXT,
    deciding_part TEXT, approval TEXT, approval_channel TEXT, approval_reason TEXT,
    approvers TEXT, outcome TEXT,
    result_seq INTEGER, ok INTEGER, exit_code INTEGER, timed_out INTEGER, result_error TEXT,
    output_sha256 TEXT, output_bytes INTEGER, reported_by TEXT,
    egress INTEGER NOT NULL DEFAULT 0,
    requested_ts TEXT, decided_ts TEXT, approval_ts TEXT, result_ts TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS calls_key ON calls(session, call_id);
-- Rows of a session in seq order (the rowid is the seq).
CREATE INDEX IF NOT EXISTS calls_session ON calls(session);
CREATE INDEX IF NOT EXISTS calls_open ON calls(session, result_seq);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, session TEXT, kind TEXT NOT NULL, call_id TEXT, ts TEXT,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_session ON events(session, kind);
-- Roots of the indexed tree at sizes a checkpoint may name (batch ends, checkpoint sizes seen).
CREATE TABLE IF NOT EXISTS roots (size INTEGER PRIMARY KEY, root BLOB NOT NULL);
";

const DROP: &str = "
DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS sessions; DROP TABLE IF EXISTS calls;
DROP TABLE IF EXISTS events; DROP TABLE IF EXISTS roots; DELETE FROM meta;
";

/// Sets the pragmas every connection needs and creates the tables.
pub fn prepare(conn: &Connection) -> Result<(), IndexError> {
    // WAL: readers (the console's pages) are not blocked by a catch-up writing a batch.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The index is a cache rebuilt from the journal: a crash losing the last batches costs a
    // re-read of them, never the journal's data, so full fsyncs buy nothing here.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Another process (a second console) may be writing a batch: wait rather than fail.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute_batch(TABLES)?;
    Ok(())
}

/// Drops everything indexed (inside the caller's transaction).
pub fn reset(conn: &Connection) -> Result<(), IndexError> {
    conn.execute_batch(DROP)?;
    conn.execute_batch(TABLES)?;
    set(conn, "format", FORMAT)?;
    Ok(())
}

pub fn get<T: rusqlite::types::FromSql>(
    conn: &Connection,
    k: &str,
) -> Result<Option<T>, IndexError> {
    // A member set to NULL reads as absent.
    Ok(conn
        .prepare_cached("SELECT v FROM meta WHERE k = ?1")?
        .query_row([k], |r| r.get::<_, Option<T>>(0))
        .optional()?
        .flatten())
}

pub fn set<T: rusqlite::ToSql>(conn: &Connection, k: &str, v: T) -> Result<(), IndexError> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)")?
        .execute(params![k, v])?;
    Ok(())
}
