//! `agp bench replay`: how many recorded calls per second `agp policy replay` re-judges.

use std::collections::HashMap;
use std::time::Instant;

use agp_contracts::{Journal as _, PolicyEngine as _, ToolCall};
use agp_journal::{Durability, JournalOptions, JournalWriter, SignerKey};
use agp_policy::Policy;
use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::journal::BenchDir;
use crate::cmd::policy::{history, replay};
use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Record a journal of --calls varied, realistic tool calls (shell commands, \
    compound ones included, file reads and writes, fetches; allowed, asked and approved or \
    denied, denied) judged by the default policy, in --sessions sessions, signed with a fresh \
    key in a temporary folder; then time what `agp policy replay` does with it under a \
    stricter policy: verify the journal, read the calls, re-judge each (also with the policy \
    that judged it, which is at hand) and build the report. Target: >= 20,000 calls/s; exits \
    1 when missed."
)]
pub struct ReplayBenchArgs {
    /// Recorded calls
    #[arg(long, default_value_t = 50_000)]
    pub calls: usize,
    /// Sessions they are spread over
    #[arg(long, default_value_t = 32)]
    pub sessions: usize,
    /// Target in calls per second
    #[arg(long, default_value_t = 20_000.0)]
    pub target: f64,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// Call number `i` of a varied mix, as (tool, input).
fn call(i: usize) -> (&'static str, Value) {
    let n = i / 17;
    let bash = |c: String| ("Bash", json!({ "command": c }));
    match i % 17 {
        0 => bash("git status --short".into()),
        1 => bash(format!("git diff --stat HEAD~{}", n % 9 + 1)),
        2 => bash(format!(
            "cargo test -p crate{} --lib case_{n} 2>&1 | tail -n 50",
            n % 7
        )),
        3 => bash(format!(
            "ls -la src/mod{} && cat src/file{n}.rs | head -n 20",
            n % 13
        )),
        4 => bash(format!("grep -rn 'fn f{n}' src | head -20")),
        5 => bash(format!("npm run build -- --scope pkg{}", n % 5)),
        6 => bash(format!("rm -rf target/tmp{n}")),
        7 => bash(format!(
            "curl -s https://api{}.example.com/v1/items/{n} | jq .name",
            n % 4
        )),
        8 => bash(format!("git push origin feature-{n}")),
        9 => bash(format!("make test N={n} > build/test{n}.log")),
        10 => bash(format!("python3 -m pytest tests/test_{n}.py -k case{n}")),
        11 => ("Read", json!({ "file_path": format!("src/file{n}.rs") })),
        12 => (
            "Edit",
            json!({ "file_path": format!("src/file{n}.rs"), "old_string": "a", "new_string": format!("b{n}") }),
        ),
        13 => (
            "Write",
            json!({ "file_path": format!("docs/note{n}.md"), "content": format!("note {n}\n") }),
        ),
        14 => (
            "Grep",
            json!({ "pattern": format!("TODO{n}"), "path": "src" }),
        ),
        15 => (
            "WebFetch",
            json!({ "url": format!("https://docs{}.example.org/page{n}", n % 3) }),
        ),
        _ => bash(format!(
            "git add -A && git commit -m 'fix: case {n}' && git log --oneline -n 3"
        )),
    }
}

/// Records `calls` calls in `sessions` sessions (one appending thread each), as the daemon
/// journals them: request, verdict, approval for `require` (every third one denied), result.
fn record(
    dir: &std::path::Path,
    key: &SignerKey,
    project: &std::path::Path,
    old: &Policy,
    calls: usize,
    sessions: usize,
) -> Result<()> {
    let writer = JournalWriter::open(
        dir,
        key.clone(),
        JournalOptions::with_durability(Durability::Group),
    )
    .context("cannot open the bench journal")?;
    let ctx = agp_contracts::EvalContext {
        project_root: project.to_path_buf(),
        home: project.join("../home"),
        agp_home: project.join("../home/.agp"),
    };
    let sessions = sessions.max(1);
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..sessions)
            .map(|t| {
                let (writer, ctx) = (&writer, &ctx);
                s.spawn(move || -> Result<()> {
                    let session = format!("s-bench{t:04}");
                    writer.append("session.started", Some(&session), json!({"intendant": "bench", "repo": project, "session": session}))?;
                    for i in (t..calls).step_by(sessions) {
                        let (tool, input) = call(i);
                        let call = ToolCall {
                            id: format!("call-{i}"),
                            session: session.clone(),
                            tool_use_id: None,
                            tool: tool.into(),
                            input: input.clone(),
                            cwd: project.to_path_buf(),
                        };
                        let sha = call.input_sha256()?;
                        writer.append("tool_call.requested", Some(&session), json!({
                            "call_id": call.id, "tool": tool, "input": input, "input_sha256": sha,
                            "cwd": project, "mode": "proxy_exec", "tool_use_id": null}))?;
                        let v = old.evaluate(&call, ctx);
                        writer.append("policy.decided", Some(&session), json!({
                            "call_id": call.id, "tool": tool, "input_sha256": sha,
                            "decision": v.decision, "reason": v.reason, "rule_id": v.rule_id,
                            "deciding_part": v.deciding_part, "policy_sha256": v.policy_sha256,
                            "parts": v.parts}))?;
                        let ran = match v.decision {
                            agp_contracts::Decision::Allow => true,
                            agp_contracts::Decision::Deny => false,
                            agp_contracts::Decision::Require => {
                                let by = json!({"id": "bench", "name": "bench", "via": "bench"});
                                if i % 3 == 0 {
                                    writer.append("approval.denied", Some(&session), json!({"call_id": call.id, "input_sha256": sha, "by": by, "reason": null, "channel": "bench"}))?;
                                    false
                                } else {
                                    writer.append("approval.granted", Some(&session), json!({"call_id": call.id, "input_sha256": sha, "by": [by], "channel": "bench"}))?;
                                    true
                                }
                            }
                        };
                        if ran {
                            writer.append("tool_call.result", Some(&session), json!({"call_id": call.id, "tool": tool, "input_sha256": sha, "ok": true, "output": "", "truncated": false, "output_sha256": sha, "reported_by": "sandbox"}))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a recording thread panicked"))??;
        }
        Ok(())
    })?;
    writer.close().context("cannot close the bench journal")?;
    Ok(())
}

/// CPU time this process has used (all threads), in seconds: on a shared machine it tells the
/// work done from the time other processes held the CPUs.
fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn run(args: &ReplayBenchArgs) -> Result<Exit> {
    let dir = BenchDir::new(None)?;
    let project = dir.path.join("project");
    super::policy::setup_project(&project)?;
    let journal = dir.path.join("journal");
    let key = SignerKey::generate("agp.bench/replay")?;
    let default = include_str!("../../../assets/policy.toml");
    let old = Policy::from_str(default, "default").context("the default policy does not load")?;
    // The policy under review: the default one with cargo asked and make refused.
    let stricter = format!(
        "{default}\n[[rule]]\nid = \"ask-cargo\"\neffect = \"require\"\nmatch = [\"Bash(cargo *)\"]\n\n\
         [[rule]]\nid = \"no-make\"\neffect = \"deny\"\nmatch = [\"Bash(make *)\"]\n"
    );
    let new = Policy::from_str(&stricter, "stricter").context("the bench policy does not load")?;
    let started = Instant::now();
    record(&journal, &key, &project, &old, args.calls, args.sessions)?;
    let record_secs = started.elapsed().as_secs_f64();

    let start = Instant::now();
    let cpu_start = process_cpu_secs();
    let history = history::read(&journal, key.verifier(), &history::Filter::default())?;
    let read_secs = start.elapsed().as_secs_f64();
    let mut baselines = HashMap::new();
    baselines.insert(new.sha256().to_string(), &new);
    baselines.insert(old.sha256().to_string(), &old);
    let judge_start = Instant::now();
    let judged = replay::judge_all(
        &project.join("../home/.agp"),
        &project.join("../home"),
        &history,
        &new,
        &baselines,
    );
    let report = crate::cmd::policy::replay_print::Report::build(
        &history,
        &judged,
        std::path::Path::new("stricter"),
        &new,
        3,
    );
    let judge_secs = judge_start.elapsed().as_secs_f64();
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu_start;
    let rate = history.calls.len() as f64 / secs;
    let met = rate >= args.target && history.calls.len() == args.calls;
    let figures = json!({
        "bench": "replay",
        "calls": history.calls.len(),
        "journal_entries": history.trust.entries,
        "sessions": args.sessions,
        "threads": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "record_seconds": record_secs,
        "verify_and_read_seconds": read_secs,
        "judge_seconds": judge_secs,
        "seconds": secs,
        "calls_per_sec": rate.round(),
        "cpu_seconds": cpu_secs,
        "calls_per_cpu_sec": (history.calls.len() as f64 / cpu_secs.max(1e-9)).round(),
        "target_calls_per_sec": args.target,
        "changed": report.changed,
        "tightened": report.tightened,
        "not_reconstructible": report.not_reconstructible,
        "met": met,
        "load_average_1m": super::policy::load_average(),
    });
    super::report(
        args.json,
        &figures,
        serde_json::to_string_pretty,
        |_| {
            println!(
                "policy replay: {} calls ({} journal entries, {} sessions) verified, read and \
                 re-judged in {secs:.3} s = {rate:.0} calls/s (target >= {:.0}: {})",
                history.calls.len(),
                history.trust.entries,
                args.sessions,
                args.target,
                if met { "met" } else { "NOT met" }
            );
            println!(
                "  verify + read {read_secs:.3} s, judge + report {judge_secs:.3} s; {} changed \
                 ({} tightened) under the stricter policy; recording took {record_secs:.1} s; \
                 {cpu_secs:.3} CPU-seconds ({:.0} calls per CPU-second); load average {}",
                report.changed,
                report.tightened,
                history.calls.len() as f64 / cpu_secs.max(1e-9),
                super::policy::load_average().map_or("unknown".into(), |l| format!("{l:.2}"))
            );
        },
        met,
    )
}
