//! The pages: read through the reader connection, keyset-paged by seq, at most `MAX_PAGE` rows.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension as _, Row};

use crate::{
    reader, schema, Approver, CallResult, CallRow, CheckpointInfo, EntryRow, EventQuery, EventRow,
    IndexError, JournalIndex, JournalStats, Page, SessionQuery, SessionSummary, TimelineQuery,
    DEFAULT_PAGE, MAX_PAGE,
};

fn limit(l: Option<u32>) -> u32 {
    l.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

fn covered_size(conn: &Connection) -> Result<u64, IndexError> {
    Ok(schema::get::<i64>(conn, "covered")?.unwrap_or(0).max(0) as u64)
}

/// Rows of `sql` (which selects one row more than `limit` to learn whether a next page exists),
/// and the cursor of the next page.
fn page<T>(
    conn: &Connection,
    sql: &str,
    args: Vec<SqlValue>,
    limit: u32,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
    cursor: impl Fn(&T) -> u64,
) -> Result<Page<T>, IndexError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut items = stmt
        .query_map(params_from_iter(args), map)?
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more { items.last().map(cursor) } else { None };
    Ok(Page { items, next })
}

/// Adds a parameter; its placeholder (`?N`).
fn bind(args: &mut Vec<SqlValue>, v: SqlValue) -> String {
    args.push(v);
    format!("?{}", args.len())
}

/// A case-insensitive substring test of one parameter against several columns.
fn text_filter(args: &mut Vec<SqlValue>, text: &str, columns: &[&str]) -> String {
    let p = bind(args, SqlValue::Text(text.to_ascii_lowercase()));
    let tests: Vec<String> = columns
        .iter()
        .map(|c| format!("instr(lower(coalesce({c}, '')), {p}) > 0"))
        .collect();
    format!(" AND ({})", tests.join(" OR "))
}

