//! `agp run`: one governed session with an in-process daemon.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest, BoxFuture, ChannelError};

use agp_daemon::SessionParams;
use agp_gateway::{Client, SessionMode};
use agp_intendants::{RunReport, Script, ScriptedIntendant};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::app::assemble::{assemble, init_logging, runtime, warn_if_unsandboxed};
use crate::app::config::Config;
use crate::app::local::LocalDaemon;
use crate::cmd::daemon::GovernArgs;
use crate::cmd::interrupt::{Interrupts, INTERRUPTED};
use crate::cmd::mode_report::{self, ModeTally};
use crate::cmd::run_report::{base_summary, finish, verify, Out, Ran, LEGEND};
use crate::exit::Exit;
use crate::home::Home;

/// How much longer than the approval (or execution) timeout the intendant waits for an answer,
/// so a slow human turns into the daemon's journaled timeout, never into a client-side error.
const REPLY_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IntendantChoice {
    /// A script of tool calls (YAML or JSON), sent through the gateway as an agent would.
    Scripted,
    /// Claude Code, run inside agp's sandbox with agp's hooks.
    ClaudeCode,
    /// OpenAI Codex, run inside agp's sandbox with agp's hooks.
    Codex,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which agent to govern.
    #[arg(long, value_enum, default_value = "scripted")]
    pub intendant: IntendantChoice,
    /// The script of tool calls (scripted intendant) [default: the embedded demo, which runs
    /// only on a fresh copy of its own demo repository].
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// The repository the agent works in (read-write inside the sandbox). Required with --script
    /// and for a live agent; without either, the embedded demo runs on a fresh copy of its own.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// What the agent is asked to do (journaled with the session).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub task: String,
    /// Give a live agent (claude-code, codex) the terminal instead of running it headless.
    #[arg(long)]
    pub interactive: bool,
    /// Keep the embedded demo's fresh repository copy after the run (it is removed otherwise).
    #[arg(long)]
    pub keep_demo_repo: bool,
    /// Print the run's summary as one JSON document on stdout (progress lines go to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub govern: GovernArgs,
}

pub fn run(home: &Home, args: &RunArgs) -> Result<Exit> {
    let live = match args.intendant {
        IntendantChoice::Scripted => None,
        IntendantChoice::ClaudeCode => Some(crate::cmd::run_agent::LiveAgent::ClaudeCode),
        IntendantChoice::Codex => Some(crate::cmd::run_agent::LiveAgent::Codex),
    };
    if let Some(agent) = live {
        let repo = args
            .repo
            .as_deref()
            .context("--repo is required for a live agent: the repository it works in")?;
        return crate::cmd::run_agent::run(
            home,
            &crate::cmd::run_agent::AgentRunArgs {
                agent,
                repo,
                task: &args.task,
                interactive: args.interactive,
                govern: &args.govern,
                json: args.json,
            },
        );
    }
    // Checked before anything is written, so a home that is not ready leaves no demo copy behind.
    home.require_initialized()?;
    let mut demo_copy = None;
    let (script, repo_arg) = match (&args.script, &args.repo) {
        (Some(path), Some(repo)) => {
            let script = Script::load(path)
                .with_context(|| format!("cannot use script {}", path.display()))?;
            (script, repo.clone())
        }
        (Some(_), None) => {
            bail!("--repo is required with --script: the repository the script works in")
        }
        (None, Some(repo)) => bail!(
            "--repo {} needs --script FILE (your calls) or a live agent (--intendant \
             claude-code|codex): without them agp would run the embedded demo, which edits and \
             deletes files, on that repository; drop --repo to run the demo on a fresh copy",
            repo.display()
        ),
        (None, None) => {
            let script = agp_intendants::demo::script().context("the embedded demo script")?;
            let copy = fresh_demo_repo(args.json)?;
            let repo = copy.path().to_path_buf();
            demo_copy = Some(copy);
            (script, repo)
        }
    };
    let repo = std::fs::canonicalize(&repo_arg)
        .with_context(|| format!("repository {}", repo_arg.display()))?;
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    let intendant = ScriptedIntendant::new(script, user_home);

    let out = Out { json: args.json };
    let ran = match running_daemon(home)? {
        Some(running) => run_on_daemon(home, args, &running, &intendant, &repo, out),
        None => Config::load(home)
            .and_then(|config| run_in_process(home, &config, args, &intendant, &repo, out)),
    };
    let kept = demo_copy.map(|copy| keep_or_remove(copy, args.keep_demo_repo, out));
    let mut ran = ran?;
    if let Some(summary) = ran.summary.as_mut() {
        summary["demo_repo_kept"] = serde_json::json!(kept);
        if out.json {
            println!("{}", serde_json::to_string_pretty(summary)?);
        }
    }
    Ok(ran.exit)
}

