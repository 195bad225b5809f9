//! `agp bench sandbox`: how long it takes to run a trivial command in a fresh bubblewrap
//! sandbox (every sandboxed tool call pays this), against the same spawn without a sandbox.
//! `--provider docker` measures the container provider instead (see `sandbox_docker`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{ExecRequest, SandboxProvider, SandboxSpec};
use agp_sandbox::BubblewrapProvider;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::report;
use crate::exit::Exit;
use crate::home::Home;

/// The speed target: median sandboxed spawn.
const TARGET_P50_MS: f64 = 20.0;
pub(super) const PROGRAM: &str = "/bin/true";

#[derive(Debug, Args)]
pub struct SandboxBenchArgs {
    /// Number of timed sandboxed spawns.
    #[arg(long, default_value_t = 200)]
    pub spawns: usize,
    /// Untimed spawns first (page cache, dynamic linker).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The sandbox to measure.
    #[arg(long, value_enum, default_value_t = BenchProvider::Bwrap)]
    pub provider: BenchProvider,
    /// docker: the OCI runtime, runc or runsc [default: [sandbox.docker] runtime, else runc].
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// docker: the pinned image `NAME@sha256:<id>` [default: [sandbox.docker] image].
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// docker: the engine's API socket [default: [sandbox.docker] socket, else DOCKER_HOST,
    /// else /var/run/docker.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// docker: number of timed session starts (container create and start).
    #[arg(long, default_value_t = 20)]
    pub sessions: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProvider {
    Bwrap,
    Docker,
}

#[derive(Debug, Serialize)]
struct Figures {
    program: &'static str,
    spawns: usize,
    p50_ms: f64,
    p99_ms: f64,
    min_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    /// The same program spawned directly, for the sandbox's own cost.
    unsandboxed_p50_ms: f64,
    preflight_ms: f64,
    target_p50_ms: f64,
    target_met: bool,
}

/// A scratch repository removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn run(home: &Home, args: &SandboxBenchArgs) -> Result<Exit> {
    if args.provider == BenchProvider::Docker {
        return super::sandbox_docker::run(home, args);
    }
    if args.runtime.is_some() || args.image.is_some() || args.socket.is_some() {
        bail!("--runtime, --image and --socket are for --provider docker");
    }
    if args.spawns == 0 {
        bail!("--spawns must be at least 1");
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("agp-bench-sandbox-{}", std::process::id())));
    std::fs::create_dir(&scratch.0)
        .with_context(|| format!("creating scratch repository {}", scratch.0.display()))?;

    let provider = BubblewrapProvider::new();
    let session = provider
        .spawn(&SandboxSpec::new("bench", &scratch.0))
        .context("starting a sandbox session")?;
    let started = Instant::now();
    provider.preflight(&session).context("sandbox preflight")?;
    let preflight = started.elapsed();

    let request = ExecRequest {
        argv: vec![PROGRAM.into()],
        cwd: session.repo().to_path_buf(),
        stdin: None,
        timeout: Duration::from_secs(30),
    };
    let samples = time_calls(&provider, &session, &request, args.warmup, args.spawns)?;

    let mut direct = Vec::with_capacity(args.spawns.min(100));
    for _ in 0..args.spawns.min(100) {
        let t = Instant::now();
        let status = Command::new(PROGRAM)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("spawning {PROGRAM}"))?;
        direct.push(t.elapsed());
        if !status.success() {
            bail!("{PROGRAM} exited {status}");
        }
    }
    direct.sort();
    provider.teardown(session).context("sandbox teardown")?;

    let p50 = ms(percentile(&samples, 50.0));
    let figures = Figures {
        program: PROGRAM,
        spawns: samples.len(),
        p50_ms: p50,
        p99_ms: ms(percentile(&samples, 99.0)),
        min_ms: ms(samples[0]),
        max_ms: ms(samples[samples.len() - 1]),
        mean_ms: ms(samples.iter().sum::<Duration>()) / samples.len() as f64,
        unsandboxed_p50_ms: ms(percentile(&direct, 50.0)),
        preflight_ms: ms(preflight),
        target_p50_ms: TARGET_P50_MS,
        target_met: p50 <= TARGET_P50_MS,
    };

    let text = |figures: &Figures| {
        println!(
            "sandbox spawn (bubblewrap, {PROGRAM}), {} runs after {} warm-up:",
            figures.spawns, args.warmup
        );
        println!(
            "  p50 {:.2} ms   p99 {:.2} ms   min {:.2} ms   max {:.2} ms   mean {:.2} ms",
            figures.p50_ms, figures.p99_ms, figures.min_ms, figures.max_ms, figures.mean_ms
        );
        println!(
            "  same program without a sandbox: p50 {:.2} ms",
            figures.unsandboxed_p50_ms
        );
        println!("  preflight: {:.1} ms", figures.preflight_ms);
        println!(
            "  target p50 <= {TARGET_P50_MS} ms: {}",
            if figures.target_met { "met" } else { "MISSED" }
        );
    };
    report(
        args.json,
        &figures,
        serde_json::to_string,
        text,
        figures.target_met,
    )
}

/// Per-call latency of `req` in `session`, sorted: `calls` timed after `warmup` untimed; a call
/// that does not exit 0 stops the bench.
pub(super) fn time_calls<P: SandboxProvider>(
    provider: &P,
    session: &P::Session,
    req: &ExecRequest,
    warmup: usize,
    calls: usize,
) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        let t = Instant::now();
        let out = provider.exec(session, req).context("sandboxed call")?;
        let elapsed = t.elapsed();
        if out.exit_code != Some(0) {
            bail!(
                "{PROGRAM} in the sandbox exited {:?}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i >= warmup {
            samples.push(elapsed);
        }
    }
    samples.sort();
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&s[..1], 99.0), Duration::from_millis(1));
    }
}
