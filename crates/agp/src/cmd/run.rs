//! `agp run`: one governed session with an in-process daemon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agp_daemon::{Daemon, SessionParams};
use agp_gateway::{Client, SessionMode};
use agp_intendants::{RunReport, Script, ScriptedIntendant};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use crate::cmd::daemon::{assemble, runtime, warn_if_unsandboxed, GovernArgs};
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
    /// The script of tool calls (scripted intendant) [default: the embedded demo, which runs on
    /// a fresh copy of the demo repository unless --repo is given].
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// The repository the agent works in (read-write inside the sandbox). Required except for
    /// the embedded demo.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// What the agent is asked to do (journaled with the session).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub task: String,
    /// Give a live agent (claude-code, codex) the terminal instead of running it headless.
    #[arg(long)]
    pub interactive: bool,
    #[command(flatten)]
    pub govern: GovernArgs,
}

pub fn run(home: &Home, args: RunArgs) -> Result<Exit> {
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
            crate::cmd::run_agent::AgentRunArgs {
                agent,
                repo,
                task: &args.task,
                interactive: args.interactive,
                govern: &args.govern,
            },
        );
    }
    // Checked before anything is written, so a home that is not ready leaves no demo copy behind.
    home.require_initialized()?;
    let (script, repo_arg) = match (&args.script, &args.repo) {
        (Some(path), Some(repo)) => {
            let script = Script::load(path)
                .with_context(|| format!("cannot use script {}", path.display()))?;
            (script, repo.clone())
        }
        (Some(_), None) => {
            bail!("--repo is required with --script: the repository the script works in")
        }
        (None, repo) => {
            let script = agp_intendants::demo::script().context("the embedded demo script")?;
            let repo = match repo {
                Some(repo) => repo.clone(),
                None => fresh_demo_repo()?,
            };
            (script, repo)
        }
    };
    let repo = std::fs::canonicalize(&repo_arg)
        .with_context(|| format!("repository {}", repo_arg.display()))?;
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let intendant = ScriptedIntendant::new(script, user_home);

    if let Some(running) = running_daemon(home)? {
        return run_on_daemon(home, &args, &running, &intendant, &repo);
    }

    crate::cmd::daemon::init_logging("agp_daemon=warn");
    let rt = runtime()?;
    let assembly = assemble(home, &args.govern, &rt)?;
    warn_if_unsandboxed(assembly.sandbox);
    // Each answer is either a verdict (after at most the approval timeout) or a sandboxed
    // result (after at most the exec timeout).
    let reply_timeout = assembly
        .config
        .approval_timeout
        .max(assembly.config.exec_timeout)
        + REPLY_MARGIN;
    let journal_dir = home.journal_dir();
    let verifier = home.keys_dir().join(agp_journal::keys::VERIFIER_FILE);

    let outcome = rt.block_on(async {
        let daemon = Daemon::start(assembly.config, assembly.parts)
            .await
            .context("cannot start the agp daemon")?;
        let socket = daemon.socket_path().to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(daemon.clone().serve(async move {
            let _ = stopped.await;
        }));
        let session = daemon
            .open_session(SessionParams {
                intendant: "scripted".into(),
                repo: repo.clone(),
                task: args.task.clone(),
                mode: SessionMode::ProxyExec,
            })
            .await;
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                let _ = stop.send(());
                let _ = served.await;
                return Err(anyhow::Error::new(e).context("cannot start the session"));
            }
        };
        println!(
            "agp: session {} · intendant scripted · repo {} · sandbox {} · approvals via {}",
            session.id,
            repo.display(),
            assembly.sandbox,
            assembly.channel
        );
        let id = session.id.clone();
        let token = session.token.clone();
        let repo_for_agent = repo.clone();
        // The intendant is a blocking gateway client, exactly as a real agent's hook would be.
        let report = tokio::task::spawn_blocking(move || {
            drive(&socket, &token, reply_timeout, &intendant, &repo_for_agent)
        })
        .await
        .context("the intendant thread failed")?;
        // Ends the session even when the intendant's connection broke.
        let status = match &report {
            Ok(r) if r.failure().is_none() => "completed",
            _ => "failed",
        };
        if let Err(e) = daemon.end_session(&id, status).await {
            eprintln!("agp: error: cannot end session {id}: {e}");
        }
        let _ = stop.send(());
        let _ = served.await;
        anyhow::Ok((id, report))
    });
    drop(rt);
    // The writer holds the journal lock and flushes its last checkpoint when the last handle
    // goes; by now the daemon and its parts are gone.
    drop(assembly.journal);
    let (session, report) = outcome?;
    let report = report?;

    summarize(home, &session, &report);
    let verified = verify(&journal_dir, &verifier);
    let mismatches = report.mismatches().len();
    if report.failure().is_some() || mismatches > 0 || !verified {
        return Ok(Exit::Bad);
    }
    Ok(Exit::Ok)
}

/// A fresh copy of the embedded demo repository in the system temp dir (never inside the agp
/// home, which the policy protects), kept after the run so the user can look at what changed.
fn fresh_demo_repo() -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("agp-demo-repo-")
        .tempdir()
        .context("cannot create a directory for the demo repository")?
        .keep();
    agp_intendants::demo::materialize_repo(&dir)
        .with_context(|| format!("cannot write the demo repository to {}", dir.display()))?;
    println!(
        "agp: embedded demo on a fresh copy of the demo repository: {}",
        dir.display()
    );
    Ok(dir)
}

