-- Team mode's shared state: the tables of the SQLite schema (sessions, call ids, pending and
-- remembered approvals, the outbox), each row tagged with the member (host) that wrote it.
-- Applied once, in a transaction, under the migration advisory lock (postgres/migrate.rs).
-- Never edit a shipped migration: add the next file.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    intendant TEXT NOT NULL,
    repo TEXT NOT NULL,
    task TEXT NOT NULL DEFAULT '',
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    started_at_ms BIGINT NOT NULL,
    ended_at_ms BIGINT,
    lease_owner TEXT NOT NULL,
    fencing_token BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    -- NULL: not recorded, so treated as not confined.
    agent_confined BOOLEAN
);
CREATE INDEX sessions_host_status ON sessions (host, status);

CREATE TABLE calls (
    session TEXT NOT NULL,
    call_id TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    PRIMARY KEY (session, call_id)
);

CREATE TABLE pending_approvals (
    session TEXT NOT NULL,
    call_id TEXT NOT NULL,
    host TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    request_json TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    resolved_at_ms BIGINT,
    -- The relay (the daemon holding the approval channel) that claimed it, until when.
    relay_owner TEXT,
    relay_until_ms BIGINT,
    PRIMARY KEY (session, call_id)
);
CREATE INDEX pending_status ON pending_approvals (status, created_at_ms);

CREATE TABLE remembered_approvals (
    session TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    cwd TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    by_json TEXT NOT NULL,
    call_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (session, rule_id, tool, cwd, input_sha256, policy_sha256)
);

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    host TEXT NOT NULL,
    kind TEXT NOT NULL,
    session TEXT,
    body_json TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    last_error TEXT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);

-- Wake-up hints: NOTIFY on commit of any write that others may wait for. A hint carries no
-- data; listeners re-read.
CREATE FUNCTION agp_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agp_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION agp_notify_outbox();

CREATE FUNCTION agp_notify_approvals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agp_approvals', '');
    RETURN NULL;
END $$;
CREATE TRIGGER approvals_notify AFTER INSERT OR UPDATE OF status ON pending_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION agp_notify_approvals();