/// A terminal channel that asks for approvals but keeps its notes (projections) to itself.
struct PromptsOnly(Arc<dyn ApprovalChannel>);

impl ApprovalChannel for PromptsOnly {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        self.0.request_approval(request)
    }

    fn project<'a>(
        &'a self,
        _: Option<&'a str>,
        _: &'a agp_contracts::events::Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }
}

fn run_in_process(
    home: &Home,
    config: &Config,
    args: &RunArgs,
    intendant: &ScriptedIntendant,
    repo: &Path,
    out: Out,
) -> Result<Ran> {
    init_logging("agp_daemon=warn");
    let rt = runtime()?;
    let mut assembly = assemble(home, config, &args.govern, &rt)?;
    // This daemon and its session die with this process.
    assembly.config.ephemeral = true;
    if assembly.channel != "slack" {
        // The intendant prints every call and its outcome on this terminal already; the
        // channel's own notes would repeat each denial, out of order with those lines.
        assembly.parts.channel = Arc::new(PromptsOnly(assembly.parts.channel));
    }
    warn_if_unsandboxed(assembly.sandbox);
    // Each answer is either a verdict (after at most the approval timeout) or a sandboxed
    // result (after at most the exec timeout).
    let reply_timeout = assembly
        .config
        .approval_timeout
        .max(assembly.config.exec_timeout)
        + REPLY_MARGIN;
    let journal_dir = home.journal_dir();
    let verifier = home.verifier_key();
    let intendant = intendant.clone();
    let repo = repo.to_path_buf();

    let outcome = rt.block_on(async {
        let mut interrupts = Interrupts::install()?;
        let (daemon, session) = LocalDaemon::start_session(
            assembly.config,
            assembly.parts,
            SessionParams {
                intendant: "scripted".into(),
                repo: repo.clone(),
                task: args.task.clone(),
                mode: SessionMode::ProxyExec,
            },
            None,
        )
        .await?;
        let socket = daemon.socket().to_path_buf();
        out.line(&format!(
            "agp: session {} · intendant scripted · repo {} · sandbox {} · approvals via {}",
            session.id,
            repo.display(),
            assembly.sandbox,
            assembly.channel
        ));
        if let Some(warning) = mode_report::banner(assembly.mode) {
            out.line(&warning);
        }
        out.line(LEGEND);
        let id = session.id.clone();
        let token = session.token.clone();
        let repo_for_agent = repo.clone();
        // The intendant is a blocking gateway client, exactly as a real agent's hook would be.
        let driven = tokio::task::spawn_blocking(move || {
            drive(
                &socket,
                &token,
                reply_timeout,
                &intendant,
                &repo_for_agent,
                out,
            )
        });
        // A signal that is already there wins over a run that just finished.
        let (status, report) = tokio::select! {
            biased;
            signal = interrupts.recv() => {
                // The intendant thread is left blocked on its call; ending the session settles
                // that call's pending approval and stopping the runtime closes its connection.
                daemon.end_session(&id, INTERRUPTED).await;
                crate::cmd::interrupt::report(&home.agp(), signal, &id);
                (INTERRUPTED, None)
            }
            // The kill switch: the daemon has ended the session already (its running command
            // killed, its approvals cancelled); the intendant is left to its refused call.
            () = daemon.stop_requested(&id) => {
                eprintln!(
                    "agp: session {id} was stopped; timeline: `{} sessions show {id}`",
                    home.agp()
                );
                (agp_daemon::STOPPED, None)
            }
            joined = driven => {
                let report = joined.context("the intendant thread failed")?;
                // Ends the session even when the intendant's connection broke.
                let status = match &report {
                    Ok(r) if r.failure().is_none() => "completed",
                    _ => "failed",
                };
                (status, Some(report))
            }
        };
        daemon.end_session(&id, status).await;
        daemon.stop().await;
        anyhow::Ok((id, report, status))
    });
    // Bounded: an intendant thread still blocked on an interrupted call must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(2));
    // The writer holds the journal lock and flushes its last checkpoint when the last handle
    // goes; by now the daemon and its parts are gone.
    drop(assembly.policy_watch);
    crate::app::assemble::close_and_witness(&assembly.journal, assembly.witness);
    drop(assembly.journal);
    let (session, report, status) = outcome?;
    let Some(report) = report else {
        let mut summary = base_summary(&session, &repo, status);
        summary["journal"] = verify(&journal_dir, &verifier, Out { json: true });
        return Ok(Ran {
            exit: Exit::CannotRun,
            summary: Some(summary),
        });
    };
    let report = report?;
    Ok(finish(
        &home.agp(),
        &crate::cmd::sessions::session_flags(home, &session),
        &session,
        &repo,
        &report,
        &journal_dir,
        &verifier,
        &session_mode(home, &session),
        out,
    ))
}

