//! `agp run --intendant claude-code|codex`: a real agent CLI, governed.
//!
//! One session with an in-process daemon in gate mode. The agent runs INSIDE a bubblewrap
//! sandbox: the repository read-write, a tmpfs HOME seeded only with the user's existing login
//! (read-only), agp's hook wiring in the CLI's managed settings (read-only, the only hooks
//! allowed), and no network: the only way out is agp's egress proxy on the host side, reached
//! through a read-only bound Unix socket and an in-sandbox bridge, which lets the model API host
//! (and the domains config.toml allows) through and journals every attempt.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::{
    Event, IntendantVersionUntested, IntendantWiringVerified, SandboxPreflight,
};
use agp_contracts::intendant::{
    GatewayEndpoint, IntendantAdapter, LaunchContext, LaunchPlan, ProcessPlan,
};
use agp_contracts::sandbox::{BindMount, ResourceLimits, SandboxSpec};
use agp_contracts::{Journal, SandboxProvider};
use agp_daemon::SessionParams;
use agp_egress::{Allowlist, EgressProxy, JournalObserver, ProxyConfig, UpstreamWatch};
use agp_gateway::SessionMode;
use agp_intendants::claude_code::{self, ClaudeCodeAdapter};
use agp_intendants::codex::{self, CodexAdapter};
use agp_intendants::install_layout::AgentKind;
use agp_intendants::live;
use agp_sandbox::BubblewrapProvider;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::app::assemble::{assemble, runtime};
use crate::app::config::Config;
use crate::app::local::LocalDaemon;
use crate::cmd::agent_binary::{self, AgentBinary};
use crate::cmd::daemon::{GovernArgs, SandboxChoice};
use crate::cmd::interrupt::{Interrupts, INTERRUPTED};
use crate::cmd::{agent_login, agent_wait};
use crate::exit::Exit;
use crate::home::Home;

/// How much longer than the approval timeout the hook waits for a verdict.
const HOOK_MARGIN_SECS: u64 = 30;
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

/// The agent process of a run, as seen by the signal handler: a signal kills the agent, and an
/// agent not started yet never starts.
#[derive(Default)]
struct AgentProcess {
    /// `Some(pid)` while the agent runs; the flag says the run was interrupted.
    state: std::sync::Mutex<(Option<u32>, bool)>,
}

impl AgentProcess {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<u32>, bool)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the run interrupted and signals the agent (its sandbox dies with it).
    fn interrupt(&self, signal: rustix::process::Signal) {
        let mut state = self.lock();
        state.1 = true;
        if let Some(pid) = state
            .0
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Starts the agent unless the run was interrupted meanwhile.
    fn spawn(&self, cmd: &mut std::process::Command) -> Result<Option<std::process::Child>> {
        let mut state = self.lock();
        if state.1 {
            return Ok(None);
        }
        let child = cmd.spawn()?;
        state.0 = Some(child.id());
        Ok(Some(child))
    }

    fn interrupted(&self) -> bool {
        self.lock().1
    }
}

/// Domains the policy allows the agent to fetch (`WebFetch(domain:…)` in allow rules): the
/// sandbox may reach them too.
fn policy_domains(path: &Path) -> Result<Vec<String>> {
    let policy = agp_policy::Policy::load(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("policy {} is invalid", path.display()))?;
    Ok(policy
        .rules()
        .iter()
        .filter(|r| r.effect == agp_contracts::Decision::Allow)
        .flat_map(|r| r.matchers.iter())
        .filter_map(|m| match &m.spec {
            agp_policy::matcher::Spec::Domain(d) => Some(d.clone()),
            _ => None,
        })
        .collect())
}

fn host_env(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect()
}

