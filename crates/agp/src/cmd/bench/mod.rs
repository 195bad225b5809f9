//! `agp bench`: measure agp's speed targets on this machine.

pub mod console;
pub mod egress;
pub mod gateway;
pub mod hook;
pub mod journal;
pub mod policy;
pub mod replay;
pub mod sandbox;
mod sandbox_docker;
pub mod verify;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::exit::{Exit, EXIT_CODES_HELP};
use crate::home::Home;

#[derive(Debug, Args)]
#[command(mut_subcommands = |c| c.after_help(EXIT_CODES_HELP))]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Journal append throughput under a durability mode.
    Journal(journal::JournalBenchArgs),
    /// Offline verification throughput and memory.
    Verify(verify::VerifyBenchArgs),
    /// Policy evaluation latency (parsing included) with a large rule set.
    Policy(policy::PolicyBenchArgs),
    /// `agp policy replay` throughput: recorded calls verified, read and re-judged per second.
    Replay(replay::ReplayBenchArgs),
    /// Opening the web console on a 1,000,000-entry journal: index build rate, open time, memory.
    Console(console::ConsoleBenchArgs),
    /// Latency added per request by the egress proxy (CONNECT pass-through, terminated TLS).
    Egress(egress::EgressBenchArgs),
    /// Gateway round trips through a real daemon over a Unix socket.
    Gateway(gateway::GatewayBenchArgs),
    /// `agp hook` per-call cost: process start to decision printed, against a real daemon.
    Hook(hook::HookBenchArgs),
    /// Sandbox spawn latency (bubblewrap), or container session start and exec (docker).
    Sandbox(sandbox::SandboxBenchArgs),
}

pub fn run(home: &Home, args: BenchArgs) -> Result<Exit> {
    match args.target {
        BenchTarget::Journal(a) => journal::run(&a),
        BenchTarget::Verify(a) => verify::run(&a),
        BenchTarget::Policy(a) => policy::run(&a),
        BenchTarget::Replay(a) => replay::run(&a),
        BenchTarget::Console(a) => console::run(&a),
        BenchTarget::Egress(a) => egress::run(&a),
        BenchTarget::Gateway(a) => gateway::run(&a),
        BenchTarget::Sandbox(a) => sandbox::run(home, &a),
        BenchTarget::Hook(a) => hook::run(&a),
    }
}

/// Prints a bench's figures, with `--json` as JSON (by `to_json`), otherwise as `text`; exits 0
/// when the targets were `met`, 1 otherwise.
fn report<F: Serialize>(
    json: bool,
    figures: &F,
    to_json: fn(&F) -> serde_json::Result<String>,
    text: impl FnOnce(&F),
    met: bool,
) -> Result<Exit> {
    if json {
        println!("{}", to_json(figures)?);
    } else {
        text(figures);
    }
    Ok(if met { Exit::Ok } else { Exit::Bad })
}

/// How a figure stands against its target in the text report.
fn mark(met: bool) -> &'static str {
    if met {
        "✓"
    } else {
        "✗"
    }
}
