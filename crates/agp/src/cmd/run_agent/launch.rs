//! Starting the agent in its sandbox, blocking: the plan proven, the egress proxy, the sandbox
//! and its preflight, Codex's hook proof, then the agent itself, killable by a signal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use agp_contracts::events::{Event, IntendantWiringVerified, SandboxPreflight};
use agp_contracts::intendant::{IntendantAdapter, LaunchContext, LaunchPlan, ProcessPlan};
use agp_contracts::sandbox::{BindMount, ResourceLimits, SandboxSpec, SANDBOX_HOME};
use agp_contracts::Journal;
use agp_egress::{
    Allowlist, BurstSummary, EgressProxy, InspectConfig, InspectHost, JournalObserver, ProxyConfig,
    SessionCa, UpstreamWatch,
};
use agp_intendants::codex;
use agp_intendants::live;
use anyhow::{anyhow, bail, Context, Result};

use super::{LiveAgent, PROBE_TIMEOUT};
use crate::cmd::agent_sandbox::AgentSandbox;
use crate::cmd::agent_wait;
use crate::cmd::terminal_mode;

/// Identical egress requests within this window become one journal record with a count.
const EGRESS_BURST_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// How much longer than the approval timeout an egress request waits for its answer.
const JUDGE_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The agent process of a run, as seen by the signal handler: a signal kills the agent, and an
/// agent not started yet never starts.
#[derive(Default)]
pub(super) struct AgentProcess {
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
    pub(super) fn interrupt(&self, signal: rustix::process::Signal) {
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

    pub(super) fn interrupted(&self) -> bool {
        self.lock().1
    }
}

/// Host-side paths the sandbox is built from.
pub(super) struct HostPaths {
    pub gateway: PathBuf,
    /// The agent's executable inside the sandbox.
    pub agent_exe: PathBuf,
    /// The agent's executable on the host.
    pub agent_host_exe: PathBuf,
    pub agp_exe: PathBuf,
    pub scratch: PathBuf,
    pub extra_egress: Vec<String>,
    /// Hosts from `[[egress.rule]]`: TLS terminated by the proxy, requests judged one by one.
    pub inspect_hosts: Vec<InspectHost>,
    /// Asked about egress requests that need a human (`None`: refused).
    pub judge: Option<Arc<dyn agp_egress::RequestJudge>>,
    /// How long such a request waits for its answer.
    pub approval_timeout: std::time::Duration,
    /// `[egress] private`: names that may resolve to non-public addresses.
    pub private_hosts: Vec<String>,
    /// `[egress] upstream_ca`: roots the inspected hosts' upstreams may be signed by besides
    /// the web PKI's.
    pub upstream_roots: Vec<agp_egress::CertificateDer<'static>>,
    /// `--json`: stdout carries only agp's summary, so the agent writes to stderr.
    pub agent_output_to_stderr: bool,
    /// Host programs the agent needs that the sandbox's root may lack or have in a form it
    /// cannot use: (host executable, path inside), bound read-only with their libraries.
    pub tools: Vec<(PathBuf, PathBuf)>,
}

/// Plans, proves and starts the agent; returns its exit status. Blocking.
pub(super) fn launch(
    agent: LiveAgent,
    adapter: &dyn IntendantAdapter,
    ctx: &LaunchContext,
    host: &HostPaths,
    provider: &AgentSandbox,
    journal: &Arc<dyn Journal>,
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
        // Requests through inspected hosts are journaled with bursts summarized.
        Arc::new(BurstSummary::new(
            Arc::new(JournalObserver::new(journal.clone(), ctx.session.clone())),
            EGRESS_BURST_WINDOW,
        )),
        model_hosts(&plan.egress_hosts),
        agent_wait::MAX_MODEL_FAILURES,
        agent_wait::MAX_MODEL_OUTAGE,
    ));
    let mut proxy_config = ProxyConfig::new(egress_dir.join("egress.sock"), allowlist);
    // The model endpoint the user configured may be a local gateway (LiteLLM on localhost):
    // its name may resolve to a private or loopback address; no other name may.
    proxy_config.private_hosts = model_hosts(&plan.egress_hosts)
        .into_iter()
        .map(|(h, _)| h)
        .chain(host.private_hosts.iter().cloned())
        .collect();
    // A host nobody listed, and a `require` rule, are put to the session's approval channel;
    // the request waits at most the approval timeout.
    proxy_config.destination_judge = host.judge.clone();
    // A little longer than the daemon's own bound, so the daemon's timeout (journaled) decides.
    proxy_config.judge_timeout = host.approval_timeout + JUDGE_MARGIN;
    // The host's CA bundle the session's combined bundle was built from: the sandbox sees the
    // combined one in its place.
    let mut system_bundle = None;
    if !host.inspect_hosts.is_empty() {
        // The CA's key stays in this process; its certificate and the combined bundle go in the
        // egress directory the sandbox sees read-only.
        let ca = SessionCa::create(&egress_dir).context("cannot create the session's egress CA")?;
        system_bundle = ca.system_bundle().map(Path::to_path_buf);
        let mut inspect = InspectConfig::new(Arc::new(ca), host.inspect_hosts.clone())
            .context("cannot set up TLS for inspected egress hosts")?;
        if let Some(judge) = &host.judge {
            inspect.judge = judge.clone();
            inspect.judge_timeout = host.approval_timeout + JUDGE_MARGIN;
        }
        inspect.upstream_tls = agp_egress::upstream_client_config(&host.upstream_roots)
            .context("[egress] upstream_ca holds a certificate rustls cannot use as a root")?;
        proxy_config.inspect = Some(Arc::new(inspect));
    }
    let proxy =
        EgressProxy::start(proxy_config, watch.clone()).context("cannot start the egress proxy")?;
    let started = start_sandbox(
        ctx,
        &plan,
        host,
        provider,
        &egress_dir,
        system_bundle.as_deref(),
    );
    let sandbox = match started {
        Ok(s) => s,
        Err(e) => {
            proxy.stop();
            return Err(e);
        }
    };
    let proved = prove(agent, ctx, &plan, host, provider, &sandbox, journal);
    if let Err(e) = proved {
        let _ = provider.teardown(sandbox);
        proxy.stop();
        return Err(e);
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
    // A person at the terminal: the agent gets one (in a container, one of its own). The
    // terminal's settings as they are now, put back once the agent is gone however it ended.
    let terminal = plan
        .interactive
        .then(terminal_mode::Saved::of_stdin)
        .flatten();
    let cmd = match terminal {
        Some(_) => provider.terminal_command(&sandbox, &argv, &plan.cwd),
        None => provider.command(&sandbox, &argv, &plan.cwd, plan.interactive),
    };
    let mut cmd = match cmd {
        Ok(cmd) => cmd,
        Err(e) => {
            let _ = provider.teardown(sandbox);
            proxy.stop();
            return Err(e);
        }
    };
    if !plan.interactive {
        cmd.stdin(Stdio::null());
    }
    if host.agent_output_to_stderr {
        cmd.stdout(std::io::stderr());
    }
    let child = process
        .spawn(&mut cmd)
        .with_context(|| format!("cannot start {} in the sandbox", agent.name()));
    // Not started: it failed, or an interrupt came first.
    let Ok(Some(mut child)) = child else {
        let _ = provider.teardown(sandbox);
        proxy.stop();
        return child.map(|_| 128);
    };
    let waited = agent_wait::wait_watching(&mut child, &watch);
    if let Some(saved) = &terminal {
        saved.restore();
    }
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

/// The sandbox for the agent, started: its spec, and what the agent's user needs handed over
/// when it is not this process's (a container runs as the repository's owner).
fn start_sandbox(
    ctx: &LaunchContext,
    plan: &ProcessPlan,
    host: &HostPaths,
    provider: &AgentSandbox,
    egress_dir: &Path,
    system_bundle: Option<&Path>,
) -> Result<crate::cmd::agent_sandbox::AgentSession> {
    let user = provider.foreign_user(&ctx.repo)?;
    let mut spec = sandbox_spec(ctx, plan, host, egress_dir, provider.own_home_dirs(), user)?;
    // Under bubblewrap the sandbox's root is the host's, whose bundle the combined one was built
    // from; a container image's store is its own (the variables still point at the bundle).
    let system_bundle = system_bundle.filter(|_| matches!(provider, AgentSandbox::Bwrap(_)));
    if let Some(system) = system_bundle {
        // Clients that read only the system store (no variable) trust the session CA too; the
        // combined bundle keeps every system root, so pass-through hosts verify as before.
        spec.binds.push(BindMount {
            source: egress_dir.join("bundle.pem"),
            dest: system.to_path_buf(),
            writable: false,
        });
    }
    if let Some((uid, gid)) = user {
        let hand_over = |path: &Path| {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| {
                format!(
                    "the agent runs as uid {uid} (the repository's owner) and agp cannot give it                      {}; run agp as the repository's owner",
                    path.display()
                )
            })
        };
        hand_over(egress_dir)?;
        hand_over(&egress_dir.join("egress.sock"))?;
        hand_over(&host.gateway)?;
    }
    let mut executables = vec![host.agp_exe.as_path(), host.agent_host_exe.as_path()];
    executables.extend(host.tools.iter().map(|(source, _)| source.as_path()));
    provider.spawn(&spec, &executables)
}

