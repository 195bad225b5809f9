//! `agp bench console`: what opening the web console costs on a journal of 1,000,000 entries.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use agp_journal::{Durability, JournalOptions, JournalWriter, SignerKey};
use agp_journal_index::{JournalIndex, SessionQuery, TimelineQuery};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::journal::BenchDir;
use super::verify::memory_kib;
use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Write a journal of --entries entries (tool calls as the daemon journals \
    them: request, verdict, approval, egress, result; half of the calls in one large session, \
    the rest spread over --sessions), or reuse the one in --journal DIR; build the console's \
    index of it once (entries per second); then, --runs times, time what opening the console \
    costs: open the index as a fresh process would, catch up (nothing new), the journal's \
    figures, the first page of sessions, the first page of the largest session's timeline \
    and a page deep into it. Reports p50 and max, the peak resident memory of building and \
    of opening, and the load average. Target: open <= 1 s; exits 1 when missed."
)]
pub struct ConsoleBenchArgs {
    /// Entries in the journal written
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Sessions the calls are spread over (the first holds half of them)
    #[arg(long, default_value_t = 200)]
    pub sessions: u64,
    /// Use (or, when it holds no journal yet, write and keep) the journal in DIR
    #[arg(long, value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Times the console is opened
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Target for one open, in milliseconds
    #[arg(long, default_value_t = 1000.0)]
    pub target_ms: f64,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// Entries journaled for call `i`: which fate it has decides how many.
fn call_entries(i: u64, session: &str) -> Vec<(&'static str, Option<&str>, Value)> {
    let id = format!("call-{i}");
    let sha = format!("{i:064x}");
    let (tool, input) = match i % 4 {
        0 => (
            "Read",
            json!({"file_path": format!("src/mod{}/file{i}.rs", i % 13)}),
        ),
        1 => (
            "Bash",
            json!({"command": format!("cargo test -p crate{} case_{i} 2>&1 | tail -n 50", i % 7)}),
        ),
        2 => (
            "Bash",
            json!({"command": format!("curl -s https://api{}.example.com/v1/items/{i}", i % 4)}),
        ),
        _ => (
            "Edit",
            json!({"file_path": format!("src/file{i}.rs"), "old_string": "a", "new_string": "b"}),
        ),
    };
    let s = Some(session);
    let mut out = vec![(
        "tool_call.requested",
        s,
        json!({"call_id": id, "tool_use_id": null, "tool": tool, "input": input,
               "input_sha256": sha, "cwd": "/src/app", "mode": "proxy-exec"}),
    )];
    let fate = i % 10;
    let (decision, rule) = match fate {
        0..=5 => ("allow", "reads-and-builds"),
        6 | 7 => ("deny", "no-secrets"),
        _ => ("require", "network-egress"),
    };
    out.push((
        "policy.decided",
        s,
        json!({"call_id": id, "tool": tool, "input_sha256": sha, "decision": decision,
               "reason": format!("rule {rule} matched"), "rule_id": rule,
               "deciding_part": null, "policy_sha256": "ab".repeat(32)}),
    ));
    let by = json!({"id": "tty:alice", "name": "alice", "via": "terminal"});
    if decision == "require" {
        out.push((
            "approval.requested",
            s,
            json!({"call_id": id, "tool": tool, "input_sha256": sha, "rule_id": rule,
                   "reason": "network access", "channel": "terminal", "approvers": [],
                   "quorum": 1, "expires_at_ms": 1_900_000_000_000_i64}),
        ));
        if fate == 9 {
            out.push((
                "approval.denied",
                s,
                json!({"call_id": id, "input_sha256": sha, "by": by, "reason": null,
                       "channel": "terminal"}),
            ));
            return out;
        }
        out.push((
            "approval.granted",
            s,
            json!({"call_id": id, "input_sha256": sha, "by": [by], "channel": "terminal",
                   "waited_ms": 900}),
        ));
        out.push((
            "egress.request",
            s,
            json!({"host": "api.example.com", "port": 443, "method": "GET",
                   "path": format!("/v1/items/{i}"), "allowed": true, "rule": "approval",
                   "reason": "approved", "status": 200, "bytes_up": 310, "bytes_down": 5120,
                   "count": 1}),
        ));
    } else if decision == "deny" {
        return out;
    }
    out.push((
        "tool_call.result",
        s,
        json!({"call_id": id, "tool": tool, "input_sha256": sha, "ok": true, "exit_code": 0,
               "timed_out": false, "error": null, "output": "test result: ok", "truncated": false,
               "output_bytes": 15, "output_sha256": "cd".repeat(32), "reported_by": "sandbox"}),
    ));
    out
}

/// Writes about `entries` entries: sessions started, calls from several threads (group
/// commit), sessions ended.
fn write_journal(dir: &Path, entries: u64, sessions: u64) -> Result<()> {
    let key = SignerKey::generate("agp.bench/console")?;
    let writer = JournalWriter::open(dir, key, JournalOptions::with_durability(Durability::Group))
        .context("cannot open the bench journal")?;
    let sessions = sessions.max(2);
    let name = |n: u64| format!("s-bench{n:05}");
    let start_end = |kind: &str, n: u64| -> Result<()> {
        let s = name(n);
        let body = if kind == "session.started" {
            json!({"session": s, "intendant": "claude-code", "repo": format!("/src/repo{}", n % 17),
                   "task": format!("task {n}: fix the failing tests"), "mode": "proxy-exec",
                   "started_by": "alice", "policy_mode": "enforce"})
        } else {
            json!({"session": s, "status": "completed", "lease_held": true})
        };
        writer.append_batch(&[(kind, Some(&s), body)])?;
        Ok(())
    };
    for n in 0..sessions {
        start_end("session.started", n)?;
    }
    // journal.created, a start per session, an end for each but the large one.
    let budget = entries.saturating_sub(2 * sessions);
    let written = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) * 8;
    std::thread::scope(|sc| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        // Half the calls in the first session: the console's worst timeline.
                        let session = if i.is_multiple_of(2) {
                            name(0)
                        } else {
                            name(1 + (i / 2) % (sessions - 1))
                        };
                        let batch = call_entries(i, &session);
                        let n = batch.len() as u64;
                        if written.fetch_add(n, Ordering::Relaxed) + n > budget {
                            return Ok(());
                        }
                        writer.append_batch(&batch)?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a writing thread panicked"))??;
        }
        Ok(())
    })?;
    for n in 1..sessions {
        start_end("session.ended", n)?;
    }
    writer.close().context("cannot close the bench journal")?;
    Ok(())
}

