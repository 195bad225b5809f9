//! `agp journal show`: events, readably or as the JSON lines journaled.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::exit::Exit;

pub(super) fn show(
    dir: &Path,
    session: Option<&str>,
    kind: Option<&str>,
    json: bool,
) -> Result<Exit> {
    let path = dir.join(agp_journal::ENTRIES_FILE);
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    let mut shown = 0u64;
    let mut kinds = std::collections::BTreeSet::new();
    let mut session_seen = false;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        lineno += 1;
        if buf.last() != Some(&b'\n') {
            writeln!(
                out,
                "(line {lineno}: torn last line, {} bytes, not shown)",
                buf.len()
            )?;
            break;
        }
        let line = &buf[..buf.len() - 1];
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            writeln!(out, "(line {lineno}: not JSON; run `agp verify`)")?;
            continue;
        };
        if let Some(k) = v["kind"].as_str() {
            if !kinds.contains(k) {
                kinds.insert(k.to_owned());
            }
        }
        if session.is_some_and(|s| v["session"].as_str() != Some(s)) {
            continue;
        }
        session_seen = true;
        if kind.is_some_and(|k| v["kind"].as_str() != Some(k)) {
            continue;
        }
        shown += 1;
        let result = if json {
            out.write_all(line).and_then(|()| out.write_all(b"\n"))
        } else {
            writeln!(out, "{}", human_line(&v))
        };
        if let Err(e) = result {
            // A closed pipe (`| head`) ends the listing quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(Exit::Ok);
            }
            return Err(e.into());
        }
    }
    out.flush().ok();
    if shown > 0 {
        return Ok(Exit::Ok);
    }
    // An empty listing must not look like an answer: say which filter found nothing.
    if let (Some(s), false) = (session, session_seen) {
        eprintln!("agp: no such session in the journal: {s} (`agp sessions` lists them)");
        return Ok(Exit::Bad);
    }
    if let Some(k) = kind {
        let known = kinds.into_iter().collect::<Vec<_>>().join(", ");
        let scope = session
            .map(|s| format!(" of session {s}"))
            .unwrap_or_default();
        eprintln!("agp: no entries of kind {k}{scope}; kinds in the journal: {known}");
        return Ok(Exit::Bad);
    }
    Ok(Exit::Ok)
}

fn human_line(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    let seq = v["seq"].as_u64().map_or("?".to_string(), |n| n.to_string());
    let session = v["session"].as_str().unwrap_or("-");
    let mut body = agp_contracts::canonical::to_canonical_string(&v["body"])
        .unwrap_or_else(|_| v["body"].to_string());
    if body.chars().count() > 160 {
        body = body.chars().take(157).collect::<String>() + "...";
    }
    format!(
        "{seq:>6}  {}  {:<20}  {session:<12}  {body}",
        s("ts"),
        s("kind")
    )
}