/// The preflight, journaled and required to pass, and Codex's hook proof from inside.
fn prove(
    agent: LiveAgent,
    ctx: &LaunchContext,
    plan: &ProcessPlan,
    host: &HostPaths,
    provider: &AgentSandbox,
    sandbox: &crate::cmd::agent_sandbox::AgentSession,
    journal: &Arc<dyn Journal>,
) -> Result<()> {
    let report = provider.preflight(sandbox)?;
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
    provider.check_ready(
        sandbox,
        live::AGP_EXE,
        &[live::GATEWAY_SOCKET, live::EGRESS_SOCKET],
    )?;

    if agent == LiveAgent::Codex {
        // Codex skips an untrusted hook silently: prove from inside this very sandbox that it
        // will run agp's hook, or refuse to start.
        let probe = codex::probe_argv(&host.agent_exe);
        let cmd = provider.command(sandbox, &probe, &plan.cwd, true)?;
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
    Ok(())
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
///
/// `home_dirs`: the provider creates missing bind targets as root (a container engine), so a
/// directory in HOME that would only hold binds (Codex's CODEX_HOME) is a fresh directory of
/// the agent's own from the session's scratch instead, writable as under bubblewrap. `user`:
/// the agent's uid and gid when not this process's; the files agp writes for it are its own.
fn sandbox_spec(
    ctx: &LaunchContext,
    plan: &ProcessPlan,
    host: &HostPaths,
    egress_dir: &Path,
    home_dirs: bool,
    user: Option<(u32, u32)>,
) -> Result<SandboxSpec> {
    let give = |path: &Path| -> Result<()> {
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
        }
        Ok(())
    };
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
    if egress_dir.join("ca.pem").is_file() {
        // Inspected hosts: the usual clients trust the session CA (and still the system roots).
        let inside = Path::new(live::EGRESS_DIR);
        for (name, path) in
            SessionCa::sandbox_env(&inside.join("ca.pem"), &inside.join("bundle.pem"))
        {
            spec.env.retain(|(n, _)| n != name);
            spec.env.push((name.to_owned(), path.display().to_string()));
        }
    }
    spec.binds.push(ro(&host.agp_exe, Path::new(live::AGP_EXE)));
    for (source, dest) in &host.tools {
        spec.binds.push(ro(source, dest));
    }
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
        give(&source)?;
        spec.binds.push(BindMount {
            source,
            dest: f.path.clone(),
            writable: !f.read_only,
        });
    }
    if home_dirs {
        let home = Path::new(SANDBOX_HOME);
        let mut tops: Vec<PathBuf> = spec
            .binds
            .iter()
            .filter_map(|b| {
                let rel = b.dest.strip_prefix(home).ok()?;
                let mut parts = rel.components();
                let first = parts.next()?;
                // Only a directory that holds binds; a file bound straight into HOME needs none.
                parts.next()?;
                Some(home.join(first))
            })
            .collect();
        tops.sort();
        tops.dedup();
        for (i, top) in tops.into_iter().enumerate() {
            let dir = host.scratch.join("home").join(i.to_string());
            std::fs::create_dir_all(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            give(&dir)?;
            spec.binds.push(BindMount {
                source: dir,
                dest: top,
                writable: true,
            });
        }
    }
    Ok(spec)
}
