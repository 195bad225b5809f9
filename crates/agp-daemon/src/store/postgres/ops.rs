//! The contract's operations in SQL. Statements are prepared once per pooled connection
//! (`prepare_cached`). Work that several daemons may claim at once is taken with
//! `FOR UPDATE SKIP LOCKED`: each row goes to one claimer, and nobody waits on another's lock.

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{all, key_params, outbox_row, pending_row, session_row};
use super::{pg_err, PgStore};
use crate::store::contract::{HostedSession, StateStore, Topic};
use crate::store::{
    OutboxRow, PendingRow, RememberedKey, SessionRow, StoreError, UnconfinedSession,
};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

const SESSION_COLUMNS: &str = "id, intendant, repo, task, mode, status, started_at_ms, \
     ended_at_ms, lease_owner, fencing_token, heartbeat_ms";
const PENDING_COLUMNS: &str = "session, call_id, input_sha256, request_json, expires_at_ms";
const OUTBOX_COLUMNS: &str = "id, kind, session, body_json, attempts";
const KEY_IS: &str = "session = $1 AND rule_id = $2 AND tool = $3 AND cwd = $4 \
     AND input_sha256 = $5 AND policy_sha256 = $6";

impl PgStore {
    pub(super) async fn query(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.query(&statement, params).await.map_err(pg_err)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(crate) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_err)?;
        client.execute(&statement, params).await.map_err(pg_err)
    }

    /// Ends this member's active sessions meeting `condition` (SQL on `$4`) as `status`, and
    /// returns them as they were.
    async fn end_active(
        &self,
        condition: &str,
        arg: &(dyn ToSql + Sync),
        status: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let old_columns = SESSION_COLUMNS
            .split(", ")
            .map(|c| format!("old.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH old AS (SELECT {SESSION_COLUMNS} FROM sessions
                          WHERE host = $1 AND status = 'active' AND {condition} FOR UPDATE)
             UPDATE sessions s SET status = $2, ended_at_ms = $3 FROM old WHERE s.id = old.id
             RETURNING {old_columns}"
        );
        let rows = self
            .query(&sql, &[&self.member, &status, &now_ms, arg])
            .await?;
        let mut rows = all(&rows, session_row)?;
        rows.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        Ok(rows)
    }
}

