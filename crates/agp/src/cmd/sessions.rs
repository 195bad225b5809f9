//! `agp sessions`: list sessions (from the state database) or show one session's timeline (from
//! the journal, the record of truth).

use std::io::{BufRead, Write};

use agp_daemon::store::Store;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::exit::Exit;
use crate::home::Home;

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// One session's timeline from the journal.
    Show {
        /// Session id (as listed by `agp sessions`).
        id: String,
    },
}

pub fn run(home: &Home, args: SessionsArgs) -> Result<Exit> {
    home.require_initialized()?;
    match args.command {
        None => list(home, args.json),
        Some(SessionsCommand::Show { id }) => show(home, &id, args.json),
    }
}

fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000) as u64;
    agp_journal::event::format_rfc3339(secs, 0)
        .trim_end_matches(".000000Z")
        .replace('T', " ")
        + "Z"
}

fn list(home: &Home, json_out: bool) -> Result<Exit> {
    let db = home.state_db();
    let rows = if db.exists() {
        Store::open_existing(&db)
            .with_context(|| format!("cannot open {}", db.display()))?
            .sessions()?
    } else {
        Vec::new()
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!("no sessions yet (start one with `agp run`)");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<20} {:<11} {:<10} {:<11} {:<21} REPO",
        "SESSION", "INTENDANT", "MODE", "STATUS", "STARTED"
    );
    for r in rows {
        println!(
            "{:<20} {:<11} {:<10} {:<11} {:<21} {}",
            r.id,
            r.intendant,
            r.mode,
            r.status,
            fmt_ms(r.started_at_ms),
            r.repo
        );
    }
    Ok(Exit::Ok)
}

/// One line describing an event, from the fields the daemon journals.
fn describe(kind: &str, body: &Value) -> String {
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let call = s("call_id");
    match kind {
        "session.started" => format!(
            "{} session, intendant {}, repo {}",
            s("mode"),
            s("intendant"),
            s("repo")
        ),
        "session.ended" => s("status").to_owned(),
        "session.reaped" => match (s("status"), s("reason")) {
            ("", _) => "lease expired".to_owned(),
            (status, "") => status.to_owned(),
            (status, reason) => format!("{status}: {reason}"),
        },
        "egress.allowed" | "egress.denied" => {
            let port = body
                .get("port")
                .and_then(Value::as_u64)
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let host = match s("host") {
                "" => "(no host)",
                h => h,
            };
            format!("{} {host}{port}: {}", s("method"), s("reason"))
        }
        "sandbox.preflight" => {
            let passed = body
                .pointer("/report/passed")
                .or_else(|| body.get("passed"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // The daemon journals `{report, isolation}`; `agp run` for live agents, the report.
            let provider = body
                .pointer("/isolation/provider")
                .or_else(|| body.pointer("/report/provider"))
                .or_else(|| body.get("provider"))
                .and_then(Value::as_str)
                .unwrap_or("unknown provider");
            format!("{provider}: {}", if passed { "passed" } else { "FAILED" })
        }
        "tool_call.requested" => {
            let input = body.get("input").map(Value::to_string).unwrap_or_default();
            let short: String = input.chars().take(80).collect();
            format!("{call} {} {short}", s("tool"))
        }
        "policy.decided" => format!(
            "{call} {} ({}): {}",
            s("decision"),
            body.get("rule_id")
                .and_then(Value::as_str)
                .unwrap_or("default"),
            s("reason")
        ),
        "approval.requested" => format!("{call} asked via {}", s("channel")),
        "approval.granted" => {
            let by: Vec<&str> = body
                .get("by")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.get("id")?.as_str()).collect())
                .unwrap_or_default();
            let remembered = if body.get("remembered") == Some(&Value::Bool(true)) {
                " (remembered)"
            } else {
                ""
            };
            format!("{call} by {}{remembered}", by.join(", "))
        }
        "approval.denied" => format!(
            "{call} by {}: {}",
            body.pointer("/by/id")
                .and_then(Value::as_str)
                .unwrap_or("nobody"),
            s("reason")
        ),
        "approval.timeout" => format!(
            "{call} after {} ms",
            body.get("waited_ms").unwrap_or(&json!("?"))
        ),
        "tool_call.result" => format!(
            "{call} ok={} exit={} output_sha256={}",
            body.get("ok").unwrap_or(&Value::Null),
            body.get("exit_code").unwrap_or(&Value::Null),
            &s("output_sha256").get(..12).unwrap_or("")
        ),
        "gateway.rejected" => format!("{}: {}", s("code"), s("message")),
        "tool_call.result_mismatch" => format!("{call} NOT LINKED: {}", s("reason")),
        "session.integrity" => {
            let findings = body
                .pointer("/report/findings")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let complete = body.pointer("/report/complete") == Some(&Value::Bool(true));
            format!(
                "{findings} finding(s), {} by the session, {} not neutralized{}",
                body.get("by_session").unwrap_or(&json!(0)),
                body.get("not_neutralized").unwrap_or(&json!(0)),
                if complete { "" } else { ", scan INCOMPLETE" }
            )
        }
        // Kinds without their own line (newer ones included) show their body, never nothing.
        _ => {
            let text = agp_contracts::canonical::to_canonical_string(body)
                .unwrap_or_else(|_| body.to_string());
            if text.chars().count() > 100 {
                text.chars().take(99).collect::<String>() + "…"
            } else {
                text
            }
        }
    }
}

