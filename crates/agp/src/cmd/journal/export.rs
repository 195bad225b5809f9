//! `agp journal export`: the verified journal as JSON lines or OCSF events, on stdout or to an
//! OpenTelemetry collector, once or following the journal as it grows.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::Value;
use time::OffsetDateTime;

use super::cursor::{Cursor, CursorFile};
use super::follow;
use super::ocsf::Mapper;
use super::otlp::{self, Otlp, Stopped};
use super::record::{parse_since, Entry};
use super::source::{self, Source, Tampered};
use crate::exit::Exit;
use crate::home::Home;

pub const LONG_ABOUT: &str = "Export the journal for other tools, from a journal that verifies: \
    the whole journal is checked first (as `agp verify` does) and a tampered one is refused \
    (exit 1, nothing exported). Only entries a signed checkpoint covers are exported, each with \
    its evidence: entry index, RFC 6962 leaf hash, and the signed checkpoint whose root was \
    recomputed from the entries.\n\n\
    --format jsonl prints one JSON line per event: seq, ts, kind, session, the event exactly as \
    journaled (its RFC 8785 form is the journal line) and the evidence. --format ocsf prints \
    OCSF 1.3 events: tool calls, decisions and approvals as API Activity (6003), shell commands \
    run as Process Activity (1007), egress as Network Activity (4001), every other kind as a \
    Base Event (0); the journal line is in raw_data and the evidence in unmapped.agp.\n\n\
    --otlp-endpoint URL sends the records as OpenTelemetry logs (OTLP/HTTP, JSON) to \
    URL/v1/logs instead of printing them (headers such as an API key from \
    OTEL_EXPORTER_OTLP_HEADERS), retrying 429/502/503/504 with backoff; a refusal \
    ends the export with exit 2.\n\n\
    --follow keeps exporting new events as they are journaled until SIGINT/SIGTERM; with \
    --cursor FILE the position is saved after each delivered batch, so a restart resumes \
    where the last one stopped.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON line per event: the event as journaled and its evidence
    Jsonl,
    /// OCSF 1.3 events (API, Process, Network Activity; Base Event for the rest)
    Ocsf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Keep exporting new events as they are journaled, until SIGINT or SIGTERM
    #[arg(long)]
    pub follow: bool,
    /// Only events at or after TIME: RFC 3339 (2026-01-31T09:00:00Z) or a span back from now
    /// (90s, 15m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Journal folder [default: <home>/journal]
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Resume from, and save after each delivered batch, the position in FILE
    #[arg(long, value_name = "FILE")]
    pub cursor: Option<PathBuf>,
    /// Send OpenTelemetry logs (OTLP/HTTP JSON) to URL/v1/logs instead of printing
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Verifier key to check the journal with [default: <home>/keys/journal.pub]
    #[arg(long, value_name = "VKEY_OR_FILE")]
    pub key: Option<String>,
}

pub fn run(home: &Home, args: &ExportArgs) -> Result<Exit> {
    match export(home, args) {
        Ok(exit) => Ok(exit),
        Err(e) if e.downcast_ref::<Tampered>().is_some() => {
            eprintln!("agp: {}", crate::exit::one_line(&e));
            Ok(Exit::Bad)
        }
        Err(e) => Err(e),
    }
}

enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    Otlp(Otlp),
}

struct Exporter {
    format: Format,
    mapper: Mapper,
    sink: Sink,
    since: Option<i128>,
    cursor: Cursor,
    cursor_file: Option<CursorFile>,
    exported: u64,
    first: Option<u64>,
    stop: Arc<AtomicBool>,
}

/// How the export ended.
enum End {
    Done,
    /// stdout was closed (`| head`).
    ClosedPipe,
    Stopped,
}

fn export(home: &Home, args: &ExportArgs) -> Result<Exit> {
    let key = crate::cmd::keygen::resolve_verifier(home, args.key.as_deref())?;
    let dir = args.journal.clone().unwrap_or_else(|| home.journal_dir());
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, OffsetDateTime::now_utc()))
        .transpose()?
        .map(OffsetDateTime::unix_timestamp_nanos);
    if let Some(url) = &args.otlp_endpoint {
        otlp::logs_url(url)?;
    }
    let stop = if args.follow {
        follow::install()?
    } else {
        Arc::new(AtomicBool::new(false))
    };
    let report = source::verify(&dir, &key)?;
    let mut src = Source::open(&dir, &key, &report)?;
    let origin = src.origin();
    let cursor_file = args.cursor.as_deref().map(CursorFile::new);
    let cursor_name = args
        .cursor
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cursor = match cursor_file
        .as_ref()
        .map(CursorFile::load)
        .transpose()?
        .flatten()
    {
        Some(c) => {
            anyhow::ensure!(
                c.journal == origin,
                "the cursor {} is for the journal {}, not {origin} (pass another --cursor file)",
                cursor_name,
                c.journal
            );
            if c.next_seq > report.entries {
                return Err(Tampered(format!(
                    "the cursor {} says seq 0 to {} were exported, but the journal holds {} \
                     entries: it was truncated",
                    cursor_name,
                    c.next_seq - 1,
                    report.entries
                ))
                .into());
            }
            c
        }
        None => Cursor {
            journal: origin.clone(),
            next_seq: 0,
            last_leaf_hash: None,
        },
    };
    let sink = match &args.otlp_endpoint {
        Some(url) => Sink::Otlp(Otlp::new(url, &origin)?),
        None => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut ex = Exporter {
        format: args.format,
        mapper: Mapper::default(),
        sink,
        since,
        cursor,
        cursor_file,
        exported: 0,
        first: None,
        stop: stop.clone(),
    };
    let end = loop {
        let batch = src.poll()?;
        let caught_up = batch.is_empty();
        match ex.deliver(batch) {
            Ok(()) => {}
            Err(e) if e.downcast_ref::<Stopped>().is_some() => break End::Stopped,
            Err(e) if is_closed_pipe(&e) => break End::ClosedPipe,
            Err(e) => return Err(e),
        }
        if stop.load(Ordering::SeqCst) {
            break End::Stopped;
        }
        if caught_up {
            if !args.follow {
                break End::Done;
            }
            if otlp::sleep_unless_stopped(follow::POLL, &stop).is_err() {
                break End::Stopped;
            }
        }
    };
    if matches!(end, End::ClosedPipe) {
        return Ok(Exit::Ok);
    }
    ex.summary(&src, args, &end);
    Ok(Exit::Ok)
}

fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

impl Exporter {
    /// Formats and delivers a batch of sealed entries, saving the cursor after each part.
    fn deliver(&mut self, batch: Vec<source::Sealed>) -> Result<()> {
        let Some(last_seq) = batch.last().map(|s| s.seq) else {
            return Ok(());
        };
        let last_leaf = batch.last().map(|s| hex::encode(s.leaf));
        let mut out: Vec<(Entry, Value)> = Vec::new();
        for s in batch {
            if s.seq < self.cursor.next_seq {
                if s.seq + 1 == self.cursor.next_seq
                    && self.cursor.last_leaf_hash.as_deref() != Some(hex::encode(s.leaf).as_str())
                {
                    return Err(Tampered(format!(
                        "entry seq {} is not the one the cursor recorded as exported: the \
                         journal was rewritten, or the cursor belongs to another copy of it",
                        s.seq
                    ))
                    .into());
                }
                // Already delivered; read for what later events need (a result's command).
                let e = Entry::parse(s)?;
                self.mapper.remember(&e);
                continue;
            }
            let e = Entry::parse(s)?;
            if self.since.is_some_and(|t| e.time_nanos < t) {
                self.mapper.remember(&e);
                continue;
            }
            let value = match self.format {
                Format::Jsonl => e.jsonl(),
                Format::Ocsf => self.mapper.map(&e),
            };
            out.push((e, value));
        }
        let parts = match self.sink {
            Sink::Otlp(_) => otlp::split(
                &out.iter()
                    .map(|(_, v)| v.to_string().len())
                    .collect::<Vec<_>>(),
            ),
            Sink::Stdout(_) => otlp::split(&vec![0; out.len()]),
        };
        for range in parts {
            let part = &out[range];
            let first_seq = part[0].0.seq;
            match &mut self.sink {
                Sink::Stdout(w) => {
                    for (_, v) in part {
                        // Serialized first so that a closed pipe is an io::Error, told apart.
                        let mut line = serde_json::to_string(v)?;
                        line.push('\n');
                        w.write_all(line.as_bytes())?;
                    }
                    w.flush()?;
                }
                Sink::Otlp(o) => {
                    let entries: Vec<&Entry> = part.iter().map(|(e, _)| e).collect();
                    let values: Vec<Value> = part.iter().map(|(_, v)| v.clone()).collect();
                    o.post(&o.request(&entries, &values), first_seq, &self.stop)?;
                }
            }
            let (e, _) = &part[part.len() - 1];
            self.first.get_or_insert(first_seq);
            self.exported += part.len() as u64;
            self.advance(e.seq, Some(e.leaf_hash.clone()))?;
        }
        // Entries filtered out after the last delivered one count as done too.
        self.advance(last_seq, last_leaf)
    }

    fn advance(&mut self, seq: u64, leaf: Option<String>) -> Result<()> {
        if seq < self.cursor.next_seq {
            return Ok(());
        }
        self.cursor.next_seq = seq + 1;
        self.cursor.last_leaf_hash = leaf;
        if let Some(f) = &self.cursor_file {
            f.save(&self.cursor)?;
        }
        Ok(())
    }

    fn summary(&self, src: &Source, args: &ExportArgs, end: &End) {
        let range = match self.first {
            Some(first) => format!(" (seq {first} to {})", self.cursor.next_seq - 1),
            None => String::new(),
        };
        let classes = if self.format == Format::Ocsf && !self.mapper.counts.is_empty() {
            let parts: Vec<String> = self
                .mapper
                .counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            format!(": {}", parts.join(", "))
        } else {
            String::new()
        };
        let to = match &args.otlp_endpoint {
            Some(u) => format!(" to {u}"),
            None => String::new(),
        };
        eprintln!(
            "agp: exported {} event{}{range}{to}{classes}",
            self.exported,
            if self.exported == 1 { "" } else { "s" }
        );
        if matches!(end, End::Stopped) {
            let resume = match &args.cursor {
                Some(c) => format!(
                    "; `--cursor {}` resumes at seq {}",
                    c.display(),
                    self.cursor.next_seq
                ),
                None => String::new(),
            };
            eprintln!("agp: export stopped by {}{resume}", follow::signal_name());
        } else if src.unsealed() > 0 {
            eprintln!(
                "agp: {} entr{} after the latest checkpoint not exported: not signed yet (a \
                 running agp seals them within moments; `agp journal recover` seals a stopped \
                 one's)",
                src.unsealed(),
                if src.unsealed() == 1 { "y" } else { "ies" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_errors() {
        let closed: anyhow::Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert!(is_closed_pipe(&closed));
        let other: anyhow::Error = std::io::Error::from(std::io::ErrorKind::NotFound).into();
        assert!(!is_closed_pipe(&other));
    }
}
