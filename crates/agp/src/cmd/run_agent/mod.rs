//! `agp run --intendant claude-code|codex`: a real agent CLI, governed.
//!
//! One session with an in-process daemon in gate mode. The agent runs INSIDE agp's sandbox,
//! bubblewrap or (`--sandbox docker`) the session's container, the same way in either: the repository read-write, a tmpfs HOME seeded only with the user's existing login
//! (read-only), agp's hook wiring in the CLI's managed settings (read-only, the only hooks
//! allowed), and no network: the only way out is agp's egress proxy on the host side, reached
//! through a read-only bound Unix socket and an in-sandbox bridge, which lets the model API host
//! (and the domains config.toml allows) through and journals every attempt.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::{Event, IntendantVersionUntested};
use agp_contracts::intendant::{GatewayEndpoint, LaunchContext};
use agp_contracts::Journal;
use agp_daemon::SessionParams;
use agp_gateway::SessionMode;
use agp_intendants::claude_code;
use agp_intendants::codex;
use agp_intendants::install_layout::AgentKind;
use agp_intendants::live;
use agp_sandbox::BubblewrapProvider;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::app::assemble::{assemble, runtime};
use crate::app::config::Config;
use crate::app::local::LocalDaemon;
use crate::cmd::agent_binary;
use crate::cmd::agent_sandbox::AgentSandbox;
use crate::cmd::daemon::{GovernArgs, SandboxChoice};
use crate::cmd::interrupt::{Interrupts, INTERRUPTED};
use crate::exit::Exit;
use crate::home::Home;

mod inspect;
mod launch;
mod model_keys;
mod setup;

use launch::{launch, AgentProcess, HostPaths};
use setup::{adapter, check_login, policy_domains};

/// How much longer than the approval timeout the hook waits for a verdict.
const HOOK_MARGIN_SECS: u64 = 30;
/// How long a stopped agent has to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest the Codex hook proof may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables naming the agent executables (else `claude` / `codex` on PATH).
pub const ENV_CLAUDE_BIN: &str = "AGP_CLAUDE_BIN";
pub const ENV_CODEX_BIN: &str = "AGP_CODEX_BIN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveAgent {
    ClaudeCode,
    Codex,
}

impl LiveAgent {
    fn name(self) -> &'static str {
        match self {
            LiveAgent::ClaudeCode => claude_code::NAME,
            LiveAgent::Codex => codex::NAME,
        }
    }

    fn kind(self) -> AgentKind {
        match self {
            LiveAgent::ClaudeCode => AgentKind::ClaudeCode,
            LiveAgent::Codex => AgentKind::Codex,
        }
    }

    /// The variable naming its executable, the name on PATH, and how to install it.
    fn lookup(self) -> (&'static str, &'static str, &'static str) {
        match self {
            LiveAgent::ClaudeCode => (
                ENV_CLAUDE_BIN,
                "claude",
                "npm install -g @anthropic-ai/claude-code",
            ),
            LiveAgent::Codex => (ENV_CODEX_BIN, "codex", "npm install -g @openai/codex"),
        }
    }
}

/// The sandbox the agent runs in. The container provider is this home's (its containers
/// labelled so a later daemon start removes any a crash leaves); the session's own scratch
/// and gateway socket, in agp's run directory, may be bound though agp's home is protected.
fn agent_sandbox(
    home: &Home,
    config: &Config,
    choice: SandboxChoice,
    agp_exe: &Path,
) -> Result<AgentSandbox> {
    if choice != SandboxChoice::Docker {
        let provider = BubblewrapProvider::new().protect(home.root());
        provider.bwrap().map_err(|e| anyhow!("{e}"))?;
        return Ok(AgentSandbox::Bwrap(provider));
    }
    // Made now so the exposed path is the canonical one binds are checked against.
    Home::create_private_dir(&home.run_dir())?;
    Ok(AgentSandbox::Docker {
        provider: config
            .docker_provider(home)?
            .protect(home.root())
            .expose(home.run_dir())
            .owner(crate::app::assemble::container_owner(home)),
        agp_exe: agp_exe.to_path_buf(),
    })
}

