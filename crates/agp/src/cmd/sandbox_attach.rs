//! `agp sandbox attach` (hidden): runs on the HOST as the child `agp run` holds for an agent
//! inside a session container. It starts an exec the launcher created (`DockerProvider::
//! create_exec`), relays stdin, stdout and stderr, and exits with the command's status.
//!
//! The Engine API cannot signal an exec, and a closed attach connection does not end one; so
//! when this process is told to stop (SIGTERM, SIGINT, SIGHUP, or its parent dying, which the
//! kernel turns into a SIGTERM here) it removes the session container, which ends every
//! process in it. A SIGKILL cannot be caught: the launcher removes the container after it.
//!
//! With `--tty` (an interactive agent, a person at agp's terminal) the exec has a terminal
//! inside: this process puts its own terminal in raw mode so every key reaches the one inside,
//! passes the window size on at start and on every SIGWINCH, and puts the terminal back on
//! every way out, a stop signal included (the launcher puts it back too, after a SIGKILL).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use agp_sandbox::docker::{self, Engine};
use anyhow::{anyhow, Context, Result};
use clap::Args;
use rustix::process::Signal;

use crate::cmd::terminal_mode;
use crate::exit::Exit;

/// Set once a stop signal came: the exit is the signal watch's (after removing the container).
static STOPPING: AtomicBool = AtomicBool::new(false);

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
    /// The exec has a terminal (created so): relay this process's terminal to it, raw.
    #[arg(long, conflicts_with = "stdin")]
    pub tty: bool,
}

pub fn run(args: &AttachArgs) -> Result<Exit> {
    let parent = rustix::process::getppid();
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .context("cannot ask to be stopped with the launcher")?;
    let engine = Engine::at(&args.socket).map_err(|e| anyhow!("{e}"))?;
    let container = docker::exec_container(&engine, &args.exec).map_err(|e| anyhow!("{e}"))?;
    let saved = if args.tty {
        Some(
            terminal_mode::Saved::of_stdin()
                .context("agp sandbox attach --tty needs a terminal on stdin")?,
        )
    } else {
        None
    };
    // The watch knows the settings before they change: a stop signal from here on puts them
    // back.
    let terminal = saved.clone().map(|s| (s, args.exec.clone()));
    watch_signals(engine.clone(), container.clone(), terminal)?;
    let raw = saved.map(terminal_mode::Raw::enter).transpose()?;
    // The launcher died before the death signal was armed: nothing will wait for the agent.
    if rustix::process::getppid() != parent {
        let _ = docker::remove_container(&engine, &container);
        return Ok(Exit::CannotRun);
    }
    let code = if raw.is_some() {
        docker::attach_terminal(
            &engine,
            &args.exec,
            Box::new(std::io::stdin()),
            &mut std::io::stdout().lock(),
            terminal_mode::window_size(),
        )
    } else {
        let input: Option<Box<dyn std::io::Read + Send>> = if args.stdin {
            Some(Box::new(std::io::stdin()))
        } else {
            None
        };
        docker::attach(
            &engine,
            &args.exec,
            input,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        )
    }
    .map_err(|e| anyhow!("{e}"));
    if STOPPING.load(Ordering::SeqCst) {
        // The stream ended because a stop signal's removal of the container is under way:
        // the signal watch exits as signalled once the container is gone.
        loop {
            std::thread::park();
        }
    }
    let code = code?;
    // `exit` runs no destructors: the terminal is put back first.
    drop(raw);
    // The command's own status, as a child's would be: 0-255, or 128 when none is known.
    std::process::exit(code.unwrap_or(128));
}

/// On a stop signal: put the terminal back, remove the container (ending the command), then
/// exit as signalled. With a terminal (`terminal`: its saved settings and the exec), each
/// window change is passed on to the exec.
fn watch_signals(
    engine: Engine,
    container: String,
    terminal: Option<(terminal_mode::Saved, String)>,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot watch for signals")?;
    let (mut term, mut int, mut hup, mut winch) = {
        let _guard = runtime.enter();
        (
            signal(SignalKind::terminate()).context("cannot watch for signals")?,
            signal(SignalKind::interrupt()).context("cannot watch for signals")?,
            signal(SignalKind::hangup()).context("cannot watch for signals")?,
            match terminal {
                Some(_) => {
                    Some(signal(SignalKind::window_change()).context("cannot watch for signals")?)
                }
                None => None,
            },
        )
    };
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let number = loop {
                tokio::select! {
                    _ = term.recv() => break 15,
                    _ = int.recv() => break 2,
                    _ = hup.recv() => break 1,
                    () = resized(&mut winch) => {
                        if let (Some((_, exec)), Some((rows, cols))) =
                            (&terminal, terminal_mode::window_size())
                        {
                            // A refused resize leaves the old size; the next change tries again.
                            let _ = docker::resize_exec(&engine, exec, rows, cols);
                        }
                    }
                }
            };
            STOPPING.store(true, Ordering::SeqCst);
            if let Some((saved, _)) = &terminal {
                saved.restore();
            }
            let _ = docker::remove_container(&engine, &container);
            std::process::exit(128 + number);
        });
    });
    Ok(())
}

/// Resolves at the next window change; never without a terminal.
async fn resized(winch: &mut Option<tokio::signal::unix::Signal>) {
    match winch {
        Some(w) => {
            w.recv().await;
        }
        None => std::future::pending().await,
    }
}