fn drive(
    socket: &Path,
    token: &str,
    reply_timeout: Duration,
    intendant: &ScriptedIntendant,
    repo: &Path,
) -> Result<RunReport> {
    let mut client = Client::connect(socket, reply_timeout).context("cannot reach the gateway")?;
    client.hello(token).context("gateway refused the session")?;
    let report = intendant.run(&mut client, repo, |call| println!("{}", call.line()));
    Ok(report)
}

fn summarize(home: &Home, session: &str, report: &RunReport) {
    let approved = report
        .calls
        .iter()
        .filter(|c| {
            matches!(
                c.outcome,
                agp_intendants::CallOutcome::Allowed {
                    approved_by: Some(_),
                    ..
                }
            )
        })
        .count();
    println!(
        "agp: session {session}: {} calls, {} allowed ({} after approval), {} denied",
        report.calls.len(),
        report.allowed(),
        approved,
        report.denied()
    );
    if let Some(failure) = report.failure() {
        println!(
            "agp: ✗ the gateway failed ({failure}); {} call(s) not sent",
            report.not_run
        );
    }
    let mismatches = report.mismatches();
    if !mismatches.is_empty() {
        println!(
            "agp: ✗ {} call(s) did not get the outcome the script expects",
            mismatches.len()
        );
    }
    // The integrity report and unlinked results, as journaled when the session ended.
    if let Ok(entries) = crate::cmd::sessions::session_entries(home, session) {
        for line in crate::cmd::sessions::flagged(&entries) {
            println!("agp: {}", agp_channels::sanitize::escape(&line));
        }
    }
}

/// Verifies the journal against the home's public key and prints one line.
fn verify(journal_dir: &Path, verifier: &Path) -> bool {
    let key = match agp_journal::keys::load_verifier_key(&verifier.to_string_lossy()) {
        Ok(k) => k,
        Err(e) => {
            println!("agp: ✗ journal not verified: {e}");
            return false;
        }
    };
    let opts = agp_journal::verify::VerifyOptions {
        trusted_key: key,
        trusted_checkpoint: None,
    };
    match agp_journal::verify::verify_dir(journal_dir, &opts) {
        Ok(r) if r.intact => {
            println!(
                "agp: ✓ journal verified: {} entries, {} sealed by a signed checkpoint",
                r.entries, r.sealed_size
            );
            true
        }
        Ok(r) => {
            let first = r
                .errors()
                .next()
                .map(|f| format!("{f:?}"))
                .unwrap_or_default();
            println!("agp: ✗ journal verification FAILED: {first}");
            false
        }
        Err(e) => {
            println!("agp: ✗ journal not verified: {e}");
            false
        }
    }
}

/// An `agp daemon` serving this home: its socket and admin token.
struct RunningDaemon {
    socket: PathBuf,
    admin_token: String,
}

/// Finds a live daemon for `home` (its socket accepts a connection).
fn running_daemon(home: &Home) -> Result<Option<RunningDaemon>> {
    let socket = home.run_dir().join("gateway.sock");
    if std::os::unix::net::UnixStream::connect(&socket).is_err() {
        return Ok(None);
    }
    let token_path = home.run_dir().join("admin.token");
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
) -> Result<Exit> {
    let g = &args.govern;
    if g.policy.is_some()
        || g.sandbox.is_some()
        || g.auto_approve
        || g.approver_script.is_some()
        || g.approval_channel.is_some()
        || g.durability.is_some()
    {
        bail!(
            "an agp daemon is already serving this home ({}): its own policy, approvals and \
             sandbox apply; drop --policy/--sandbox/--auto-approve/--approver-script/\
             --approval-channel/--durability (and AGP_APPROVAL_CHANNEL), or stop the daemon \
             to run with them",
            daemon.socket.display()
        );
    }
    let mut control = Client::connect(&daemon.socket, Duration::from_secs(30))
        .context("cannot reach the agp daemon")?;
    let opened = control
        .open_session(
            &daemon.admin_token,
            "scripted",
            &repo.to_string_lossy(),
            &args.task,
            SessionMode::ProxyExec,
        )
        .context("the agp daemon refused the session")?;
    println!(
        "agp: session {} · intendant scripted · repo {} · on the running agp daemon ({})",
        opened.session,
        repo.display(),
        daemon.socket.display()
    );
    // The daemon's approval timeout is its own (flag or config); wait for the longest it
    // could take.
    let approval = match g.approval_timeout {
        Some(secs) => Duration::from_secs(secs),
        None => crate::cmd::daemon::configured_approval_timeout(home)?,
    };
    let reply_timeout = approval.max(Duration::from_secs(120)) + REPLY_MARGIN;
    let mut client =
        Client::connect(&daemon.socket, reply_timeout).context("cannot reach the gateway")?;
    client
        .hello(&opened.token)
        .context("gateway refused the session")?;
    let report = intendant.run(&mut client, repo, |call| println!("{}", call.line()));
    let status = if report.failure().is_none() {
        "completed"
    } else {
        "failed"
    };
    // A failed call closed that connection: end the session on a fresh one.
    let ended = Client::connect(&daemon.socket, Duration::from_secs(30)).and_then(|mut c| {
        c.hello(&opened.token)?;
        c.end_session(Some(status))
    });
    if let Err(e) = ended {
        eprintln!("agp: error: cannot end session {}: {e}", opened.session);
    }
    summarize(home, &opened.session, &report);
    let verified = verify(
        &home.journal_dir(),
        &home.keys_dir().join(agp_journal::keys::VERIFIER_FILE),
    );
    if report.failure().is_some() || !report.mismatches().is_empty() || !verified {
        return Ok(Exit::Bad);
    }
    Ok(Exit::Ok)
}
