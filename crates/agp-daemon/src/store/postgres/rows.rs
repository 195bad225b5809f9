//! Reading rows of the shared database into the store's row types.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::pg_err;
use crate::store::{OutboxRow, PendingRow, RememberedKey, SessionRow, StoreError};

pub(super) fn session_row(r: &Row) -> Result<SessionRow, StoreError> {
    let get = |e: tokio_postgres::Error| pg_err(e);
    Ok(SessionRow {
        id: r.try_get("id").map_err(get)?,
        intendant: r.try_get("intendant").map_err(get)?,
        repo: r.try_get("repo").map_err(get)?,
        task: r.try_get("task").map_err(get)?,
        mode: r.try_get("mode").map_err(get)?,
        status: r.try_get("status").map_err(get)?,
        started_at_ms: r.try_get("started_at_ms").map_err(get)?,
        ended_at_ms: r.try_get("ended_at_ms").map_err(get)?,
        lease_owner: r.try_get("lease_owner").map_err(get)?,
        fencing_token: r.try_get("fencing_token").map_err(get)?,
        heartbeat_ms: r.try_get("heartbeat_ms").map_err(get)?,
    })
}

pub(super) fn pending_row(r: &Row) -> Result<PendingRow, StoreError> {
    Ok(PendingRow {
        session: r.try_get("session").map_err(pg_err)?,
        call_id: r.try_get("call_id").map_err(pg_err)?,
        input_sha256: r.try_get("input_sha256").map_err(pg_err)?,
        request_json: r.try_get("request_json").map_err(pg_err)?,
        expires_at_ms: r.try_get("expires_at_ms").map_err(pg_err)?,
    })
}

pub(super) fn outbox_row(r: &Row) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: r.try_get("id").map_err(pg_err)?,
        kind: r.try_get("kind").map_err(pg_err)?,
        session: r.try_get("session").map_err(pg_err)?,
        body_json: r.try_get("body_json").map_err(pg_err)?,
        attempts: r.try_get("attempts").map_err(pg_err)?,
    })
}

pub(super) fn all<T>(
    rows: &[Row],
    read: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(read).collect()
}

pub(super) fn key_params(key: &RememberedKey) -> [&(dyn ToSql + Sync); 6] {
    [
        &key.session,
        &key.rule_id,
        &key.tool,
        &key.cwd,
        &key.input_sha256,
        &key.policy_sha256,
    ]
}