/// One console open: what the first screen needs. Returns its milliseconds and what it saw.
fn open_once(journal: &Path, index: &Path, big: &str) -> Result<(f64, Value)> {
    let t = Instant::now();
    let ix = JournalIndex::open(journal, index)?;
    let caught = ix.catch_up()?;
    let stats = ix.stats()?;
    let sessions = ix.sessions(&SessionQuery::default())?;
    let first = ix.timeline(big, &TimelineQuery::default())?;
    let deep = ix.timeline(
        big,
        &TimelineQuery {
            after: Some(stats.entries * 9 / 10),
            ..TimelineQuery::default()
        },
    )?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok((
        ms,
        json!({
            "new_entries": caught.new_entries,
            "rebuilt": caught.rebuilt,
            "entries": stats.entries,
            "sessions": stats.sessions,
            "calls": stats.calls,
            "covered": stats.covered,
            "first_page_sessions": sessions.items.len(),
            "largest_session": big,
            "timeline_first_page": first.items.len(),
            "timeline_deep_page": deep.items.len(),
            "deep_page_first_seq": deep.items.first().map(|c| c.seq),
        }),
    ))
}

/// The session with the most calls (found before the timed runs: a console is asked for a
/// session by id).
fn largest_session(journal: &Path, index: &Path) -> Result<String> {
    let ix = JournalIndex::open(journal, index)?;
    let mut q = SessionQuery {
        limit: Some(agp_journal_index::MAX_PAGE),
        ..SessionQuery::default()
    };
    let mut best: Option<(u64, String)> = None;
    loop {
        let page = ix.sessions(&q)?;
        for s in page.items {
            if best.as_ref().is_none_or(|(n, _)| s.calls > *n) {
                best = Some((s.calls, s.id));
            }
        }
        match page.next {
            Some(n) => q.before = Some(n),
            None => break,
        }
    }
    best.map(|(_, id)| id)
        .context("the journal has no sessions to open a timeline of")
}

