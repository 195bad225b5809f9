//! `agp sandbox attach` (hidden): runs on the HOST as the child `agp run` holds for an agent
//! inside a session container. It starts an exec the launcher created (`DockerProvider::
//! create_exec`), relays stdin, stdout and stderr, and exits with the command's status.
//!
//! The Engine API cannot signal an exec, and a closed attach connection does not end one; so
//! when this process is told to stop (SIGTERM, SIGINT, SIGHUP, or its parent dying, which the
//! kernel turns into a SIGTERM here) it removes the session container, which ends every
//! process in it. A SIGKILL cannot be caught: the launcher removes the container after it.

use std::path::PathBuf;

use agp_sandbox::docker::{self, Engine};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use rustix::process::Signal;

use crate::exit::Exit;

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The container engine's API socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The exec to start (created by the launcher).
    #[arg(long, value_name = "ID")]
    pub exec: String,
    /// Forward this process's stdin to the command (the exec must have been created so).
    #[arg(long)]
    pub stdin: bool,
}

pub fn run(args: &AttachArgs) -> Result<Exit> {
    let parent = rustix::process::getppid();
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .context("cannot ask to be stopped with the launcher")?;
    let engine = Engine::at(&args.socket).map_err(|e| anyhow!("{e}"))?;
    let container = docker::exec_container(&engine, &args.exec).map_err(|e| anyhow!("{e}"))?;
    watch_signals(engine.clone(), container.clone())?;
    // The launcher died before the death signal was armed: nothing will wait for the agent.
    if rustix::process::getppid() != parent {
        let _ = docker::remove_container(&engine, &container);
        return Ok(Exit::CannotRun);
    }
    let input: Option<Box<dyn std::io::Read + Send>> = if args.stdin {
        Some(Box::new(std::io::stdin()))
    } else {
        None
    };
    let code = docker::attach(
        &engine,
        &args.exec,
        input,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    // The command's own status, as a child's would be: 0-255, or 128 when none is known.
    std::process::exit(code.unwrap_or(128));
}

/// On a stop signal: remove the container (ending the command), then exit as signalled.
fn watch_signals(engine: Engine, container: String) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot watch for signals")?;
    let (mut term, mut int, mut hup) = {
        let _guard = runtime.enter();
        (
            signal(SignalKind::terminate()).context("cannot watch for signals")?,
            signal(SignalKind::interrupt()).context("cannot watch for signals")?,
            signal(SignalKind::hangup()).context("cannot watch for signals")?,
        )
    };
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let number = tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
                _ = hup.recv() => 1,
            };
            let _ = docker::remove_container(&engine, &container);
            std::process::exit(128 + number);
        });
    });
    Ok(())
}