/// Host programs the agent needs in a container whose image may not have them. Claude Code's
/// Bash tool needs a real bash: it sources a snapshot of bash's environment before every
/// command, and a POSIX shell standing in for bash (the busybox image's ash) exits on it, so
/// every command fails. The host's bash is bound at `/bin/bash`, with its libraries. Under
/// bubblewrap the host's own root is the sandbox's: nothing to add.
fn agent_tools(agent: LiveAgent, provider: &AgentSandbox) -> Result<Vec<(PathBuf, PathBuf)>> {
    if agent != LiveAgent::ClaudeCode || !provider.own_home_dirs() {
        return Ok(Vec::new());
    }
    let bash = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join("bash"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .ok_or_else(|| {
            anyhow!(
                "{}'s Bash tool needs bash, which agp binds from the host into the container, \
                 and this host has none: install bash",
                agent.name()
            )
        })?;
    Ok(vec![(bash, PathBuf::from("/bin/bash"))])
}

/// What `agp run` hands over for a live agent.
pub struct AgentRunArgs<'a> {
    pub agent: LiveAgent,
    pub repo: &'a Path,
    pub task: &'a str,
    pub interactive: bool,
    pub govern: &'a GovernArgs,
    /// Print the summary as one JSON document on stdout.
    pub json: bool,
}