/// What a session's summary must flag, from its journal entries: the integrity report (each
/// finding and what was done about it) and results not linked to their approved call.
pub fn flagged(entries: &[Value]) -> Vec<String> {
    let mut lines = Vec::new();
    for e in entries {
        let body = &e["body"];
        match e["kind"].as_str() {
            Some("tool_call.result_mismatch") => lines.push(format!(
                "✗ the result reported for {} ran with another input than the approved one; \
                 journaled as a mismatch, not linked to the call",
                body["call_id"].as_str().unwrap_or("?")
            )),
            Some("session.integrity") => {
                let report = &body["report"];
                if report["complete"] != true {
                    let why: Vec<&str> = report["incomplete"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    lines.push(format!(
                        "✗ repository integrity scan incomplete: {}",
                        why.join("; ")
                    ));
                }
                for f in report["findings"].as_array().into_iter().flatten() {
                    let done = match f["action"].as_str().unwrap_or("?") {
                        "quarantined" => {
                            format!("moved to {}", f["to"].as_str().unwrap_or("the quarantine"))
                        }
                        "kept" => "kept (already there when the session started)".into(),
                        "reported" => "left in place: review it".into(),
                        "bits_cleared" => "setuid/setgid bits cleared".into(),
                        "capability_removed" => "file capabilities removed".into(),
                        "removed" => format!("deleted ({})", f["why"].as_str().unwrap_or("")),
                        "not_neutralized" => {
                            format!("NOT NEUTRALIZED: {}", f["error"].as_str().unwrap_or(""))
                        }
                        other => other.to_owned(),
                    };
                    let mark = if f["origin"] == "pre_existing" {
                        "!"
                    } else {
                        "✗"
                    };
                    lines.push(format!(
                        "{mark} repository: {} — {}: {done}",
                        f["path"].as_str().unwrap_or("?"),
                        f["detail"].as_str().unwrap_or("")
                    ));
                }
            }
            _ => {}
        }
    }
    lines
}

/// What a finished session's summary must flag (see [`flagged`]); nothing when the journal
/// cannot be read, which the journal check of the same summary reports.
pub fn session_flags(home: &Home, id: &str) -> Vec<String> {
    session_entries(home, id)
        .map(|entries| flagged(&entries))
        .unwrap_or_default()
}

/// The journal entries of one session, in order.
pub fn session_entries(home: &Home, id: &str) -> Result<Vec<Value>> {
    let path = home.journal_dir().join(agp_journal::ENTRIES_FILE);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read the journal {}", path.display()))?;
    let mut events = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            // A torn last line is the journal's business (`agp verify` reports it).
            eprintln!("agp: skipping unreadable journal line {}", n + 1);
            continue;
        };
        if entry.get("session").and_then(Value::as_str) == Some(id) {
            events.push(entry);
        }
    }
    Ok(events)
}