/// The session's policy mode and unenforced calls, from its journal.
fn session_mode(home: &Home, session: &str) -> ModeTally {
    crate::cmd::sessions::session_entries(home, session)
        .map(|entries| ModeTally::of(&entries))
        .unwrap_or_default()
}

/// A fresh copy of the embedded demo repository in the system temp dir (never inside the agp
/// home, which the policy protects). Removed after the run unless `--keep-demo-repo`.
fn fresh_demo_repo(json: bool) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("agp-demo-repo-")
        .tempdir()
        .context("cannot create a directory for the demo repository")?;
    agp_intendants::demo::materialize_repo(dir.path()).with_context(|| {
        format!(
            "cannot write the demo repository to {}",
            dir.path().display()
        )
    })?;
    Out { json }.line(&format!(
        "agp: embedded demo on a fresh copy of the demo repository: {}",
        dir.path().display()
    ));
    Ok(dir)
}

/// Removes the demo copy, or keeps it and says where; returns whether it was kept.
fn keep_or_remove(copy: tempfile::TempDir, keep: bool, out: Out) -> bool {
    if keep {
        let path = copy.keep();
        out.line(&format!(
            "agp: kept the demo repository at {}",
            path.display()
        ));
        return true;
    }
    let path = copy.path().to_path_buf();
    if let Err(e) = copy.close() {
        eprintln!(
            "agp: warning: cannot remove the demo repository {}: {e}",
            path.display()
        );
    }
    false
}

fn drive(
    socket: &Path,
    token: &str,
    reply_timeout: Duration,
    intendant: &ScriptedIntendant,
    repo: &Path,
    out: Out,
) -> Result<RunReport> {
    let mut client = Client::connect(socket, reply_timeout).context("cannot reach the gateway")?;
    client.hello(token).context("gateway refused the session")?;
    let report = intendant.run(&mut client, repo, |call| out.line(&call.line()));
    Ok(report)
}

/// An `agp daemon` serving this home: its socket and admin token.
pub(crate) struct RunningDaemon {
    pub(crate) socket: PathBuf,
    pub(crate) admin_token: String,
}

/// Finds a live daemon for `home` (its socket accepts a connection).
pub(crate) fn running_daemon(home: &Home) -> Result<Option<RunningDaemon>> {
    let socket = home.gateway_socket();
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        return Ok(None);
    }
    let token_path = home.admin_token();
    let admin_token = std::fs::read_to_string(&token_path).with_context(|| {
        format!(
            "an agp daemon is serving {} but its admin token {} is unreadable",
            socket.display(),
            token_path.display()
        )
    })?;
    Ok(Some(RunningDaemon {
        socket,
        admin_token: admin_token.trim().to_owned(),
    }))
}

