//! Folding one journal line into the tables: a call's entries into its row, session entries
//! into the session's summary, everything else into `events` as it is.
//!
//! Bodies are read as plain JSON, not through the typed event structs: a line this version does
//! not understand (a newer kind, a member of another type) must still be indexed, as what the
//! journal holds, and never stop the index.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::{schema, IndexError};

/// Longest input summary kept, in characters.
pub const SUMMARY_CHARS: usize = 240;

/// A whole line read from `entries.jsonl`.
pub struct Line<'a> {
    pub seq: u64,
    /// The line without its newline; `None` when it was too long to hold (then unreadable).
    pub bytes: Option<&'a [u8]>,
}

/// The parts of a line's envelope the index uses.
struct Envelope<'a> {
    kind: &'a str,
    session: Option<&'a str>,
    ts: Option<&'a str>,
    body: &'a Map<String, Value>,
}

pub fn apply(conn: &Connection, line: &Line<'_>) -> Result<(), IndexError> {
    let seq = line.seq as i64;
    let parsed: Option<Value> = line.bytes.and_then(|b| serde_json::from_slice(b).ok());
    let Some(env) = parsed.as_ref().and_then(envelope) else {
        return event(conn, seq, None, "unreadable", None, None, "");
    };
    if let Some(s) = env.session {
        conn.prepare_cached(
            "INSERT INTO sessions (id, first_seq, last_seq, state, last_ts) VALUES (?1, ?2, ?2, 'live', ?3)
             ON CONFLICT(id) DO UPDATE SET last_seq = excluded.last_seq, last_ts = excluded.last_ts",
        )?
        .execute(params![s, seq, env.ts])?;
    }
    let b = env.body;
    let call_id = str_of(b, "call_id");
    let folded = match (env.kind, env.session, call_id) {
        ("tool_call.requested", Some(s), Some(c)) => {
            requested(conn, seq, s, c, b, env.ts)?;
            true
        }
        ("policy.decided", Some(s), Some(c)) => {
            decided(conn, seq, s, c, b, env.ts)?;
            true
        }
        (
            "approval.requested" | "approval.granted" | "approval.denied" | "approval.timeout",
            Some(s),
            Some(c),
        ) => {
            approval(conn, seq, s, c, env.kind, b, env.ts)?;
            true
        }
        ("tool_call.result", Some(s), Some(c)) => {
            result(conn, seq, s, c, b, env.ts)?;
            true
        }
        _ => false,
    };
    if folded {
        return Ok(());
    }
    let body = serde_json::to_string(b)?;
    event(conn, seq, env.session, env.kind, call_id, env.ts, &body)?;
    match env.kind {
        "session.started" | "session.ended" | "session.stopped" | "session.reaped" => {
            if let Some(s) = env.session {
                session_entry(conn, s, env.kind, b, env.ts)?;
            }
        }
        "journal.created" => {
            if let Some(o) = str_of(b, "origin") {
                schema::set(conn, "origin", o)?;
            }
            if let Some(k) = str_of(b, "key") {
                schema::set(conn, "key", k)?;
            }
        }
        "key.rotated" => {
            if let Some(k) = str_of(b, "new_key") {
                schema::set(conn, "key", k)?;
            }
        }
        k if k.starts_with("egress.") => {
            if let Some(s) = env.session {
                egress(conn, s)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn envelope(v: &Value) -> Option<Envelope<'_>> {
    let o = v.as_object()?;
    Some(Envelope {
        kind: o.get("kind")?.as_str()?,
        session: o.get("session").and_then(Value::as_str),
        ts: o.get("ts").and_then(Value::as_str),
        body: o.get("body")?.as_object()?,
    })
}

fn str_of<'a>(b: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str)
}

fn event(
    conn: &Connection,
    seq: i64,
    session: Option<&str>,
    kind: &str,
    call_id: Option<&str>,
    ts: Option<&str>,
    body: &str,
) -> Result<(), IndexError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO events (seq, session, kind, call_id, ts, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![seq, session, kind, call_id, ts, body])?;
    Ok(())
}

/// The short text shown for a call's (already redacted) input: the member that says what the
/// call does, or the input as compact JSON; cut to [`SUMMARY_CHARS`].
pub fn summarize(input: &Value) -> Option<String> {
    const SAYS_WHAT: [&str; 8] = [
        "command",
        "file_path",
        "url",
        "path",
        "pattern",
        "query",
        "notebook_path",
        "prompt",
    ];
    let text = match input {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Object(o) => SAYS_WHAT
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map_or_else(|| input.to_string(), str::to_owned),
        other => other.to_string(),
    };
    Some(cut(&text, SUMMARY_CHARS))
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The call's row, created when its first entry is not a `tool_call.requested` (a journal that
/// starts mid-call, or entries written out of the usual order): its seq and outcome.
fn ensure_call(
    conn: &Connection,
    seq: i64,
    session: &str,
    call_id: &str,
) -> Result<(i64, Option<String>), IndexError> {
    let found = conn
        .prepare_cached("SELECT seq, outcome FROM calls WHERE session = ?1 AND call_id = ?2")?
        .query_row(params![session, call_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some(f) = found {
        return Ok(f);
    }
    conn.prepare_cached(
        "INSERT INTO calls (seq, last_seq, session, call_id, outcome) VALUES (?1, ?1, ?2, ?3, 'pending')",
    )?
    .execute(params![seq, session, call_id])?;
    conn.prepare_cached(
        "UPDATE sessions SET calls = calls + 1, pending = pending + 1 WHERE id = ?1",
    )?
    .execute([session])?;
    Ok((seq, Some("pending".into())))
}

/// Moves the call's count in its session from its old outcome to the new one.
fn set_outcome(
    conn: &Connection,
    session: &str,
    call_seq: i64,
    old: Option<&str>,
    new: &str,
) -> Result<(), IndexError> {
    if old == Some(new) {
        return Ok(());
    }
    // Column names come from this fixed list only, never from the journal.
    let column = |o: &str| match o {
        "allowed" => Some("allowed"),
        "denied" => Some("denied"),
        "approved" => Some("approved"),
        "pending" => Some("pending"),
        _ => None,
    };
    if let Some(c) = old.and_then(column) {
        conn.prepare_cached(&format!("UPDATE sessions SET {c} = {c} - 1 WHERE id = ?1"))?
            .execute([session])?;
    }
    if let Some(c) = column(new) {
        conn.prepare_cached(&format!("UPDATE sessions SET {c} = {c} + 1 WHERE id = ?1"))?
            .execute([session])?;
    }
    conn.prepare_cached("UPDATE calls SET outcome = ?2 WHERE seq = ?1")?
        .execute(params![call_seq, new])?;
    Ok(())
}

fn requested(
    conn: &Connection,
    seq: i64,
    session: &str,
    call_id: &str,
    b: &Map<String, Value>,
    ts: Option<&str>,
) -> Result<(), IndexError> {
    let (call_seq, _) = ensure_call(conn, seq, session, call_id)?;
    let summary = b.get("input").and_then(summarize);
    conn.prepare_cached(
        "UPDATE calls SET tool = ?2, summary = ?3, input_sha256 = ?4, cwd = ?5, requested_ts = ?6,
         last_seq = ?7 WHERE seq = ?1",
    )?
    .execute(params![
        call_seq,
        str_of(b, "tool"),
        summary,
        str_of(b, "input_sha256"),
        str_of(b, "cwd"),
        ts,
        seq
    ])?;
    Ok(())
}

fn decided(
    conn: &Connection,
    seq: i64,
    session: &str,
    call_id: &str,
    b: &Map<String, Value>,
    ts: Option<&str>,
) -> Result<(), IndexError> {
    let (call_seq, old) = ensure_call(conn, seq, session, call_id)?;
    let verdict = str_of(b, "decision");
    conn.prepare_cached(
        "UPDATE calls SET tool = COALESCE(tool, ?2), verdict = ?3, shadow_verdict = ?4,
         policy_mode = ?5, rule_id = ?6, reason = ?7, deciding_part = ?8, decided_ts = ?9,
         last_seq = ?10 WHERE seq = ?1",
    )?
    .execute(params![
        call_seq,
        str_of(b, "tool"),
        verdict,
        str_of(b, "shadow_verdict"),
        str_of(b, "mode"),
        str_of(b, "rule_id"),
        str_of(b, "reason"),
        str_of(b, "deciding_part"),
        ts,
        seq
    ])?;
    let outcome = match verdict {
        Some("allow") => "allowed",
        Some("deny") => "denied",
        _ => "pending",
    };
    set_outcome(conn, session, call_seq, old.as_deref(), outcome)
}

fn approvers(b: &Map<String, Value>) -> Option<String> {
    // `by` is a list for grants, one approver (or null) for denials.
    let by = match b.get("by")? {
        Value::Array(a) => Value::Array(a.clone()),
        Value::Null => return None,
        one => Value::Array(vec![one.clone()]),
    };
    Some(by.to_string())
}

fn approval(
    conn: &Connection,
    seq: i64,
    session: &str,
    call_id: &str,
    kind: &str,
    b: &Map<String, Value>,
    ts: Option<&str>,
) -> Result<(), IndexError> {
    let (call_seq, old) = ensure_call(conn, seq, session, call_id)?;
    let flag = |k: &str| b.get(k).and_then(Value::as_bool) == Some(true);
    let (state, outcome) = match kind {
        "approval.requested" => ("requested", "pending"),
        "approval.granted" => ("granted", "approved"),
        "approval.timeout" => ("timeout", "denied"),
        _ if flag("cancelled") => ("cancelled", "denied"),
        _ if flag("unavailable") => ("unavailable", "denied"),
        _ => ("denied", "denied"),
    };
    let reason = if flag("remembered") {
        Some("remembered")
    } else {
        str_of(b, "reason")
    };
    conn.prepare_cached(
        "UPDATE calls SET approval = ?2, approval_channel = COALESCE(?3, approval_channel),
         approval_reason = COALESCE(?4, approval_reason), approvers = COALESCE(?5, approvers),
         approval_ts = ?6, last_seq = ?7 WHERE seq = ?1",
    )?
    .execute(params![
        call_seq,
        state,
        str_of(b, "channel"),
        reason,
        approvers(b),
        ts,
        seq
    ])?;
    set_outcome(conn, session, call_seq, old.as_deref(), outcome)
}

fn result(
    conn: &Connection,
    seq: i64,
    session: &str,
    call_id: &str,
    b: &Map<String, Value>,
    ts: Option<&str>,
) -> Result<(), IndexError> {
    let (call_seq, _) = ensure_call(conn, seq, session, call_id)?;
    conn.prepare_cached(
        "UPDATE calls SET result_seq = ?2, ok = ?3, exit_code = ?4, timed_out = ?5,
         result_error = ?6, output_sha256 = ?7, output_bytes = ?8, reported_by = ?9,
         result_ts = ?10, last_seq = ?2, tool = COALESCE(tool, ?11) WHERE seq = ?1",
    )?
    .execute(params![
        call_seq,
        seq,
        b.get("ok").and_then(Value::as_bool),
        b.get("exit_code").and_then(Value::as_i64),
        b.get("timed_out").and_then(Value::as_bool),
        str_of(b, "error"),
        str_of(b, "output_sha256"),
        b.get("output_bytes")
            .and_then(Value::as_u64)
            .map(|n| n as i64),
        str_of(b, "reported_by"),
        ts,
        str_of(b, "tool"),
    ])?;
    Ok(())
}

/// An egress entry counts for its session, and for the call that was running then: the
/// session's latest call let through (allowed or approved) that has no result yet. Egress
/// entries name no call, so this is the index's attribution, not the journal's word.
fn egress(conn: &Connection, session: &str) -> Result<(), IndexError> {
    conn.prepare_cached("UPDATE sessions SET egress = egress + 1 WHERE id = ?1")?
        .execute([session])?;
    conn.prepare_cached(
        "UPDATE calls SET egress = egress + 1 WHERE seq = (SELECT max(seq) FROM calls
         WHERE session = ?1 AND result_seq IS NULL AND outcome IN ('allowed', 'approved'))",
    )?
    .execute([session])?;
    Ok(())
}

fn session_entry(
    conn: &Connection,
    session: &str,
    kind: &str,
    b: &Map<String, Value>,
    ts: Option<&str>,
) -> Result<(), IndexError> {
    match kind {
        "session.started" => {
            conn.prepare_cached(
                "UPDATE sessions SET agent = COALESCE(?2, agent), repo = COALESCE(?3, repo),
                 task = COALESCE(?4, task), operator = COALESCE(?5, operator),
                 mode = COALESCE(?6, mode), policy_mode = COALESCE(?7, policy_mode),
                 started_ts = COALESCE(started_ts, ?8) WHERE id = ?1",
            )?
            .execute(params![
                session,
                str_of(b, "intendant"),
                str_of(b, "repo"),
                str_of(b, "task"),
                str_of(b, "started_by"),
                str_of(b, "mode"),
                str_of(b, "policy_mode"),
                ts
            ])?;
        }
        "session.stopped" => {
            conn.prepare_cached("UPDATE sessions SET state = 'stopped' WHERE id = ?1")?
                .execute([session])?;
        }
        "session.ended" | "session.reaped" => {
            let status = str_of(b, "status");
            let state = if kind == "session.reaped" {
                "reaped"
            } else if status == Some("stopped") {
                "stopped"
            } else {
                "ended"
            };
            // A stop journaled before the end keeps the session shown as stopped.
            conn.prepare_cached(
                "UPDATE sessions SET state = CASE WHEN state = 'stopped' THEN state ELSE ?2 END,
                 end_status = COALESCE(?3, end_status), ended_ts = ?4 WHERE id = ?1",
            )?
            .execute(params![session, state, status, ts])?;
        }
        _ => {}
    }
    Ok(())
}