fn show(home: &Home, id: &str, json_out: bool) -> Result<Exit> {
    let events = session_entries(home, id)?;
    if events.is_empty() {
        bail!("no journal entries for session {id:?} (list sessions with `agp sessions`)");
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(Exit::Ok);
    }
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends the listing quietly.
    if writeln!(
        out,
        "session {id}: {} journal entries (run `agp verify` to check them)",
        events.len()
    )
    .is_err()
    {
        return Ok(Exit::Ok);
    }
    for e in &events {
        let kind = e.get("kind").and_then(Value::as_str).unwrap_or("?");
        let body = e.get("body").cloned().unwrap_or(Value::Null);
        let line = format!(
            "{:>6}  {}  {:<20} {}",
            e.get("seq").and_then(Value::as_u64).unwrap_or(0),
            e.get("ts").and_then(Value::as_str).unwrap_or(""),
            kind,
            describe(kind, &body)
        );
        if writeln!(out, "{}", agp_channels::sanitize::escape(&line)).is_err() {
            return Ok(Exit::Ok);
        }
    }
    for line in flagged(&events) {
        if writeln!(out, "{}", agp_channels::sanitize::escape(&line)).is_err() {
            break;
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_flags_every_finding_an_incomplete_scan_and_unlinked_results() {
        let entries = vec![
            json!({"kind": "tool_call.result", "body": {"call_id": "c1"}}),
            json!({"kind": "tool_call.result_mismatch", "body": {"call_id": "c2"}}),
            json!({"kind": "session.integrity", "body": {"report": {
                "complete": false, "incomplete": ["scan stopped after 5 entries (limit)"],
                "findings": [
                    {"path": "p", "kind": "fifo", "detail": "a fifo", "origin": "new",
                     "action": "quarantined", "to": "/h/quarantine/s/p"},
                    {"path": "old", "kind": "fifo", "detail": "a fifo", "origin": "pre_existing",
                     "action": "kept"},
                    {"path": "x", "kind": "setuid", "detail": "setuid", "origin": "new",
                     "action": "not_neutralized", "error": "EPERM"}]}}}),
        ];
        let lines = flagged(&entries);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(lines[0].contains("c2") && lines[0].contains("not linked"));
        assert!(lines[1].contains("incomplete") && lines[1].contains("5 entries"));
        assert!(lines[2].starts_with('✗') && lines[2].contains("moved to /h/quarantine/s/p"));
        assert!(lines[3].starts_with('!') && lines[3].contains("kept"));
        assert!(lines[4].contains("NOT NEUTRALIZED: EPERM"));
        let shown = describe("session.integrity", &entries[2]["body"]);
        assert!(
            shown.contains("3 finding(s)") && shown.contains("INCOMPLETE"),
            "{shown}"
        );
    }

    #[test]
    fn egress_and_preflight_lines_are_never_blank() {
        assert_eq!(
            describe(
                "egress.allowed",
                &json!({"method": "CONNECT", "host": "api.anthropic.com", "port": 443,
                        "reason": "model API"}),
            ),
            "CONNECT api.anthropic.com:443: model API"
        );
        assert_eq!(
            describe(
                "egress.denied",
                &json!({"method": "GET", "reason": "no host"})
            ),
            "GET (no host): no host"
        );
        // `agp run` for a live agent journals the report itself.
        assert_eq!(
            describe(
                "sandbox.preflight",
                &json!({"provider": "bubblewrap", "passed": true})
            ),
            "bubblewrap: passed"
        );
        assert_eq!(
            describe(
                "sandbox.preflight",
                &json!({"report": {"passed": false}, "isolation": {"provider": "bubblewrap"}}),
            ),
            "bubblewrap: FAILED"
        );
        assert_eq!(
            describe("intendant.wiring_verified", &json!({"intendant": "codex"})),
            r#"{"intendant":"codex"}"#
        );
        assert_eq!(
            describe("session.reaped", &json!({"session": "s"})),
            "lease expired"
        );
    }
}