/// Runs the script as a session of the `agp daemon` already serving this home: its policy,
/// approval channel and sandbox apply.
fn run_on_daemon(
    home: &Home,
    args: &RunArgs,
    daemon: &RunningDaemon,
    intendant: &ScriptedIntendant,
    repo: &Path,
    out: Out,
) -> Result<Ran> {
    let g = &args.govern;
    if g.policy.is_some()
        || g.sandbox.is_some()
        || g.auto_approve
        || g.approver_script.is_some()
        || g.approval_channel.is_some()
        || g.durability.is_some()
        || g.mode.is_some()
    {
        bail!(
            "an agp daemon is already serving this home ({}): its own policy, mode, approvals \
             and sandbox apply; drop --policy/--mode/--sandbox/--auto-approve/\
             --approver-script/--approval-channel/--durability (and AGP_APPROVAL_CHANNEL), or \
             stop the daemon to run with them",
            daemon.socket.display()
        );
    }
    // Its error names the daemon and the socket already.
    let mut control = Client::connect(&daemon.socket, Duration::from_secs(30))?;
    let opened = control
        .open_session(
            &daemon.admin_token,
            "scripted",
            &repo.to_string_lossy(),
            &args.task,
            SessionMode::ProxyExec,
        )
        .context("the agp daemon refused the session")?;
    out.line(&format!(
        "agp: session {} · intendant scripted · repo {} · on the running agp daemon ({})",
        opened.session,
        repo.display(),
        daemon.socket.display()
    ));
    // The daemon's mode is its own: its session.started (durable by now) names it.
    let started = session_mode(home, &opened.session);
    if let Some(warning) = started.mode.and_then(mode_report::banner) {
        out.line(&warning);
    }
    out.line(LEGEND);
    // The daemon's approval timeout is its own (flag or config); wait for the longest it
    // could take.
    let approval = match g.approval_timeout {
        Some(secs) => Duration::from_secs(secs),
        None => Config::load(home)?.approval_timeout(),
    };
    let reply_timeout = approval.max(Duration::from_secs(120)) + REPLY_MARGIN;
    let mut client =
        Client::connect(&daemon.socket, reply_timeout).context("cannot reach the gateway")?;
    client
        .hello(&opened.token)
        .context("gateway refused the session")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (intendant, run_repo) = (intendant.clone(), repo.to_path_buf());
    // The intendant blocks on its calls; a signal meanwhile must still end the session.
    std::thread::spawn(move || {
        let report = intendant.run(&mut client, &run_repo, |call| out.line(&call.line()));
        let _ = done_tx.send(report);
    });
    let finished = rt.block_on(async {
        let mut interrupts = Interrupts::install()?;
        tokio::select! {
            biased;
            signal = interrupts.recv() => Ok(Err(signal)),
            report = done_rx => report.context("the intendant thread failed").map(Ok),
        }
    })?;
    let status = match &finished {
        Ok(report) if report.failure().is_none() => "completed",
        Ok(_) => "failed",
        Err(_) => INTERRUPTED,
    };
    // A failed call closed that connection: end the session on a fresh one. The daemon cancels
    // and journals the session's pending approvals as it ends it.
    let ended = Client::connect(&daemon.socket, Duration::from_secs(30)).and_then(|mut c| {
        c.hello(&opened.token)?;
        c.end_session(Some(status))
    });
    if let Err(e) = ended {
        eprintln!("agp: error: cannot end session {}: {e}", opened.session);
    }
    let journal_dir = home.journal_dir();
    let verifier = home.verifier_key();
    match finished {
        Ok(report) => Ok(finish(
            &home.agp(),
            &crate::cmd::sessions::session_flags(home, &opened.session),
            &opened.session,
            repo,
            &report,
            &journal_dir,
            &verifier,
            &session_mode(home, &opened.session),
            out,
        )),
        Err(signal) => {
            crate::cmd::interrupt::report(&home.agp(), signal, &opened.session);
            let mut summary = base_summary(&opened.session, repo, INTERRUPTED);
            summary["journal"] = verify(&journal_dir, &verifier, Out { json: true });
            Ok(Ran {
                exit: Exit::CannotRun,
                summary: Some(summary),
            })
        }
    }
}
