//! `agp bench gateway`: allow-path round trips through a real `agp daemon` process over its
//! Unix socket (policy, two journal entries made durable together, reply), with N concurrent
//! clients; and the daemon's idle resident memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agp_gateway::{Client, SessionMode, ToolCallRequest};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::{mark, report};
use crate::exit::Exit;

const TARGET_P99_GROUP_MS: f64 = 1.0;
const TARGET_P99_ENTRY_MS: f64 = 2.0;
const TARGET_CALLS_PER_SEC: f64 = 2000.0;
const TARGET_IDLE_RSS_MB: f64 = 30.0;

#[derive(Debug, Args)]
pub struct GatewayBenchArgs {
    /// Timed calls in total (split across the clients).
    #[arg(long, default_value_t = 10_000)]
    pub calls: usize,
    /// Concurrent clients, each on its own connection and session.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Journal durability of the daemon under test.
    #[arg(long, default_value = "group", value_parser = ["entry", "group"])]
    pub durability: String,
    /// Untimed calls per client first.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep the daemon's state in this PostgreSQL (`[state] url`, team mode) instead of
    /// SQLite.
    #[arg(long, value_name = "URL")]
    pub state_url: Option<String>,
    /// Daemons sharing the --state-url database (each its own agp home, as team members on
    /// several hosts would be); the clients are spread over them in turn. The targets are
    /// then team mode's: p99 of the concurrent run and calls/s in total.
    #[arg(long, default_value_t = 1, requires = "state_url")]
    pub daemons: usize,
}

/// Team mode's targets (issue 16), with the state in PostgreSQL: p99 of the allow path with
/// 16 clients spread over the daemons.
const TARGET_P99_TEAM_MS: f64 = 5.0;

#[derive(Debug, Serialize)]
struct Figures {
    durability: String,
    /// `sqlite` or `postgres`.
    state: &'static str,
    daemons: usize,
    /// The 1-minute load average when the run ended (the machine may be shared).
    load_average_1m: f64,
    calls: usize,
    concurrency: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    calls_per_sec: f64,
    /// A single client alone: the latency one hook pays.
    single_client_p50_ms: f64,
    single_client_p99_ms: f64,
    idle_rss_mb: f64,
    target_p99_ms: f64,
    target_calls_per_sec: f64,
    target_idle_rss_mb: f64,
    p99_met: bool,
    throughput_met: bool,
    rss_met: bool,
}

