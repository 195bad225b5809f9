//! `agp bench sandbox --provider docker`: what the container provider costs. Session start
//! (container create, start and the checks on it; the preflight is timed apart, once) and
//! per-call exec latency, next to bubblewrap's per-call figure measured the same way.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{ExecRequest, SandboxProvider, SandboxSpec};
use agp_sandbox::docker::{image, DockerProvider, Engine, ImageRef, Runtime};
use agp_sandbox::BubblewrapProvider;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::report;
use super::sandbox::{ms, percentile, time_calls, SandboxBenchArgs, Scratch, PROGRAM};
use crate::app::config::Config;
use crate::exit::Exit;
use crate::home::Home;

/// Per-call exec p50 targets (issue 12).
const TARGET_EXEC_RUNC_MS: f64 = 60.0;
const TARGET_EXEC_RUNSC_MS: f64 = 120.0;
/// Session start p50 target.
const TARGET_START_MS: f64 = 600.0;

#[derive(Debug, Serialize)]
struct Figures {
    provider: &'static str,
    runtime: &'static str,
    image: String,
    engine: String,
    program: &'static str,
    sessions: usize,
    session_start_p50_ms: f64,
    session_start_p99_ms: f64,
    preflight_ms: f64,
    /// How a call is shown to have left nothing: `host cgroup` or `watcher` (one exec per
    /// clean call), else `reaper exec` (a second exec per call).
    leftover_check: &'static str,
    calls: usize,
    exec_p50_ms: f64,
    exec_p99_ms: f64,
    exec_min_ms: f64,
    exec_max_ms: f64,
    /// Bubblewrap's per-call p50 on this machine (same program), when bubblewrap runs here.
    bubblewrap_p50_ms: Option<f64>,
    target_exec_p50_ms: f64,
    target_session_start_p50_ms: f64,
    exec_target_met: bool,
    start_target_met: bool,
}

/// The engine and image: the flags, else `[sandbox.docker]` of this home's config.toml, else
/// DOCKER_HOST (and no image: a clear error).
fn provider(home: &Home, args: &SandboxBenchArgs) -> Result<(DockerProvider, Runtime)> {
    let config = if home.config().is_file() {
        Some(Config::load(home)?)
    } else {
        None
    };
    let section = config.as_ref().map(|c| &c.sandbox.docker);
    let engine = match (&args.socket, &config) {
        (Some(socket), _) => Engine::at(socket).map_err(|e| anyhow!("{e}"))?,
        (None, Some(config)) => config.docker_engine()?,
        (None, None) => Engine::from_env().map_err(|e| anyhow!("{e}"))?,
    };
    let runtime: Runtime = args
        .runtime
        .as_deref()
        .or_else(|| section.and_then(|s| s.runtime.as_deref()))
        .unwrap_or("runc")
        .parse()
        .map_err(|e| anyhow!("{e}"))?;
    let Some(image) = args
        .image
        .clone()
        .or_else(|| section.and_then(|s| s.image.clone()))
    else {
        bail!(
            "no image to bench: pass --image NAME@sha256:<id> or set [sandbox.docker] image in \
             {} (`agp sandbox image build` builds one and prints it)",
            home.config().display()
        );
    };
    let image: ImageRef = image.parse().map_err(|e| anyhow!("{e}"))?;
    let provider = DockerProvider::new(engine, image, runtime).protect(home.root());
    provider
        .check_engine()
        .map_err(|e| anyhow!("{e} (start the engine and point DOCKER_HOST or --socket at it)"))?;
    Ok((provider, runtime))
}

/// A scratch repository the container may run as: owned by the image's non-root account when
/// agp runs as root.
fn scratch() -> Result<Scratch> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("agp-bench-docker-{}", std::process::id()));
    std::fs::create_dir(&dir)
        .with_context(|| format!("creating scratch repository {}", dir.display()))?;
    let scratch = Scratch(dir);
    // The provider never runs a container as root, so a root-owned repository is refused.
    if std::fs::metadata(&scratch.0)?.uid() == 0 {
        std::os::unix::fs::chown(
            &scratch.0,
            Some(image::DEFAULT_IMAGE_UID),
            Some(image::DEFAULT_IMAGE_UID),
        )
        .with_context(|| format!("chown {}", scratch.0.display()))?;
    }
    Ok(scratch)
}

fn request(repo: PathBuf) -> ExecRequest {
    ExecRequest {
        argv: vec![PROGRAM.into()],
        cwd: repo,
        stdin: None,
        timeout: Duration::from_secs(30),
    }
}