fn file_mb(p: &Path) -> f64 {
    let sum: u64 = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| {
            let mut os = p.as_os_str().to_owned();
            os.push(s);
            std::fs::metadata(PathBuf::from(os)).ok()
        })
        .map(|m| m.len())
        .sum();
    (sum as f64 / 1048576.0 * 10.0).round() / 10.0
}

pub fn run(args: &ConsoleBenchArgs) -> Result<Exit> {
    let scratch = BenchDir::new(None)?;
    let journal = args
        .journal
        .clone()
        .unwrap_or_else(|| scratch.path.join("journal"));
    let reused = journal.join(agp_journal::ENTRIES_FILE).exists();
    let write_secs = if reused {
        None
    } else {
        let t = Instant::now();
        write_journal(&journal, args.entries, args.sessions)?;
        Some(t.elapsed().as_secs_f64())
    };
    let index = scratch.path.join("console").join("index.db");

    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the peak RSS mark")?;
    let t = Instant::now();
    let built = {
        let ix = JournalIndex::open(&journal, &index)?;
        ix.catch_up()?
    };
    let build_secs = t.elapsed().as_secs_f64();
    let (build_hwm, _) = memory_kib()?;
    if built.entries == 0 {
        bail!("{} holds no journal entries", journal.display());
    }

    let big = largest_session(&journal, &index)?;
    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the peak RSS mark")?;
    let mut times = Vec::new();
    let mut seen = Value::Null;
    for _ in 0..args.runs.max(1) {
        let (ms, s) = open_once(&journal, &index, &big)?;
        times.push(ms);
        seen = s;
    }
    let (open_hwm, _) = memory_kib()?;
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let max = times[times.len() - 1];
    let met = max <= args.target_ms;
    let rate = built.entries as f64 / build_secs;
    let mb = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let figures = json!({
        "bench": "console",
        "entries": built.entries,
        "journal_mb": (built.bytes as f64 / 1048576.0 * 10.0).round() / 10.0,
        "journal_reused": reused,
        "write_seconds": write_secs,
        "index_build_seconds": build_secs,
        "index_build_entries_per_sec": rate.round(),
        "index_mb": file_mb(&index),
        "build_peak_rss_mb": mb(build_hwm),
        "runs": times.len(),
        "open_ms_p50": p50,
        "open_ms_max": max,
        "open_ms_all": times,
        "open_peak_rss_mb": mb(open_hwm),
        "target_open_ms": args.target_ms,
        "opened": seen,
        "met": met,
        "load_average_1m": super::policy::load_average(),
    });
    super::report(
        args.json,
        &figures,
        serde_json::to_string_pretty,
        |_| {
            println!(
                "console: {} entries ({:.0} MB); index built in {build_secs:.1} s = {rate:.0} \
                 entries/s, {} MB, peak RSS {} MB",
                built.entries,
                built.bytes as f64 / 1048576.0,
                file_mb(&index),
                mb(build_hwm)
            );
            println!(
                "  open (index, catch up, stats, sessions page, timeline first and deep page): \
                 p50 {p50:.1} ms, max {max:.1} ms over {} runs (target <= {:.0} ms: {} {}); \
                 peak RSS {} MB; load average {}",
                times.len(),
                args.target_ms,
                super::mark(met),
                if met { "met" } else { "NOT met" },
                mb(open_hwm),
                super::policy::load_average().map_or("unknown".into(), |l| format!("{l:.2}"))
            );
        },
        met,
    )
}