/// The user's Codex home on the host: `$CODEX_HOME`, else `~/.codex`.
fn codex_home(user_home: &Path) -> PathBuf {
    std::env::var_os("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| user_home.join(".codex"), PathBuf::from)
}

/// The configured model provider's base URL and key variable, from the user's Codex config.
fn codex_provider(config: Option<&Path>) -> Result<(Option<String>, Option<String>)> {
    let Some(path) = config else {
        return Ok((None, None));
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(provider) = value.get("model_provider").and_then(|v| v.as_str()) else {
        return Ok((None, None));
    };
    let table = value.get("model_providers").and_then(|p| p.get(provider));
    let url = table
        .and_then(|t| t.get("base_url"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let key = table
        .and_then(|t| t.get("env_key"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok((url, key))
}

fn adapter(
    agent: LiveAgent,
    binary: &AgentBinary,
    hook_timeout_secs: u64,
    user_home: &Path,
) -> Result<Box<dyn IntendantAdapter>> {
    Ok(match agent {
        LiveAgent::ClaudeCode => Box::new(ClaudeCodeAdapter::new(
            binary.live_config(hook_timeout_secs, host_env(claude_code::PASSTHROUGH_ENV)),
            user_home,
        )),
        LiveAgent::Codex => {
            let home = codex_home(user_home);
            let existing = |name: &str| Some(home.join(name)).filter(|p| p.is_file());
            let user_config = existing("config.toml");
            let (provider_base_url, key_var) = codex_provider(user_config.as_deref())?;
            let mut vars = vec!["OPENAI_API_KEY", "CODEX_API_KEY"];
            if let Some(k) = key_var.as_deref() {
                vars.push(k);
            }
            Box::new(CodexAdapter {
                config: binary.live_config(hook_timeout_secs, host_env(&vars)),
                auth: existing("auth.json"),
                user_config,
                provider_base_url,
            })
        }
    })
}

/// Whether the agent has credentials for its model (before anything else is prepared).
fn check_login(agent: LiveAgent, user_home: &Path) -> Result<()> {
    match agent {
        LiveAgent::ClaudeCode => {
            let creds = user_home.join(".claude/.credentials.json");
            agent_login::check_claude(Some(creds.as_path()).filter(|p| p.is_file()))
        }
        LiveAgent::Codex => {
            let home = codex_home(user_home);
            let config = Some(home.join("config.toml")).filter(|p| p.is_file());
            let (url, key_var) = codex_provider(config.as_deref())?;
            let auth = Some(home.join("auth.json")).filter(|p| p.is_file());
            agent_login::check_codex(auth.as_deref(), url.is_some(), key_var.as_deref())
        }
    }
}

pub fn run(home: &Home, args: AgentRunArgs<'_>) -> Result<Exit> {
    let agent = args.agent;
    if args.govern.sandbox == Some(SandboxChoice::Docker) {
        bail!(
            "{} does not run inside the docker provider yet; use --sandbox bwrap",
            agent.name()
        );
    }
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
    let provider = Arc::new(BubblewrapProvider::new().protect(home.root()));
    provider.bwrap().map_err(|e| anyhow!("{e}"))?;
    let config = Config::load(home)?;
    if args.govern.sandbox.is_none() && config.sandbox(home)? == SandboxChoice::Docker {
        bail!(
            "{} does not run inside the docker provider yet ([sandbox] provider in {}); pass \
             --sandbox bwrap",
            agent.name(),
            home.config().display()
        );
    }
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

    let rt = runtime()?;
    let mut assembly = assemble(home, &config, args.govern, &rt)?;
    // This daemon and its session die with this process.
    assembly.config.ephemeral = true;
    let mut extra_egress = config.egress.allow.clone();
    extra_egress.extend(policy_domains(&assembly.policy_path)?);
    let hook_timeout = assembly.config.approval_timeout.as_secs() + HOOK_MARGIN_SECS;
    let adapter = adapter(agent, &binary, hook_timeout, &user_home)?;
    let journal: Arc<dyn Journal> = assembly.parts.journal.clone();
    Home::create_private_dir(&home.run_dir())?;
    let scratch = tempfile::Builder::new()
        .prefix("agent-")
        .tempdir_in(home.run_dir())
        .context("cannot create the session's scratch directory")?;

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
            "agp: session {} · intendant {} {} · repo {} · sandbox bubblewrap · approvals via {}",
            session.id,
            agent.name(),
            binary.version,
            repo.display(),
            assembly.channel
        );
        if args.json {
            eprintln!("{started}");
        } else {
            println!("{started}");
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
        let host = HostPaths {
            gateway,
            agent_exe: live::agent_placement(&binary.live_config(0, Vec::new()), agent.lookup().1)
                .0,
            agp_exe,
            scratch: scratch.path().to_path_buf(),
            extra_egress,
            agent_output_to_stderr: args.json,
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
                journal,
                &proc,
            )
        });
        let mut caught = None;
        // The launcher cleans up (sandbox, egress proxy) once the agent is gone, so it is always
        // awaited; a signal only kills the agent, a second one without mercy.
        let launched = loop {
            tokio::select! {
                joined = &mut launching => break joined
                    .map_err(|e| anyhow!("the launcher thread failed: {e}"))
                    .and_then(|r| r),
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
            (_, true) => INTERRUPTED,
            (Ok(0), false) => "completed",
            _ => "failed",
        };
        daemon.end_session(&session.id, status).await;
        daemon.stop().await;
        anyhow::Ok((session.id, launched, caught))
    });
    drop(rt);
    drop(journal);
    drop(assembly.journal);
    // `scratch` (the session's temporary folder) is removed when it drops, on every path.
    drop(scratch);
    let (session, launched, caught) = outcome?;
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
    if args.json {
        let summary = json!({"session": session, "intendant": agent.name(), "repo": repo,
                             "status": if code == 0 { "completed" } else { "failed" },
                             "exit_code": code, "flags": flags});
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("agp: session {session}: {} {outcome}", agent.name());
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

/// Host-side paths the sandbox is built from.
struct HostPaths {
    gateway: PathBuf,
    /// The agent's executable inside the sandbox.
    agent_exe: PathBuf,
    agp_exe: PathBuf,
    scratch: PathBuf,
    extra_egress: Vec<String>,
    /// `--json`: stdout carries only agp's summary, so the agent writes to stderr.
    agent_output_to_stderr: bool,
}

/// Plans, proves and starts the agent; returns its exit status. Blocking.
fn launch(
    agent: LiveAgent,
    adapter: &dyn IntendantAdapter,
    ctx: &LaunchContext,
    host: &HostPaths,
    provider: &BubblewrapProvider,
    journal: Arc<dyn Journal>,
    process: &AgentProcess,
) -> Result<i32> {
    let plan = adapter.plan(ctx)?;
    adapter.verify_wiring(ctx, &plan)?;
    let LaunchPlan::Process(plan) = plan else {
        bail!("{} did not plan a process", agent.name());
    };

    // Egress: the model API and the configured domains, nothing else; every attempt journaled.
    let mut hosts = plan.egress_hosts.clone();
    hosts.extend(host.extra_egress.iter().cloned());
    let allowlist = Allowlist::parse(&hosts).context("egress allowlist")?;
    let egress_dir = host.scratch.join("egress");
    std::fs::create_dir(&egress_dir)?;
    std::fs::set_permissions(&egress_dir, std::fs::Permissions::from_mode(0o700))?;
    let watch = Arc::new(UpstreamWatch::new(
        Arc::new(JournalObserver::new(journal.clone(), ctx.session.clone())),
        model_hosts(&plan.egress_hosts),
        agent_wait::MAX_MODEL_FAILURES,
        agent_wait::MAX_MODEL_OUTAGE,
    ));
    let proxy = EgressProxy::start(
        ProxyConfig::new(egress_dir.join("egress.sock"), allowlist),
        watch.clone(),
    )
    .context("cannot start the egress proxy")?;

    let spec = sandbox_spec(ctx, &plan, host, &egress_dir)?;
    let sandbox = provider.spawn(&spec).map_err(|e| anyhow!("{e}"))?;
    let report = provider
        .run_preflight(&sandbox)
        .map_err(|e| anyhow!("{e}"))?;
    journal
        .append(
            SandboxPreflight::KIND,
            Some(&ctx.session),
            SandboxPreflight::flat(report.clone()).to_body(),
        )
        .context("cannot journal the sandbox preflight")?;
    if !report.passed {
        bail!("sandbox preflight failed: {}", report.failure_summary());
    }

    if agent == LiveAgent::Codex {
        // Codex skips an untrusted hook silently: prove from inside this very sandbox that it
        // will run agp's hook, or refuse to start.
        let probe = codex::probe_argv(&host.agent_exe);
        let cmd = provider
            .command(&sandbox, &probe, &plan.cwd)
            .map_err(|e| anyhow!("{e}"))?;
        codex::probe_hooks(cmd, ctx, PROBE_TIMEOUT)?;
        let verified = IntendantWiringVerified {
            intendant: agent.name().to_owned(),
            method: "codex app-server hooks/list".into(),
        };
        journal.append(
            IntendantWiringVerified::KIND,
            Some(&ctx.session),
            verified.to_body(),
        )?;
    }

    let mut argv = vec![
        live::AGP_EXE.to_string(),
        "egress-bridge".into(),
        "--listen".into(),
        live::BRIDGE_ADDR.into(),
        "--socket".into(),
        live::EGRESS_SOCKET.into(),
        "--".into(),
    ];
    argv.extend(plan.argv.iter().cloned());
    let mut cmd = provider
        .command(&sandbox, &argv, &plan.cwd)
        .map_err(|e| anyhow!("{e}"))?;
    if !plan.interactive {
        cmd.stdin(Stdio::null());
    }
    if host.agent_output_to_stderr {
        cmd.stdout(std::io::stderr());
    }
    let child = process
        .spawn(&mut cmd)
        .with_context(|| format!("cannot start {} in the sandbox", agent.name()));
    let mut child = match child {
        Ok(Some(child)) => child,
        // Interrupted before the agent started.
        Ok(None) | Err(_) => {
            let _ = provider.teardown(sandbox);
            proxy.stop();
            return child.map(|_| 128);
        }
    };
    let waited = agent_wait::wait_watching(&mut child, &watch);
    let _ = provider.teardown(sandbox);
    proxy.stop();
    match waited.with_context(|| format!("waiting for {}", agent.name()))? {
        Ok(status) => Ok(status.code().unwrap_or(128)),
        Err(why) => bail!(
            "{} stopped: {why}; check the network and the API base URL the agent uses",
            agent.name()
        ),
    }
}

/// The model API's `host:port` entries of the plan, as the proxy names upstreams.
fn model_hosts(hosts: &[String]) -> Vec<(String, u16)> {
    hosts
        .iter()
        .filter_map(|h| {
            let (host, port) = h.rsplit_once(':')?;
            Some((agp_egress::normalize_host(host).ok()?, port.parse().ok()?))
        })
        .collect()
}

/// The sandbox for the agent: the plan's environment and binds, plus the gateway socket, the
/// egress socket directory and agp itself, all read-only.
fn sandbox_spec(
    ctx: &LaunchContext,
    plan: &ProcessPlan,
    host: &HostPaths,
    egress_dir: &Path,
) -> Result<SandboxSpec> {
    let mut spec = SandboxSpec::new(ctx.session.clone(), ctx.repo.clone());
    spec.env = plan.env.clone();
    // No address-space limit: the agent runtimes reserve far more virtual memory than they use.
    spec.limits = ResourceLimits::default();
    let ro = |source: &Path, dest: &Path| BindMount {
        source: source.to_path_buf(),
        dest: dest.to_path_buf(),
        writable: false,
    };
    spec.binds
        .push(ro(&host.gateway, Path::new(live::GATEWAY_SOCKET)));
    spec.binds.push(ro(egress_dir, Path::new(live::EGRESS_DIR)));
    spec.binds.push(ro(&host.agp_exe, Path::new(live::AGP_EXE)));
    for (source, dest) in &plan.ro_binds {
        spec.binds.push(ro(source, dest));
    }
    let files = host.scratch.join("files");
    for (i, f) in plan.files.iter().enumerate() {
        let name = f
            .path
            .file_name()
            .ok_or_else(|| anyhow!("seeded file {} has no name", f.path.display()))?;
        let dir = files.join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        let source = dir.join(name);
        std::fs::write(&source, &f.contents)
            .with_context(|| format!("cannot write {}", source.display()))?;
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(f.mode))?;
        spec.binds.push(BindMount {
            source,
            dest: f.path.clone(),
            writable: !f.read_only,
        });
    }
    Ok(spec)
}