/// A scratch agp home and the daemon serving it; both gone on drop.
pub(super) struct Bench {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            // SAFETY: kill(2) on our own child's pid; SIGTERM lets it shut down in order.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agp(home: &Path, args: &[&str]) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the agp executable")?;
    let out = Command::new(exe)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run agp {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "agp {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn rss_mb(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb / 1024.0)
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A scratch home and a real `agp daemon` allowing `Bash(true)` (shared with `bench hook`).
pub(super) fn start(durability: &str) -> Result<(Bench, PathBuf, String)> {
    start_with_state(durability, None)
}

/// [`start`] with the daemon's state at `state_url` (PostgreSQL) when given.
fn start_with_state(durability: &str, state_url: Option<&str>) -> Result<(Bench, PathBuf, String)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("agp-bench-gw-{}-{nanos}", std::process::id()));
    let mut bench = Bench {
        dir: dir.clone(),
        daemon: None,
    };
    let home = dir.join("home");
    std::fs::create_dir_all(dir.join("repo"))?;
    agp(&home, &["init"])?;
    agp(&home, &["keygen"])?;
    if let Some(url) = state_url {
        let config = home.join("config.toml");
        let mut text = std::fs::read_to_string(&config)?;
        // A JSON string is a valid TOML basic string (same escapes).
        let url = serde_json::to_string(url)?;
        text.push_str(&format!("\n[state]\nurl = {url}\n"));
        std::fs::write(&config, text)?;
    }
    let policy = dir.join("bench-policy.toml");
    std::fs::write(
        &policy,
        "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"bench-allow\"\neffect = \"allow\"\nmatch = [\"Bash(true)\"]\n",
    )?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("--home")
        .arg(&home)
        .args([
            "daemon",
            "--sandbox",
            "none",
            "--durability",
            durability,
            "--policy",
        ])
        .arg(&policy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start agp daemon")?;
    bench.daemon = Some(child);
    let layout = crate::home::Home::resolve(Some(&home))?;
    let (admin, socket) = (layout.admin_token(), layout.gateway_socket());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(admin.exists() && socket.exists()) {
        if Instant::now() > deadline {
            bail!("the daemon did not start within 20 s");
        }
        if let Some(Ok(Some(status))) = bench.daemon.as_mut().map(Child::try_wait) {
            bail!("the daemon exited at start ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The daemon renames the complete token into place before it binds the socket.
    let admin_token = std::fs::read_to_string(&admin)?;
    Ok((bench, socket, admin_token))
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One client: its own session and connection; returns each timed call's latency.
fn client(
    socket: &Path,
    admin: &str,
    repo: &Path,
    warmup: usize,
    calls: usize,
) -> Result<Vec<Duration>> {
    let mut control = Client::connect(socket, Duration::from_secs(30))?;
    let opened = control.open_session(
        admin,
        "bench",
        &repo.to_string_lossy(),
        "",
        SessionMode::Gate,
    )?;
    let mut c = Client::connect(socket, Duration::from_secs(30))?;
    c.hello(&opened.token)?;
    let mut lat = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let req = ToolCallRequest {
            id: format!("b{i}"),
            tool_use_id: None,
            tool: "Bash".into(),
            input: serde_json::json!({"command": "true"}),
            cwd: repo.to_string_lossy().into_owned(),
        };
        let t = Instant::now();
        let v = c.request(&req)?;
        let d = t.elapsed();
        if !v.is_allow() {
            bail!("the bench call was denied: {}", v.reason);
        }
        if i >= warmup {
            lat.push(d);
        }
    }
    c.end_session(Some("completed"))?;
    Ok(lat)
}

/// A daemon under test: its socket, admin token and a repo folder for sessions.
struct Target {
    socket: PathBuf,
    admin: String,
    repo: PathBuf,
}

/// `n` clients, client `i` on daemon `i % targets.len()`; every timed latency, sorted, and
/// the wall time of the timed part.
fn run_clients(
    targets: &[Target],
    n: usize,
    calls: usize,
    warmup: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let per = calls.div_ceil(n);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let t = &targets[i % targets.len()];
            let (socket, admin, repo, barrier) = (
                t.socket.clone(),
                t.admin.clone(),
                t.repo.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                client(&socket, &admin, &repo, warmup, per)
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let mut all = Vec::with_capacity(per * n);
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a bench client panicked"))??,
        );
    }
    let wall = t.elapsed();
    all.sort_unstable();
    Ok((all, wall))
}

pub fn run(args: &GatewayBenchArgs) -> Result<Exit> {
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    if args.daemons == 0 {
        bail!("--daemons must be at least 1");
    }
    let mut benches = Vec::with_capacity(args.daemons);
    let mut targets = Vec::with_capacity(args.daemons);
    for _ in 0..args.daemons {
        let (bench, socket, admin) = start_with_state(&args.durability, args.state_url.as_deref())?;
        targets.push(Target {
            socket,
            admin,
            repo: bench.dir.join("repo"),
        });
        benches.push(bench);
    }
    // Idle: started, nothing served yet.
    std::thread::sleep(Duration::from_millis(500));
    let pid = benches[0].daemon.as_ref().map_or(0, Child::id);
    let idle_rss_mb = rss_mb(pid)?;

    let single_calls = (args.calls / 4).clamp(100, 2000);
    let (single, _) = run_clients(&targets[..1], 1, single_calls, args.warmup)?;
    let (all, wall) = run_clients(&targets, args.concurrency, args.calls, args.warmup)?;
    let load_average_1m = load_average();
    let calls_per_sec = all.len() as f64 / wall.as_secs_f64();
    let team = args.state_url.is_some();
    let target_p99_ms = if team {
        TARGET_P99_TEAM_MS
    } else if args.durability == "group" {
        TARGET_P99_GROUP_MS
    } else {
        TARGET_P99_ENTRY_MS
    };
    let single_p99 = percentile(&single, 0.99);
    let f = Figures {
        durability: args.durability.clone(),
        state: if team { "postgres" } else { "sqlite" },
        daemons: args.daemons,
        load_average_1m,
        calls: all.len(),
        concurrency: args.concurrency,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        calls_per_sec,
        single_client_p50_ms: percentile(&single, 0.50),
        single_client_p99_ms: single_p99,
        idle_rss_mb,
        target_p99_ms,
        target_calls_per_sec: TARGET_CALLS_PER_SEC,
        target_idle_rss_mb: TARGET_IDLE_RSS_MB,
        // Alone, the latency one hook pays; in team mode, under the 16 clients' load.
        p99_met: if team {
            percentile(&all, 0.99) <= target_p99_ms
        } else {
            single_p99 <= target_p99_ms
        },
        throughput_met: args.concurrency < 16 || calls_per_sec >= TARGET_CALLS_PER_SEC,
        rss_met: idle_rss_mb <= TARGET_IDLE_RSS_MB,
    };
    drop(benches);
    let text = |f: &Figures| {
        println!("agp bench gateway: allow path (policy + 2 journal entries, one durable wait + reply), durability {}, state {}, {} daemon{}, load average {:.2}", f.durability, f.state, f.daemons, if f.daemons == 1 { "" } else { "s" }, f.load_average_1m);
        if f.state == "postgres" {
            println!(
                "   single client: p50 {:.3} ms, p99 {:.3} ms",
                f.single_client_p50_ms, f.single_client_p99_ms
            );
            println!(
                "{} {} clients over {} daemons: p99 {:.3} ms (target <= {} ms), p50 {:.3} ms, max {:.3} ms",
                mark(f.p99_met), f.concurrency, f.daemons, f.p99_ms, f.target_p99_ms, f.p50_ms, f.max_ms
            );
            println!(
                "{} {} calls, {:.0} calls/s in total (target >= {} with 16 clients)",
                mark(f.throughput_met),
                f.calls,
                f.calls_per_sec,
                f.target_calls_per_sec
            );
        } else {
            println!(
                "{} single client: p50 {:.3} ms, p99 {:.3} ms (target p99 <= {} ms)",
                mark(f.p99_met),
                f.single_client_p50_ms,
                f.single_client_p99_ms,
                f.target_p99_ms
            );
            println!(
                "{} {} clients: {} calls, {:.0} calls/s (target >= {} with 16), p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                mark(f.throughput_met), f.concurrency, f.calls, f.calls_per_sec, f.target_calls_per_sec, f.p50_ms, f.p99_ms, f.max_ms
            );
        }
        println!(
            "{} daemon idle RSS: {:.1} MB (target <= {} MB)",
            mark(f.rss_met),
            f.idle_rss_mb,
            f.target_idle_rss_mb
        );
    };
    let met = f.p99_met && f.throughput_met && f.rss_met;
    report(args.json, &f, serde_json::to_string_pretty, text, met)
}