/// Bubblewrap's per-call p50 on this machine, or `None` when it does not run here.
fn bubblewrap_p50(args: &SandboxBenchArgs) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("agp-bench-bwrap-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    let scratch = Scratch(dir);
    let provider = BubblewrapProvider::new();
    let session = provider
        .spawn(&SandboxSpec::new("bench", &scratch.0))
        .ok()?;
    let req = request(session.repo().to_path_buf());
    let samples = time_calls(&provider, &session, &req, args.warmup, args.spawns).ok();
    let _ = provider.teardown(session);
    samples.map(|s| ms(percentile(&s, 50.0)))
}

pub fn run(home: &Home, args: &SandboxBenchArgs) -> Result<Exit> {
    if args.spawns == 0 || args.sessions == 0 {
        bail!("--spawns and --sessions must be at least 1");
    }
    let (provider, runtime) = provider(home, args)?;
    let scratch = scratch()?;
    let spec = SandboxSpec::new("bench", &scratch.0);

    // Session start: create, start and verify, then teardown (not timed).
    let mut starts = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let t = Instant::now();
        let session = provider
            .spawn(&spec)
            .context("starting a container session")?;
        starts.push(t.elapsed());
        provider.teardown(session).context("removing the session")?;
    }
    starts.sort();

    let session = provider
        .spawn(&spec)
        .context("starting a container session")?;
    let t = Instant::now();
    provider
        .preflight(&session)
        .context("container preflight")?;
    let preflight = t.elapsed();
    let image_id = session.image_id().to_string();
    let leftover_check = if session.host_checked() {
        "host cgroup"
    } else if session.watched() {
        "watcher"
    } else {
        "reaper exec"
    };
    let calls = time_calls(
        &provider,
        &session,
        &request(session.repo().to_path_buf()),
        args.warmup,
        args.spawns,
    );
    provider.teardown(session).context("removing the session")?;
    let calls = calls?;

    let target_exec = match runtime {
        Runtime::Runc => TARGET_EXEC_RUNC_MS,
        Runtime::Runsc => TARGET_EXEC_RUNSC_MS,
    };
    let exec_p50 = ms(percentile(&calls, 50.0));
    let start_p50 = ms(percentile(&starts, 50.0));
    let figures = Figures {
        provider: "docker",
        runtime: runtime.name(),
        image: image_id,
        engine: provider.engine().socket().display().to_string(),
        program: PROGRAM,
        sessions: starts.len(),
        session_start_p50_ms: start_p50,
        session_start_p99_ms: ms(percentile(&starts, 99.0)),
        preflight_ms: ms(preflight),
        leftover_check,
        calls: calls.len(),
        exec_p50_ms: exec_p50,
        exec_p99_ms: ms(percentile(&calls, 99.0)),
        exec_min_ms: ms(calls[0]),
        exec_max_ms: ms(calls[calls.len() - 1]),
        bubblewrap_p50_ms: bubblewrap_p50(args),
        target_exec_p50_ms: target_exec,
        target_session_start_p50_ms: TARGET_START_MS,
        exec_target_met: exec_p50 <= target_exec,
        start_target_met: start_p50 <= TARGET_START_MS,
    };
    let met = figures.exec_target_met && figures.start_target_met;
    let text = |f: &Figures| {
        println!(
            "container sandbox (docker, runtime {}, image {}) at {}:",
            f.runtime, f.image, f.engine
        );
        println!(
            "  session start ({} sessions): p50 {:.1} ms   p99 {:.1} ms   target p50 <= {} ms {}",
            f.sessions,
            f.session_start_p50_ms,
            f.session_start_p99_ms,
            f.target_session_start_p50_ms,
            super::mark(f.start_target_met)
        );
        println!(
            "  preflight (once, not in session start): {:.1} ms",
            f.preflight_ms
        );
        println!(
            "  per-call exec ({PROGRAM}, {} calls after {} warm-up, leftovers checked by {}): \
             p50 {:.1} ms   p99 {:.1} ms   min {:.1} ms   max {:.1} ms   target p50 <= {} ms {}",
            f.calls,
            args.warmup,
            f.leftover_check,
            f.exec_p50_ms,
            f.exec_p99_ms,
            f.exec_min_ms,
            f.exec_max_ms,
            f.target_exec_p50_ms,
            super::mark(f.exec_target_met)
        );
        match f.bubblewrap_p50_ms {
            Some(p50) => println!("  bubblewrap per-call p50 here: {p50:.1} ms"),
            None => println!("  bubblewrap per-call: does not run here"),
        }
    };
    report(args.json, &figures, serde_json::to_string, text, met)
}
