//! `agp bench policy`: evaluation latency, shell parsing included, with a large rule set.

use std::path::Path;
use std::time::Instant;

use agp_contracts::{EvalContext, PolicyEngine as _, ToolCall};
use agp_policy::bench_support::synthetic_policy;
use agp_policy::Policy;
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::journal::BenchDir;
use crate::exit::Exit;

#[derive(Debug, Args)]
#[command(
    long_about = "Evaluate typical tool calls (shell commands parsed with tree-sitter-bash, \
    file reads and writes) against a generated policy: the default policy plus generated rules \
    up to --rules, in a temporary project. The measuring thread is pinned to one CPU. Reports \
    p50/p99/max per call and overall. Target: p99 <= 20 us with 500 rules; exits 1 when missed."
)]
pub struct PolicyBenchArgs {
    /// Number of rules in the generated policy
    #[arg(long, default_value_t = 500)]
    pub rules: usize,
    /// Timed evaluations per call
    #[arg(long, default_value_t = 5_000)]
    pub iterations: usize,
    /// p99 target in microseconds
    #[arg(long, default_value_t = 20.0)]
    pub target_us: f64,
    /// Machine-readable report
    #[arg(long)]
    pub json: bool,
}

/// Typical calls an agent makes (tool, input).
pub fn typical_calls() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("Bash", json!({"command": "git status"})),
        (
            "Bash",
            json!({"command": "cargo test --workspace 2>&1 | tail -n 50"}),
        ),
        ("Bash", json!({"command": "ls -la src && cat README.md"})),
        ("Bash", json!({"command": "npm run build > build.log"})),
        ("Bash", json!({"command": "grep -rn TODO src | head -20"})),
        (
            "Bash",
            json!({"command": "git add -A && git commit -m 'fix: handle empty input'"}),
        ),
        ("Bash", json!({"command": "rm -rf build"})),
        (
            "Bash",
            json!({"command": "curl -s https://api.github.com/repos/a/b | jq .name"}),
        ),
        ("Read", json!({"file_path": "src/main.rs"})),
        (
            "Edit",
            json!({"file_path": "src/main.rs", "old_string": "a", "new_string": "b"}),
        ),
    ]
}

/// The default policy plus generated rules up to `rules` (see
/// `agp_policy::bench_support::synthetic_policy`, which the criterion bench uses too).
pub fn generated_policy(rules: usize) -> String {
    synthetic_policy(include_str!("../../../assets/policy.toml"), rules)
}

fn pin_to_one_cpu() -> bool {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, CPU_SET writes inside it,
    // and sched_setaffinity(0, …) only affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cpu = libc::sched_getcpu().max(0) as usize;
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) == 0
    }
}

struct CallResult {
    label: String,
    decision: &'static str,
    p50: u64,
    p99: u64,
    max: u64,
    cpu_mean: u64,
    parse_mean: u64,
}

/// CPU time this thread has used, in ns: unlike wall time it does not count the time other
/// processes on a busy machine held the CPU.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The 1-minute load average: p99 latencies on a shared machine mean little without it.
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(super) fn setup_project(dir: &Path) -> Result<()> {
    for d in ["src", ".git/hooks"] {
        std::fs::create_dir_all(dir.join(d)).with_context(|| format!("cannot create {d}"))?;
    }
    for f in ["src/main.rs", "README.md", "Cargo.toml"] {
        std::fs::write(dir.join(f), "x").with_context(|| format!("cannot write {f}"))?;
    }
    Ok(())
}

