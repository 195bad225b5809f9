//! Durable daemon state: sessions (with leases), call ids (replay protection), pending
//! approvals and the projection outbox. [`StateStore`] is the contract (`contract.rs`), with
//! [`SqliteStore`] (one machine, the default) and [`PgStore`] (team mode) implementing it.
//!
//! [`Store`] is the SQLite engine itself. Its methods are blocking; async callers go through
//! `spawn_blocking` ([`SqliteStore`] does). One connection behind a
//! mutex is enough: every statement is short, and WAL keeps readers (`agp sessions`) off the
//! writer's back.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;
use serde::Serialize;

/// A row struct read from a query row whose column names are the field names.
macro_rules! from_row {
    ($r:expr, $ty:ident { $($field:ident),* $(,)? }) => {
        Ok($ty { $($field: $r.get(stringify!($field))?),* })
    };
}

mod confinement;
pub use confinement::UnconfinedSession;
pub mod contract;
#[cfg(test)]
mod contract_tests;
mod outbox;
mod pending;
mod postgres;
mod remembered;
mod sessions;
mod sqlite;
#[cfg(test)]
mod tests;

pub use contract::{HostedSession, StateStore, Topic};
pub use postgres::{
    ChannelLease, LeaseHolder, NewCheckpoint, PgLedger, PgStore, PublishedRow, RelayWrite,
    PG_MIGRATIONS,
};
pub use sqlite::SqliteStore;

pub use crate::schema::SCHEMA_VERSION;
pub use remembered::RememberedKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database schema version {found} is newer than this agp understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("state database: {0}")]
    Invalid(String),
    /// The shared state cannot be reached (PostgreSQL down or unreachable, no pooled
    /// connection in time): whatever needed it is refused, never assumed.
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
    /// The shared database refused a statement.
    #[error("shared state: {0}")]
    Postgres(String),
}

impl StoreError {
    /// Whether this is the engine being unreachable (retry later) rather than a bad request.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

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
    from_row!(
        r,
        SessionRow {
            id,
            intendant,
            repo,
            task,
            mode,
            status,
            started_at_ms,
            ended_at_ms,
            lease_owner,
            fencing_token,
            heartbeat_ms,
        }
    )
}

/// Every row `sql` selects, each read by `read`.
fn select_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, read)?;
    Ok(rows.collect::<Result<_, _>>()?)
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
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
}