#[async_trait]
impl StateStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn member(&self) -> &str {
        &self.member
    }

    fn wakeups(&self, topic: Topic) -> watch::Receiver<u64> {
        self.hints.subscribe(topic)
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "SELECT COALESCE(MAX(version), 0) FROM agp_schema_migrations",
                &[],
            )
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    async fn insert_session(
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
        self.execute(
            "INSERT INTO sessions (id, host, intendant, repo, task, mode, status, token_sha256,
                 started_at_ms, lease_owner, fencing_token, heartbeat_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, 1, $8)",
            &[
                &id,
                &self.member,
                &intendant,
                &repo,
                &task,
                &mode,
                &token_sha256,
                &now_ms,
                &owner,
            ],
        )
        .await?;
        Ok(1)
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        self.query_opt(&sql, &[&id])
            .await?
            .as_ref()
            .map(session_row)
            .transpose()
    }

    /// Only this member's: a session is served by the daemon of the host it runs on.
    async fn active_session_by_token(
        &self,
        token_sha256: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE token_sha256 = $1 AND status = 'active' AND host = $2"
        );
        self.query_opt(&sql, &[&token_sha256, &self.member])
            .await?
            .as_ref()
            .map(session_row)
            .transpose()
    }

    async fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE host = $1 ORDER BY started_at_ms, id"
        );
        all(&self.query(&sql, &[&self.member]).await?, session_row)
    }

    async fn team_sessions(&self) -> Result<Vec<HostedSession>, StoreError> {
        let sql =
            format!("SELECT host, {SESSION_COLUMNS} FROM sessions ORDER BY started_at_ms, id");
        self.query(&sql, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(HostedSession {
                    host: r.try_get("host").map_err(pg_err)?,
                    session: session_row(r)?,
                })
            })
            .collect()
    }

    /// Only this member's sessions: another host's session is not taken over from here (its
    /// agent runs there, out of this daemon's reach).
    async fn claim_lease(
        &self,
        id: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .query_opt(
                "UPDATE sessions SET lease_owner = $2, fencing_token = fencing_token + 1,
                     heartbeat_ms = $3
                 WHERE id = $1 AND status = 'active' AND host = $4 RETURNING fencing_token",
                &[&id, &owner, &now_ms, &self.member],
            )
            .await?
            .map(|r| r.get(0)))
    }

    async fn heartbeat(&self, owner: &str, now_ms: i64) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "UPDATE sessions SET heartbeat_ms = $2
                 WHERE lease_owner = $1 AND status = 'active'",
                &[&owner, &now_ms],
            )
            .await?;
        Ok(n as usize)
    }

    async fn end_session(
        &self,
        id: &str,
        status: &str,
        fencing_token: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE sessions SET status = $2, ended_at_ms = $4
                 WHERE id = $1 AND status = 'active' AND fencing_token = $3",
                &[&id, &status, &fencing_token, &now_ms],
            )
            .await?;
        Ok(n == 1)
    }

    async fn reap_expired(
        &self,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.end_active("heartbeat_ms < $4", &cutoff_ms, "reaped", now_ms)
            .await
    }

    async fn end_orphans(
        &self,
        owner_prefix: &str,
        now_ms: i64,
    ) -> Result<Vec<SessionRow>, StoreError> {
        self.end_active(
            "starts_with(lease_owner, $4)",
            &owner_prefix,
            "interrupted",
            now_ms,
        )
        .await
    }

    async fn set_agent_confined(&self, session: &str, confined: bool) -> Result<(), StoreError> {
        self.execute(
            "UPDATE sessions SET agent_confined = $2 WHERE id = $1",
            &[&session, &confined],
        )
        .await?;
        Ok(())
    }

    /// This member's: the policy watch of one machine asks about the agents on it.
    async fn unconfined_sessions(
        &self,
        since_ms: Option<i64>,
    ) -> Result<Vec<UnconfinedSession>, StoreError> {
        let rows = self
            .query(
                "SELECT id, intendant, repo, agent_confined, ended_at_ms FROM sessions
                 WHERE host = $2 AND (agent_confined IS NULL OR NOT agent_confined)
                   AND (status = 'active' OR ($1::BIGINT IS NOT NULL AND ended_at_ms >= $1))
                 ORDER BY started_at_ms, id",
                &[&since_ms, &self.member],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UnconfinedSession {
                    id: r.try_get("id").map_err(pg_err)?,
                    intendant: r.try_get("intendant").map_err(pg_err)?,
                    repo: r.try_get("repo").map_err(pg_err)?,
                    agent_confined: r.try_get("agent_confined").map_err(pg_err)?,
                    ended_at_ms: r.try_get("ended_at_ms").map_err(pg_err)?,
                })
            })
            .collect()
    }

    async fn record_call(
        &self,
        session: &str,
        call_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "INSERT INTO calls (session, call_id, received_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&session, &call_id, &now_ms],
            )
            .await?;
        Ok(n == 1)
    }

    async fn call_seen(&self, session: &str, call_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM calls WHERE session = $1 AND call_id = $2",
                &[&session, &call_id],
            )
            .await?
            .is_some())
    }

    async fn insert_pending(&self, row: &PendingRow, now_ms: i64) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO pending_approvals (session, call_id, host, input_sha256, request_json,
                 expires_at_ms, status, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
            &[
                &row.session,
                &row.call_id,
                &self.member,
                &row.input_sha256,
                &row.request_json,
                &row.expires_at_ms,
                &now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn resolve_pending(
        &self,
        session: &str,
        call_id: &str,
        input_sha256: &str,
        status: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE pending_approvals SET status = $4, resolved_at_ms = $5
                 WHERE session = $1 AND call_id = $2 AND input_sha256 = $3
                   AND status = 'pending'",
                &[&session, &call_id, &input_sha256, &status, &now_ms],
            )
            .await?;
        Ok(n == 1)
    }

    async fn pending(&self) -> Result<Vec<PendingRow>, StoreError> {
        let sql = format!(
            "SELECT {PENDING_COLUMNS} FROM pending_approvals
             WHERE status = 'pending' AND host = $1 ORDER BY created_at_ms, session, call_id"
        );
        all(&self.query(&sql, &[&self.member]).await?, pending_row)
    }

    async fn claim_pending_relay(
        &self,
        relay: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<PendingRow>, StoreError> {
        let sql = format!(
            "UPDATE pending_approvals SET relay_owner = $1, relay_until_ms = $3
             WHERE (session, call_id) IN (
                 SELECT session, call_id FROM pending_approvals
                 WHERE status = 'pending'
                   AND (relay_owner IS NULL OR relay_owner = $1 OR relay_until_ms <= $2)
                 ORDER BY created_at_ms, session, call_id LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING {PENDING_COLUMNS}, created_at_ms"
        );
        let rows = self
            .query(&sql, &[&relay, &now_ms, &lease_until_ms, &limit])
            .await?;
        let mut keyed = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, i64>("created_at_ms").map_err(pg_err)?,
                    pending_row(r)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        keyed.sort_by(|a, b| {
            (a.0, &a.1.session, &a.1.call_id).cmp(&(b.0, &b.1.session, &b.1.call_id))
        });
        Ok(keyed.into_iter().map(|(_, row)| row).collect())
    }

    async fn remember_approval(
        &self,
        key: &RememberedKey,
        by_json: &str,
        call_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut params: Vec<&(dyn ToSql + Sync)> = key_params(key).to_vec();
        params.extend_from_slice(&[&by_json, &call_id, &now_ms, &expires_at_ms]);
        self.execute(
            "INSERT INTO remembered_approvals (session, rule_id, tool, cwd, input_sha256,
                 policy_sha256, by_json, call_id, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (session, rule_id, tool, cwd, input_sha256, policy_sha256) DO UPDATE
             SET by_json = EXCLUDED.by_json, call_id = EXCLUDED.call_id,
                 created_at_ms = EXCLUDED.created_at_ms, expires_at_ms = EXCLUDED.expires_at_ms",
            &params,
        )
        .await?;
        Ok(())
    }

    async fn remembered_approval(
        &self,
        key: &RememberedKey,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.execute(
            "DELETE FROM remembered_approvals WHERE expires_at_ms <= $1",
            &[&now_ms],
        )
        .await?;
        let mut params: Vec<&(dyn ToSql + Sync)> = key_params(key).to_vec();
        params.push(&now_ms);
        let sql = format!(
            "SELECT by_json FROM remembered_approvals WHERE {KEY_IS} AND expires_at_ms > $7"
        );
        Ok(self.query_opt(&sql, &params).await?.map(|r| r.get(0)))
    }

    async fn forget_remembered_key(&self, key: &RememberedKey) -> Result<usize, StoreError> {
        let sql = format!("DELETE FROM remembered_approvals WHERE {KEY_IS}");
        Ok(self.execute(&sql, &key_params(key)).await? as usize)
    }

    async fn forget_remembered(&self, session: &str) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "DELETE FROM remembered_approvals WHERE session = $1",
                &[&session],
            )
            .await?;
        Ok(n as usize)
    }

    async fn count_remembered(&self) -> Result<i64, StoreError> {
        let row = self
            .query_opt("SELECT COUNT(*) FROM remembered_approvals", &[])
            .await?;
        Ok(row.map_or(0, |r| r.get(0)))
    }

    async fn enqueue_outbox(
        &self,
        kind: &str,
        session: Option<&str>,
        body_json: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "INSERT INTO outbox (host, kind, session, body_json, next_attempt_ms, status,
                     created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $5) RETURNING id",
                &[&self.member, &kind, &session, &body_json, &now_ms],
            )
            .await?;
        row.map(|r| r.get(0))
            .ok_or_else(|| StoreError::Invalid("INSERT returned no id".into()))
    }

    async fn due_outbox(&self, now_ms: i64, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND host = $3
             ORDER BY id LIMIT $2"
        );
        all(
            &self.query(&sql, &[&now_ms, &limit, &self.member]).await?,
            outbox_row,
        )
    }

    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "UPDATE outbox SET next_attempt_ms = $2
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_ms <= $1
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING {OUTBOX_COLUMNS}"
        );
        let mut rows = all(
            &self
                .query(&sql, &[&now_ms, &lease_until_ms, &limit])
                .await?,
            outbox_row,
        )?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    async fn outbox_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET status = 'delivered', attempts = attempts + 1 WHERE id = $1",
            &[&id],
        )
        .await?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
        dead: bool,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_ms = $3,
                 status = CASE WHEN $4 THEN 'dead' ELSE 'pending' END
             WHERE id = $1",
            &[&id, &error, &next_attempt_ms, &dead],
        )
        .await?;
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = self
            .query_opt(
                "SELECT COUNT(*) FILTER (WHERE status = 'pending'),
                        COUNT(*) FILTER (WHERE status = 'delivered'),
                        COUNT(*) FILTER (WHERE status = 'dead')
                 FROM outbox",
                &[],
            )
            .await?;
        Ok(row.map_or((0, 0, 0), |r| (r.get(0), r.get(1), r.get(2))))
    }

    async fn prune(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let mut n = tx
            .execute(
                "DELETE FROM calls WHERE session IN
                     (SELECT id FROM sessions WHERE status != 'active' AND ended_at_ms < $1)",
                &[&before_ms],
            )
            .await
            .map_err(pg_err)?;
        n += tx
            .execute(
                "DELETE FROM outbox WHERE status = 'delivered' AND created_at_ms < $1",
                &[&before_ms],
            )
            .await
            .map_err(pg_err)?;
        n += tx
            .execute(
                "DELETE FROM pending_approvals WHERE status != 'pending' AND resolved_at_ms < $1",
                &[&before_ms],
            )
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(n as usize)
    }
}