fn u(r: &Row<'_>, i: &str) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

impl JournalIndex {
    pub fn stats(&self) -> Result<JournalStats, IndexError> {
        let conn = self.reader()?;
        let count = |sql: &str| -> Result<u64, IndexError> {
            Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
        };
        let entries = schema::get::<i64>(&conn, "next_seq")?.unwrap_or(0).max(0) as u64;
        let key: Option<String> = schema::get(&conn, "key")?;
        let key_id = key
            .as_deref()
            .and_then(|k| agp_journal::VerifierKey::parse(k).ok())
            .map(|k| k.id_hex());
        let checkpoint: Option<CheckpointInfo> = schema::get::<String>(&conn, "checkpoint")?
            .map(|s| serde_json::from_str(&s))
            .transpose()?;
        let covered = covered_size(&conn)?;
        Ok(JournalStats {
            entries,
            bytes: schema::get::<i64>(&conn, "offset")?.unwrap_or(0).max(0) as u64,
            sessions: count("SELECT count(*) FROM sessions")?,
            calls: count("SELECT count(*) FROM calls")?,
            origin: schema::get(&conn, "origin")?,
            key,
            key_id,
            checkpoint,
            covered,
            not_covered: entries.saturating_sub(covered),
        })
    }

    /// Sessions, newest (latest first entry) first.
    pub fn sessions(&self, q: &SessionQuery) -> Result<Page<SessionSummary>, IndexError> {
        let conn = self.reader()?;
        let covered = covered_size(&conn)?;
        let limit = limit(q.limit);
        let mut sql = String::from("SELECT * FROM sessions WHERE 1");
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(b) = q.before {
            let p = bind(&mut args, SqlValue::Integer(b as i64));
            sql.push_str(&format!(" AND first_seq < {p}"));
        }
        for (col, v) in [("state", &q.state), ("agent", &q.agent)] {
            if let Some(v) = v {
                let p = bind(&mut args, SqlValue::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = {p}"));
            }
        }
        if let Some(t) = q.text.as_ref().filter(|t| !t.is_empty()) {
            sql.push_str(&text_filter(
                &mut args,
                t,
                &["id", "repo", "task", "operator"],
            ));
        }
        let sql = format!("{sql} ORDER BY first_seq DESC LIMIT {}", limit + 1);
        page(
            &conn,
            &sql,
            args,
            limit,
            |r| {
                let last_seq = u(r, "last_seq")?;
                Ok(SessionSummary {
                    id: r.get("id")?,
                    first_seq: u(r, "first_seq")?,
                    last_seq,
                    agent: r.get("agent")?,
                    repo: r.get("repo")?,
                    task: r.get("task")?,
                    operator: r.get("operator")?,
                    mode: r.get("mode")?,
                    policy_mode: r.get("policy_mode")?,
                    state: r.get("state")?,
                    end_status: r.get("end_status")?,
                    started_ts: r.get("started_ts")?,
                    ended_ts: r.get("ended_ts")?,
                    last_ts: r.get("last_ts")?,
                    calls: u(r, "calls")?,
                    allowed: u(r, "allowed")?,
                    denied: u(r, "denied")?,
                    approved: u(r, "approved")?,
                    pending: u(r, "pending")?,
                    egress: u(r, "egress")?,
                    covered: last_seq < covered,
                })
            },
            |s| s.first_seq,
        )
    }

    /// One session's calls, oldest first.
    pub fn timeline(&self, session: &str, q: &TimelineQuery) -> Result<Page<CallRow>, IndexError> {
        let conn = self.reader()?;
        let covered = covered_size(&conn)?;
        let limit = limit(q.limit);
        let mut sql = String::from("SELECT * FROM calls WHERE session = ?1");
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(session.to_owned())];
        if let Some(a) = q.after {
            let p = bind(&mut args, SqlValue::Integer(a as i64));
            sql.push_str(&format!(" AND seq > {p}"));
        }
        for (col, v) in [
            ("verdict", &q.verdict),
            ("outcome", &q.outcome),
            ("tool", &q.tool),
        ] {
            if let Some(v) = v {
                let p = bind(&mut args, SqlValue::Text(v.clone()));
                sql.push_str(&format!(" AND {col} = {p}"));
            }
        }
        if let Some(t) = q.text.as_ref().filter(|t| !t.is_empty()) {
            sql.push_str(&text_filter(
                &mut args,
                t,
                &["summary", "reason", "rule_id", "tool", "call_id"],
            ));
        }
        let sql = format!("{sql} ORDER BY seq LIMIT {}", limit + 1);
        page(
            &conn,
            &sql,
            args,
            limit,
            |r| call_row(r, covered),
            |c| c.seq,
        )
    }

    /// Entries that are not call steps: of a session (`Some`), or of none (`None`: the
    /// journal's own entries, policy reloads, ...), oldest first.
    pub fn session_events(
        &self,
        session: Option<&str>,
        q: &EventQuery,
    ) -> Result<Page<EventRow>, IndexError> {
        let conn = self.reader()?;
        let covered = covered_size(&conn)?;
        let limit = limit(q.limit);
        let mut args: Vec<SqlValue> = Vec::new();
        let mut sql = match session {
            Some(s) => {
                let p = bind(&mut args, SqlValue::Text(s.to_owned()));
                format!("SELECT * FROM events WHERE session = {p}")
            }
            None => String::from("SELECT * FROM events WHERE session IS NULL"),
        };
        if let Some(a) = q.after {
            let p = bind(&mut args, SqlValue::Integer(a as i64));
            sql.push_str(&format!(" AND seq > {p}"));
        }
        if !q.kinds.is_empty() {
            let mut alts = Vec::new();
            for k in &q.kinds {
                // `egress.*` is the family: the prefix compared as text, no LIKE wildcards.
                if let Some(prefix) = k.strip_suffix('*') {
                    let n = bind(&mut args, SqlValue::Integer(prefix.len() as i64));
                    let p = bind(&mut args, SqlValue::Text(prefix.to_owned()));
                    alts.push(format!("substr(kind, 1, {n}) = {p}"));
                } else {
                    let p = bind(&mut args, SqlValue::Text(k.clone()));
                    alts.push(format!("kind = {p}"));
                }
            }
            sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
        }
        let sql = format!("{sql} ORDER BY seq LIMIT {}", limit + 1);
        page(
            &conn,
            &sql,
            args,
            limit,
            |r| {
                let seq = u(r, "seq")?;
                Ok(EventRow {
                    seq,
                    session: r.get("session")?,
                    kind: r.get("kind")?,
                    call_id: r.get("call_id")?,
                    ts: r.get("ts")?,
                    body: r.get("body")?,
                    covered: seq < covered,
                })
            },
            |e| e.seq,
        )
    }

    /// The journal line at `seq`, read from the journal file and checked against the leaf hash
    /// indexed for it (a journal changed since is [`IndexError::Stale`]).
    pub fn entry(&self, seq: u64) -> Result<Option<EntryRow>, IndexError> {
        let (off, len, leaf, covered) = {
            let conn = self.reader()?;
            let covered = covered_size(&conn)?;
            let Some((off, len, leaf)) = conn
                .prepare_cached("SELECT off, len, leaf FROM entries WHERE seq = ?1")?
                .query_row([seq as i64], |r| {
                    Ok((u(r, "off")?, u(r, "len")?, r.get::<_, Vec<u8>>("leaf")?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            (off, len, leaf, covered)
        };
        let Some((file, _)) = reader::open(&self.entries_path)? else {
            return Err(IndexError::Stale(seq));
        };
        let bytes = reader::read_at(&file, off, len)
            .map_err(|e| IndexError::io("cannot read", &self.entries_path, e))?
            .filter(|b| agp_journal::merkle::leaf_hash(b)[..] == leaf[..])
            .ok_or(IndexError::Stale(seq))?;
        Ok(Some(EntryRow {
            seq,
            offset: off,
            line: String::from_utf8_lossy(&bytes).into_owned(),
            leaf_hash: hex::encode(&leaf),
            covered: seq < covered,
            bytes,
        }))
    }
}

fn call_row(r: &Row<'_>, covered: u64) -> rusqlite::Result<CallRow> {
    let last_seq = u(r, "last_seq")?;
    let approvers: Option<String> = r.get("approvers")?;
    let approvers = approvers
        .and_then(|a| serde_json::from_str::<Vec<serde_json::Value>>(&a).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Approver>(v).ok())
        .collect();
    let result_seq: Option<i64> = r.get("result_seq")?;
    let result = result_seq
        .map(|s| -> rusqlite::Result<CallResult> {
            Ok(CallResult {
                seq: s.max(0) as u64,
                ok: r.get("ok")?,
                exit_code: r.get("exit_code")?,
                timed_out: r.get("timed_out")?,
                error: r.get("result_error")?,
                output_sha256: r.get("output_sha256")?,
                output_bytes: r
                    .get::<_, Option<i64>>("output_bytes")?
                    .map(|n| n.max(0) as u64),
                reported_by: r.get("reported_by")?,
            })
        })
        .transpose()?;
    Ok(CallRow {
        seq: u(r, "seq")?,
        last_seq,
        call_id: r.get("call_id")?,
        tool: r.get("tool")?,
        input_summary: r.get("summary")?,
        input_sha256: r.get("input_sha256")?,
        cwd: r.get("cwd")?,
        verdict: r.get("verdict")?,
        shadow_verdict: r.get("shadow_verdict")?,
        policy_mode: r.get("policy_mode")?,
        rule_id: r.get("rule_id")?,
        reason: r.get("reason")?,
        deciding_part: r.get("deciding_part")?,
        approval: r.get("approval")?,
        approval_channel: r.get("approval_channel")?,
        approval_reason: r.get("approval_reason")?,
        approvers,
        outcome: r.get("outcome")?,
        result,
        egress: u(r, "egress")?,
        requested_ts: r.get("requested_ts")?,
        decided_ts: r.get("decided_ts")?,
        approval_ts: r.get("approval_ts")?,
        result_ts: r.get("result_ts")?,
        covered: last_seq < covered,
    })
}
