//! `state.db`'s schema: its migrations, in order.

/// Schema migrations, applied in order; `user_version` records how many ran. Never edit a
/// shipped migration: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
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
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