pub fn run(args: &PolicyBenchArgs) -> Result<Exit> {
    let dir = BenchDir::new(None)?;
    let project = dir.path.join("project");
    setup_project(&project)?;
    let text = generated_policy(args.rules);
    let policy = Policy::from_str(&text, "generated").context("generated policy does not load")?;
    let ctx = EvalContext {
        project_root: project.clone(),
        home: dir.path.join("home"),
        agp_home: dir.path.join("home/.agp"),
    };
    let pinned = pin_to_one_cpu();
    let calls: Vec<ToolCall> = typical_calls()
        .into_iter()
        .enumerate()
        .map(|(i, (tool, input))| ToolCall {
            id: format!("bench-{i}"),
            session: "bench".into(),
            tool_use_id: None,
            tool: tool.into(),
            input,
            cwd: project.clone(),
        })
        .collect();
    let iterations = args.iterations.max(1);
    let mut all = Vec::with_capacity(iterations * calls.len());
    let mut per_call = Vec::new();
    let (mut cpu_total, mut parse_total) = (0u64, 0u64);
    for call in &calls {
        for _ in 0..iterations.min(500) {
            std::hint::black_box(policy.evaluate(call, &ctx));
        }
        let mut samples = Vec::with_capacity(iterations);
        let mut decision = None;
        let cpu_start = thread_cpu_ns();
        for _ in 0..iterations {
            let t = Instant::now();
            let v = policy.evaluate(call, &ctx);
            samples.push(t.elapsed().as_nanos() as u64);
            decision = Some(v.decision);
        }
        let cpu = thread_cpu_ns().saturating_sub(cpu_start) / iterations as u64;
        cpu_total += cpu;
        // Shell parsing alone, to show how much of the evaluation it is.
        let parse = match call.input.get("command").and_then(|c| c.as_str()) {
            Some(command) => {
                let start = thread_cpu_ns();
                for _ in 0..iterations {
                    std::hint::black_box(agp_policy::shell::analyze(command));
                }
                thread_cpu_ns().saturating_sub(start) / iterations as u64
            }
            None => 0,
        };
        parse_total += parse;
        all.extend_from_slice(&samples);
        samples.sort_unstable();
        let label = match call.input.get("command").and_then(|c| c.as_str()) {
            Some(c) => c.to_string(),
            None => format!(
                "{} {}",
                call.tool,
                call.input
                    .get("file_path")
                    .and_then(|f| f.as_str())
                    .unwrap_or("")
            ),
        };
        per_call.push(CallResult {
            label,
            decision: decision.map_or("?", |d| d.as_str()),
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            max: *samples.last().unwrap_or(&0),
            cpu_mean: cpu,
            parse_mean: parse,
        });
    }
    all.sort_unstable();
    let p50 = percentile(&all, 0.5);
    let p99 = percentile(&all, 0.99);
    let max = *all.last().unwrap_or(&0);
    let cpu_mean = cpu_total / calls.len().max(1) as u64;
    let parse_mean = parse_total / calls.len().max(1) as u64;
    let us = |ns: u64| ns as f64 / 1000.0;
    let ok = us(p99) <= args.target_us;
    if args.json {
        let calls: Vec<_> = per_call
            .iter()
            .map(|c| {
                json!({"call": c.label, "decision": c.decision, "p50_us": us(c.p50),
                    "p99_us": us(c.p99), "max_us": us(c.max), "cpu_mean_us": us(c.cpu_mean),
                    "parse_cpu_mean_us": us(c.parse_mean)})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "rules": policy.rules().len(),
                "iterations_per_call": iterations,
                "pinned_to_one_cpu": pinned,
                "load_average_1m": load_average(),
                "p50_us": us(p50), "p99_us": us(p99), "max_us": us(max),
                "cpu_mean_us": us(cpu_mean), "parse_cpu_mean_us": us(parse_mean),
                "target_p99_us": args.target_us, "met": ok, "calls": calls,
            }))?
        );
    } else {
        println!(
            "policy evaluation, {} rules, {iterations} runs per call, {}, load average {}",
            policy.rules().len(),
            if pinned {
                "pinned to one CPU"
            } else {
                "not pinned (sched_setaffinity failed)"
            },
            load_average().map_or("unknown".to_string(), |l| format!("{l:.2}"))
        );
        println!("  wall-clock p50 / p99 / max, then mean CPU time per evaluation (of which shell parsing)");
        for c in &per_call {
            println!(
                "  p50 {:>6.1} us  p99 {:>6.1} us  max {:>8.1} us  cpu {:>5.1} us ({:>4.1})  {:<7}  {}",
                us(c.p50),
                us(c.p99),
                us(c.max),
                us(c.cpu_mean),
                us(c.parse_mean),
                c.decision,
                c.label
            );
        }
        println!(
            "overall: p50 {:.1} us, p99 {:.1} us, max {:.1} us, mean CPU {:.1} us \
             (target p99 <= {} us: {})",
            us(p50),
            us(p99),
            us(max),
            us(cpu_mean),
            args.target_us,
            if ok { "met" } else { "MISSED" }
        );
    }
    Ok(if ok { Exit::Ok } else { Exit::Bad })
}
