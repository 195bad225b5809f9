//! `agp bench hook`: the per-tool-call tax of `agp hook`, as a harness pays it. Each sample is
//! one real `agp hook` process, from spawn to its decision printed and the process gone, asking
//! a real `agp daemon` (policy and durable journal appends included) about an allowed call.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agp_gateway::{Client, SessionMode};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::gateway::{percentile, start};
use super::{mark, report};
use crate::exit::Exit;

const TARGET_P50_MS: f64 = 3.0;
const TARGET_P99_MS: f64 = 8.0;

#[derive(Debug, Args)]
pub struct HookBenchArgs {
    /// Timed hook invocations.
    #[arg(long, default_value_t = 500)]
    pub calls: usize,
    /// Untimed invocations first.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Journal durability of the daemon under test (config.toml's default is entry).
    #[arg(long, default_value = "entry", value_parser = ["entry", "group"])]
    pub durability: String,
    /// Answer from an in-process stand-in that allows at once instead of a real daemon: the
    /// hook's own cost (process start, stdin, two frames, stdout), without policy or journal.
    #[arg(long)]
    pub stand_in: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Figures {
    calls: usize,
    /// `daemon (entry)`, `daemon (group)` or `stand-in`.
    backend: String,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    target_p50_ms: f64,
    target_p99_ms: f64,
    met: bool,
}

/// What answers the hook; dropped after the run (stops the daemon, removes scratch files).
enum Backend {
    Daemon(#[allow(dead_code)] super::gateway::Bench),
    StandIn(#[allow(dead_code)] tempfile::TempDir),
}

/// A gateway peer that welcomes any token and allows every call at once.
fn stand_in() -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("gw.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket)?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { return };
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(read_half);
            let mut writer = stream;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let msg: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let reply = match msg["type"].as_str() {
                    Some("hello") => {
                        json!({"type": "welcome", "protocol": agp_gateway::PROTOCOL_VERSION,
                                            "session": "bench", "mode": "gate"})
                    }
                    _ => json!({"type": "verdict", "id": msg["id"], "decision": "allow",
                                "reason": "stand-in", "input_sha256": ""}),
                };
                if writeln!(writer, "{reply}").is_err() {
                    break;
                }
                line.clear();
            }
        }
    });
    Ok((dir, socket))
}

pub fn run(args: &HookBenchArgs) -> Result<Exit> {
    if args.calls == 0 {
        bail!("--calls must be at least 1");
    }
    let (bench, socket, token) = if args.stand_in {
        let (dir, socket) = stand_in()?;
        (Backend::StandIn(dir), socket, "stand-in".to_string())
    } else {
        let (bench, socket, admin) = start(&args.durability)?;
        let mut control = Client::connect(&socket, Duration::from_secs(10))?;
        let session = control
            .open_session(admin.trim(), "bench", "/", "", SessionMode::Gate)
            .context("cannot open a bench session")?;
        (Backend::Daemon(bench), socket, session.token)
    };
    let exe = std::env::current_exe().context("cannot find the agp executable")?;

    let mut samples = Vec::with_capacity(args.calls);
    for i in 0..args.warmup + args.calls {
        let event = json!({
            "hook_event_name": "PreToolUse", "tool_name": "Bash", "cwd": "/",
            "tool_input": {"command": "true"}, "tool_use_id": format!("bench-{i}"),
        })
        .to_string();
        let began = Instant::now();
        let mut child = Command::new(&exe)
            .args(["hook", "--harness", "claude-code"])
            .env_clear()
            .env("AGP_GATEWAY_SOCKET", &socket)
            .env("AGP_SESSION_TOKEN", &token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start agp hook")?;
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(event.as_bytes())?;
        let out = child.wait_with_output()?;
        let took = began.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("\"permissionDecision\":\"allow\"") {
            bail!(
                "agp hook did not allow the bench call ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if i >= args.warmup {
            samples.push(took);
        }
    }
    drop(bench);
    samples.sort();
    let f = Figures {
        calls: args.calls,
        backend: if args.stand_in {
            "stand-in".into()
        } else {
            format!("daemon ({} durability)", args.durability)
        },
        p50_ms: percentile(&samples, 0.50),
        p99_ms: percentile(&samples, 0.99),
        max_ms: percentile(&samples, 1.0),
        target_p50_ms: TARGET_P50_MS,
        target_p99_ms: TARGET_P99_MS,
        met: false,
    };
    let f = Figures {
        met: f.p50_ms <= TARGET_P50_MS && f.p99_ms <= TARGET_P99_MS,
        ..f
    };
    let text = |f: &Figures| {
        println!(
            "agp hook, process start to decision printed (allow path, {}), {} calls:",
            f.backend, f.calls
        );
        println!(
            "  p50 {:.2} ms (target <= {TARGET_P50_MS} ms) {}",
            f.p50_ms,
            mark(f.p50_ms <= TARGET_P50_MS)
        );
        println!(
            "  p99 {:.2} ms (target <= {TARGET_P99_MS} ms) {}",
            f.p99_ms,
            mark(f.p99_ms <= TARGET_P99_MS)
        );
        println!("  max {:.2} ms", f.max_ms);
    };
    report(args.json, &f, serde_json::to_string, text, f.met)
}
