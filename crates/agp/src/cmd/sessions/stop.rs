//! `agp sessions stop ID [--reason TEXT]`: the kill switch. Asks the daemon serving this home
//! (over its socket, with its admin token) to end the session's agent or running command,
//! cancel its pending approvals and end it; the daemon journals who (this OS user) and why.

use std::time::Duration;

use agp_gateway::{Client, ClientError, ErrorCode};
use anyhow::{Context, Result};
use serde_json::json;

use crate::exit::Exit;
use crate::home::Home;

/// Longest wait for the daemon to end the session (the sandbox's teardown included).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn stop(home: &Home, id: &str, reason: Option<&str>, json_out: bool) -> Result<Exit> {
    let Some(daemon) = crate::cmd::run::running_daemon(home)? else {
        return Ok(not_running(home, id, json_out));
    };
    let by = crate::app::assemble::os_user();
    let mut client = Client::connect(&daemon.socket, STOP_TIMEOUT)?;
    let reply = match client.stop_session(&daemon.admin_token, id, &by, reason) {
        Ok(r) => r,
        Err(ClientError::Refused {
            code: ErrorCode::UnknownSession,
            message,
        }) => {
            if json_out {
                println!(
                    "{}",
                    json!({"session": id, "stopped": false, "error": message})
                );
            } else {
                eprintln!(
                    "agp: {message} (list sessions with `{} sessions`)",
                    home.agp()
                );
            }
            return Ok(Exit::Bad);
        }
        Err(e) => return Err(e).context("the agp daemon did not stop the session"),
    };
    if json_out {
        let out = json!({"session": reply.session, "stopped": reply.stopped,
                         "cancelled_approvals": reply.cancelled_approvals, "by": by});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if reply.stopped {
        println!(
            "agp: session {id} stopped by {by}; {} pending approval(s) cancelled; timeline: `{} sessions show {id}`",
            reply.cancelled_approvals.len(),
            home.agp()
        );
    } else {
        println!("agp: session {id} had already ended; nothing changed");
    }
    Ok(if reply.stopped { Exit::Ok } else { Exit::Bad })
}

/// No daemon serves this home: a session can only be live under one, so a known session has
/// ended (or its daemon died and the next daemon start reaps it).
fn not_running(home: &Home, id: &str, json_out: bool) -> Exit {
    let db = home.state_db();
    let row = agp_daemon::store::Store::open_existing(&db)
        .ok()
        .and_then(|s| s.session(id).ok().flatten());
    let message = match &row {
        Some(r) if r.status != "active" => {
            format!(
                "session {id} had already ended ({}); nothing changed",
                r.status
            )
        }
        Some(_) => format!(
            "session {id} has no running daemon (it died); nothing runs for it, and the next \
             `{} daemon` start ends it",
            home.agp()
        ),
        None => format!(
            "no agp daemon is running for this home and no session {id} is known (list \
             sessions with `{} sessions`)",
            home.agp()
        ),
    };
    if json_out {
        println!(
            "{}",
            json!({"session": id, "stopped": false, "error": message})
        );
    } else {
        eprintln!("agp: {message}");
    }
    Exit::Bad
}