pub fn run(home: &Home, args: &AgentRunArgs<'_>) -> Result<Exit> {
    let agent = args.agent;
    if args.govern.sandbox == Some(SandboxChoice::None) {
        bail!(
            "{} runs only inside agp's sandbox; for agents without it use `agp daemon` with `agp install-hooks`",
            agent.name()
        );
    }
    if args.task.trim().is_empty() && !args.interactive {
        bail!(
            "--task is required to run {} headless (or pass --interactive)",
            agent.name()
        );
    }
    let repo = std::fs::canonicalize(args.repo)
        .with_context(|| format!("repository {}", args.repo.display()))?;
    let user_home = crate::app::assemble::user_home();
    check_login(agent, &user_home)?;
    let agp_exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find agp's own executable")?;
    let config = Config::load(home)?;
    let choice = match args.govern.sandbox {
        Some(c) => c,
        None => config.sandbox(home)?,
    };
    let provider = Arc::new(agent_sandbox(home, &config, choice, &agp_exe)?);
    let binary = agent_binary::prepare(
        &config,
        agent.kind(),
        agent.name(),
        agent.lookup(),
        &provider,
        &repo,
    )?;
    if let Some(w) = &binary.warning {
        eprintln!("agp: warning: {w}");
    }

    let tools = agent_tools(agent, &provider)?;
    let rt = runtime()?;
    let mut assembly = assemble(home, &config, args.govern, &rt)?;
    // This daemon and its session die with this process.
    assembly.config.ephemeral = true;
    assembly.config.egress_approvers = config.egress.approvers.clone();
    let ask_egress = config.egress.ask.unwrap_or(true);
    let private_hosts = config
        .egress
        .private
        .iter()
        .map(|h| {
            agp_egress::normalize_host(h)
                .map_err(|e| anyhow!("[egress] private: {h:?} is not a host name: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Before anything starts: a malformed rule is one line with the fix.
    let mut inspect_hosts = inspect::inspect_hosts(&config.egress.rule)?;
    let upstream_roots = inspect::upstream_roots(&config.egress.upstream_ca)?;
    let mut extra_egress = config.egress.allow.clone();
    extra_egress.extend(policy_domains(&assembly.policy_path)?);
    inspect::add_credentials(
        &config.egress.credential,
        &assembly.config.secrets,
        &extra_egress,
        &mut inspect_hosts,
    )?;
    let approval_timeout = assembly.config.approval_timeout;
    let hook_timeout = approval_timeout.as_secs() + HOOK_MARGIN_SECS;
    Home::create_private_dir(&home.run_dir())?;
    let scratch = tempfile::Builder::new()
        .prefix("agent-")
        .tempdir_in(home.run_dir())
        .context("cannot create the session's scratch directory")?;
    let (adapter, keys) = adapter(agent, &binary, hook_timeout, &user_home, scratch.path())?;
    if let Some(why) = &keys.passed_in {
        eprintln!("agp: warning: {why}");
    }
    if let Some(model) = keys.host {
        model_keys::merge(&mut inspect_hosts, model);
    }
    let journal: Arc<dyn Journal> = assembly.parts.journal.clone();

    let process = Arc::new(AgentProcess::default());
    let outcome = rt.block_on(async {
        let mut interrupts = Interrupts::install()?;
        let (daemon, session) = LocalDaemon::start_session(
            assembly.config,
            assembly.parts,
            SessionParams {
                intendant: agent.name().into(),
                repo: repo.clone(),
                task: args.task.to_owned(),
                mode: SessionMode::Gate,
            },
            Some(binary.identity()),
        )
        .await?;
        let gateway = daemon.socket().to_path_buf();
        if let Some(w) = &binary.warning {
            let body = IntendantVersionUntested {
                intendant: agent.name().to_owned(),
                warning: w.clone(),
                version: binary.version.to_string(),
                sha256: binary.sha256.clone(),
            };
            let kind = IntendantVersionUntested::KIND;
            if let Err(e) = journal.append(kind, Some(&session.id), body.to_body()) {
                eprintln!("agp: error: cannot journal the version warning: {e}");
            }
        }
        let started = format!(
            "agp: session {} · intendant {} {} · repo {} · sandbox {} · approvals via {}",
            session.id,
            agent.name(),
            binary.version,
            repo.display(),
            provider.describe(),
            assembly.channel
        );
        let warning = crate::cmd::mode_report::banner(assembly.mode);
        for line in std::iter::once(started).chain(warning) {
            if args.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        let ctx = LaunchContext {
            session: session.id.clone(),
            repo: repo.clone(),
            task: Some(args.task.to_owned()).filter(|t| !t.is_empty()),
            gateway: GatewayEndpoint {
                socket: live::GATEWAY_SOCKET.into(),
                token: session.token.clone(),
            },
            agp_exe: live::AGP_EXE.into(),
            interactive: args.interactive,
        };
        let judge: Option<Arc<dyn agp_egress::RequestJudge>> = ask_egress.then(|| {
            Arc::new(agp_daemon::EgressJudge::new(
                daemon.daemon(),
                session.id.clone(),
                tokio::runtime::Handle::current(),
            )) as Arc<dyn agp_egress::RequestJudge>
        });
        // Before the agent starts, so its first hook (before any tool can run) pins the harness.
        match peer_guard(&agp_exe, &binary.install.exe, &ctx, agent.name()) {
            Ok(guard) => {
                daemon.guard_peers(&session.id, guard);
            }
            Err(e) => eprintln!("agp: warning: hook connections are not checked by process: {e}"),
        }
        let host = HostPaths {
            judge,
            approval_timeout,
            private_hosts,
            gateway,
            agent_exe: live::agent_placement(&binary.live_config(0, Vec::new()), agent.lookup().1)
                .0,
            agent_host_exe: binary.install.exe.clone(),
            agp_exe,
            scratch: scratch.path().to_path_buf(),
            extra_egress,
            inspect_hosts,
            upstream_roots,
            agent_output_to_stderr: args.json,
            tools,
        };
        let provider = provider.clone();
        let journal = journal.clone();
        let proc = process.clone();
        let mut launching = tokio::task::spawn_blocking(move || {
            launch(
                agent,
                adapter.as_ref(),
                &ctx,
                &host,
                &provider,
                &journal,
                &proc,
            )
        });
        let mut caught = None;
        let stop = daemon.stop_requested(&session.id);
        tokio::pin!(stop);
        let mut stopped = false;
        // The launcher cleans up (sandbox, egress proxy) once the agent is gone, so it is always
        // awaited; a signal only kills the agent, a second one without mercy. A stop (the kill
        // switch) kills it too, and without mercy if it has not gone after STOP_GRACE.
        let launched = loop {
            tokio::select! {
                joined = &mut launching => break joined
                    .map_err(|e| anyhow!("the launcher thread failed: {e}"))
                    .and_then(|r| r),
                () = &mut stop, if !stopped => {
                    stopped = true;
                    process.interrupt(rustix::process::Signal::TERM);
                    let process = process.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(STOP_GRACE).await;
                        process.interrupt(rustix::process::Signal::KILL);
                    });
                }
                signal = interrupts.recv() => {
                    let kill = if caught.is_some() {
                        rustix::process::Signal::KILL
                    } else {
                        rustix::process::Signal::TERM
                    };
                    caught.get_or_insert(signal);
                    process.interrupt(kill);
                }
            }
        };
        let status = match (&launched, caught.is_some() || process.interrupted()) {
            _ if stopped => agp_daemon::STOPPED,
            (_, true) => INTERRUPTED,
            (Ok(0), false) => "completed",
            _ => "failed",
        };
        daemon.end_session(&session.id, status).await;
        daemon.stop().await;
        anyhow::Ok((session.id, launched, caught, stopped))
    });
    drop(rt);
    drop(journal);
    drop(assembly.policy_watch);
    crate::app::assemble::close_and_witness(&assembly.journal, assembly.witness);
    drop(assembly.journal);
    // `scratch` (the session's temporary folder) is removed when it drops, on every path.
    drop(scratch);
    let (session, launched, caught, stopped) = outcome?;
    if stopped {
        // Someone stopped the session: the run did not reach its end (exit 2), said once.
        let _ = launched;
        eprintln!(
            "agp: session {session} was stopped; its agent was ended and \
             its pending approvals cancelled; timeline: `{agp} sessions show {session}`",
            agp = home.agp()
        );
        if args.json {
            let summary = json!({"session": session, "intendant": agent.name(),
                                 "repo": repo, "status": agp_daemon::STOPPED, "exit_code": null});
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(Exit::CannotRun);
    }
    if let Some(signal) = caught {
        crate::cmd::interrupt::report(&home.agp(), signal, &session);
        if args.json {
            let summary = json!({"session": session, "intendant": agent.name(),
                                 "repo": repo, "status": INTERRUPTED, "exit_code": null});
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        return Ok(Exit::CannotRun);
    }
    let code = launched?;
    let outcome = if code == 0 {
        "exited 0".to_string()
    } else {
        format!("exited with status {code}")
    };
    let flags = crate::cmd::sessions::session_flags(home, &session);
    let mode = crate::cmd::sessions::session_entries(home, &session)
        .map(|entries| crate::cmd::mode_report::ModeTally::of(&entries))
        .unwrap_or_default();
    if args.json {
        let summary = json!({"session": session, "intendant": agent.name(), "repo": repo,
                             "status": if code == 0 { "completed" } else { "failed" },
                             "exit_code": code, "flags": flags, "policy_mode": mode.json()});
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("agp: session {session}: {} {outcome}", agent.name());
        if let Some(line) = mode.line() {
            println!("{line}");
        }
        for line in &flags {
            println!("agp: {}", agp_channels::sanitize::escape(line));
        }
        println!(
            "next: `{agp} sessions show {session}` for the session's timeline, `{agp} verify` to check the journal",
            agp = home.agp()
        );
    }
    Ok(if code == 0 { Exit::Ok } else { Exit::Bad })
}

/// What the daemon checks the session's hook connections against: agp and the harness by file
/// identity (bound into the sandbox at other paths), and the hook command agp wired.
fn peer_guard(
    agp_exe: &std::path::Path,
    harness_exe: &std::path::Path,
    ctx: &LaunchContext,
    harness: &str,
) -> std::io::Result<agp_daemon::peer::PeerGuard> {
    use agp_daemon::peer::{FileId, PeerGuard};
    Ok(PeerGuard {
        agp: FileId::of(agp_exe)?,
        harness: FileId::of(harness_exe)?,
        hook_commands: vec![live::hook_command(ctx, harness)],
    })
}
