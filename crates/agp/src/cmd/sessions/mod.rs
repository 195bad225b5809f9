//! `agp sessions`: list sessions (from the state database) or show one session's timeline (from
//! the journal, the record of truth).

use std::io::{BufRead, Write};

use agp_daemon::store::Store;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::exit::Exit;
use crate::home::Home;

mod describe;
mod flags;
mod stop;

use describe::describe;
pub use flags::flagged;

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
    /// Stop a running session (the kill switch): its agent or running command is ended, its
    /// pending approvals cancelled, the session ended as `stopped`, all journaled with who
    /// stopped it. Exit 1 when it had already ended (nothing is changed).
    Stop {
        /// Session id (as listed by `agp sessions`).
        id: String,
        /// Why, journaled with the stop.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub fn run(home: &Home, args: SessionsArgs) -> Result<Exit> {
    home.require_initialized()?;
    match args.command {
        None => list(home, args.json),
        Some(SessionsCommand::Show { id }) => show(home, &id, args.json),
        Some(SessionsCommand::Stop { id, reason }) => {
            stop::stop(home, &id, reason.as_deref(), args.json)
        }
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
    if let Some((url, member)) = crate::app::state::shared(home)? {
        return list_team(&url, &member, json_out);
    }
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

/// The team's sessions (shared state), each with the host (member) whose daemon runs it.
fn list_team(url: &str, member: &str, json_out: bool) -> Result<Exit> {
    use agp_daemon::store::StateStore;
    let rows = crate::app::state::with_shared(url, member, async |store| {
        store
            .team_sessions()
            .await
            .context("cannot read the team's sessions from the shared state")
    })?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!("no sessions yet in the team's shared state");
        return Ok(Exit::Ok);
    }
    println!(
        "{:<20} {:<24} {:<11} {:<10} {:<11} {:<21} REPO",
        "SESSION", "HOST", "INTENDANT", "MODE", "STATUS", "STARTED"
    );
    for h in rows {
        let r = h.session;
        println!(
            "{:<20} {:<24} {:<11} {:<10} {:<11} {:<21} {}",
            r.id,
            h.host,
            r.intendant,
            r.mode,
            r.status,
            fmt_ms(r.started_at_ms),
            r.repo
        );
    }
    Ok(Exit::Ok)
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
