//! What the live-agent adapters (Claude Code, Codex) share: where things are inside the
//! sandbox, the environment every agent gets, and the hook command line.
//!
//! The launcher binds the host paths at these places; the adapters only plan with them.

use std::path::{Path, PathBuf};

use agp_contracts::intendant::{
    IntendantError, LaunchContext, LaunchPlan, ProcessPlan, SeededFile,
};
use agp_contracts::sandbox::SANDBOX_HOME;

/// Directory of executables bound into the sandbox (agp itself, the agent CLI).
pub const BIN_DIR: &str = "/run/agp/bin";
/// agp's executable inside the sandbox: what the hook wiring calls.
pub const AGP_EXE: &str = "/run/agp/bin/agp";
/// The session's gateway socket inside the sandbox.
pub const GATEWAY_SOCKET: &str = "/run/agp/gateway/gateway.sock";
/// The egress proxy's socket directory inside the sandbox (bound read-only).
pub const EGRESS_DIR: &str = "/run/agp/egress";
pub const EGRESS_SOCKET: &str = "/run/agp/egress/egress.sock";
/// Where the in-sandbox bridge listens (the sandbox has a network namespace of its own, so any
/// port is free).
pub const BRIDGE_ADDR: &str = "127.0.0.1:3128";

/// Variables the hook reads (mirrors `agp hook`).
pub const ENV_SOCKET: &str = "AGP_GATEWAY_SOCKET";
pub const ENV_TOKEN: &str = "AGP_SESSION_TOKEN";
pub const ENV_HOOK_TIMEOUT: &str = "AGP_HOOK_TIMEOUT_SECS";

/// Where an agent's bundle directory (the executable with the helpers it expects beside it)
/// is bound inside the sandbox.
pub const AGENT_DIR: &str = "/run/agp/agent";

/// Settings every live adapter needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveConfig {
    /// The agent CLI's native executable on the host.
    pub binary: PathBuf,
    /// A host directory holding `binary` and its bundled helpers, bound whole (read-only).
    pub bundle: Option<PathBuf>,
    /// Directories inside `bundle` (relative) to put first on PATH.
    pub path_dirs: Vec<PathBuf>,
    /// The CLI's version, when known (some wiring depends on it).
    pub version: Option<crate::identity::Version>,
    /// Longest the hook waits for a verdict (approval timeout plus a margin).
    pub hook_timeout_secs: u64,
    /// Host environment values to pass through (credentials the user configured for the agent,
    /// a base URL); everything else is cleared.
    pub passthrough_env: Vec<(String, String)>,
}

impl LiveConfig {
    /// How long the harness lets the hook run: longer than the hook's own wait, so the hook
    /// always answers (deny on timeout) before the harness gives up on it — a harness that kills
    /// a hook treats it as a non-blocking error.
    pub fn harness_hook_timeout_secs(&self) -> u64 {
        self.hook_timeout_secs + 60
    }
}

/// The hook command line the harness runs (`harness` is `agp hook --harness`'s value).
///
/// Both harnesses run the command through `/bin/sh`, and both treat any exit status but 0 and
/// 2 as NON-blocking: a hook that cannot start (agp missing: 127), crashes, is killed by a
/// signal or exits 1 would let the tool run. The `||` branch turns every such failure into a
/// block: exit 2 with a reason on stderr (Codex does not block on an exit 2 with an empty
/// stderr). agp hook itself only ever exits 0 (its answer on stdout) or 2.
pub fn hook_command(ctx: &LaunchContext, harness: &str) -> String {
    format!(
        "{} hook --harness {harness} || {{ echo '{HOOK_FAILED}' >&2; exit 2; }}",
        ctx.agp_exe.display()
    )
}

/// The command wrapper the harness runs every command line through (Claude Code's
/// `CLAUDE_CODE_SHELL_PREFIX`): `agp --tool-shell CMD` stays the parent of what a tool call
/// starts, so the daemon can tell the harness's hook from the agent's tools (agp_daemon::peer).
/// Claude Code splits the prefix at its last " -" and quotes the part before it as one word.
pub fn tool_shell_prefix(ctx: &LaunchContext) -> String {
    format!("{} --tool-shell", ctx.agp_exe.display())
}

/// What the model is told when the hook process itself failed.
pub const HOOK_FAILED: &str = "agp: the agp hook failed to run, so this call is blocked";

/// Where the agent's executable is inside the sandbox, and the read-only binds that put it
/// (and its bundle) there.
pub fn agent_placement(cfg: &LiveConfig, name: &str) -> (PathBuf, Vec<(PathBuf, PathBuf)>) {
    if let Some(bundle) = &cfg.bundle {
        if let Ok(rel) = cfg.binary.strip_prefix(bundle) {
            return (
                Path::new(AGENT_DIR).join(rel),
                vec![(bundle.clone(), PathBuf::from(AGENT_DIR))],
            );
        }
    }
    let exe = agent_exe(name);
    (exe.clone(), vec![(cfg.binary.clone(), exe)])
}

/// The environment every live agent gets: a clean PATH, the sandbox HOME, the gateway, and the
/// egress bridge as its proxy.
pub fn base_env(ctx: &LaunchContext, cfg: &LiveConfig) -> Vec<(String, String)> {
    let proxy = format!("http://{BRIDGE_ADDR}");
    // The bundle's helpers (Codex's `rg`) come first, as the npm launcher would arrange.
    let helpers: String = match &cfg.bundle {
        Some(_) => cfg
            .path_dirs
            .iter()
            .map(|d| format!("{}:", Path::new(AGENT_DIR).join(d).display()))
            .collect(),
        None => String::new(),
    };
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!(
                "{helpers}{BIN_DIR}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
            ),
        ),
        ("HOME".into(), SANDBOX_HOME.into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        (ENV_SOCKET.into(), ctx.gateway.socket.display().to_string()),
        (ENV_TOKEN.into(), ctx.gateway.token.clone()),
        (ENV_HOOK_TIMEOUT.into(), cfg.hook_timeout_secs.to_string()),
    ];
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((var.into(), proxy.clone()));
    }
    // Loopback too must go through the proxy: nothing but the bridge listens inside.
    env.push(("NO_PROXY".into(), String::new()));
    env.push(("no_proxy".into(), String::new()));
    if ctx.interactive {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        env.push(("TERM".into(), term));
    } else {
        env.push(("TERM".into(), "dumb".into()));
    }
    for (k, v) in &cfg.passthrough_env {
        if !env.iter().any(|(e, _)| e == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    env
}

/// The agent CLI's path inside the sandbox.
pub fn agent_exe(name: &str) -> PathBuf {
    Path::new(BIN_DIR).join(name)
}

/// A task must not be read as an option by the CLI.
pub fn check_task(intendant: &str, ctx: &LaunchContext) -> Result<String, IntendantError> {
    let task = ctx.task.clone().unwrap_or_default();
    if task.trim().is_empty() && !ctx.interactive {
        return Err(IntendantError::Invalid(format!(
            "{intendant}: --task is required for a headless run"
        )));
    }
    if task.starts_with('-') {
        return Err(IntendantError::Invalid(format!(
            "{intendant}: the task must not start with '-' (it would be read as an option)"
        )));
    }
    Ok(task)
}

pub(crate) fn unverified(intendant: &str, message: impl Into<String>) -> IntendantError {
    IntendantError::WiringUnverified {
        intendant: intendant.into(),
        message: message.into(),
    }
}

/// The process a live agent's plan launches, without any of the agent's `forbidden` flags
/// (those that bypass the managed hooks); anything else cannot carry the hook wiring.
pub(crate) fn process_plan<'a>(
    intendant: &str,
    plan: &'a LaunchPlan,
    forbidden: &[&str],
) -> Result<&'a ProcessPlan, IntendantError> {
    let LaunchPlan::Process(p) = plan else {
        return Err(unverified(intendant, "not a process launch"));
    };
    if let Some(flag) = forbidden_flag(&p.argv, forbidden) {
        return Err(unverified(
            intendant,
            format!("{flag} would bypass the managed hooks"),
        ));
    }
    Ok(p)
}

/// A live agent CLI governed through its hooks: what sets one apart from another. The launch
/// and the checks every such agent needs are [`plan`] and [`verify_wiring`];
/// [`live_adapter!`] makes the type an `IntendantAdapter` with them.
pub(crate) trait LiveAgent {
    /// The name on the command line, in the journal and in the hook command.
    const NAME: &'static str;
    /// The executable's name in the sandbox's bin directory.
    const EXE: &'static str;
    /// Arguments of a headless run, before [`Self::ARGS`].
    const HEADLESS_ARGS: &'static [&'static str];
    /// Arguments of every run, before the task.
    const ARGS: &'static [&'static str];
    /// Flags that would skip, replace or weaken the managed hook wiring.
    const FORBIDDEN_FLAGS: &'static [&'static str];

    fn config(&self) -> &LiveConfig;

    /// What the agent adds to the common launch (run after the task is checked).
    fn launch(&self, ctx: &LaunchContext) -> Result<AgentLaunch, IntendantError>;

    /// The agent's own checks of a plan free of forbidden flags, before the environment's.
    fn check_wiring(&self, ctx: &LaunchContext, plan: &ProcessPlan) -> Result<(), IntendantError>;
}

/// An agent's additions to the common launch.
pub(crate) struct AgentLaunch {
    /// Set after [`base_env`].
    pub env: Vec<(String, String)>,
    /// Bound after the agent's own executable.
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    pub files: Vec<SeededFile>,
    pub egress_hosts: Vec<String>,
}

/// The launch of a live agent in the repository, interactive as the context asks: its
/// executable, its arguments and the task, the common environment and the agent's additions.
pub(crate) fn plan<A: LiveAgent>(
    agent: &A,
    ctx: &LaunchContext,
) -> Result<LaunchPlan, IntendantError> {
    let task = check_task(A::NAME, ctx)?;
    let (exe, mut ro_binds) = agent_placement(agent.config(), A::EXE);
    let mut argv = vec![exe.display().to_string()];
    if !ctx.interactive {
        argv.extend(
            A::HEADLESS_ARGS
                .iter()
                .map(std::string::ToString::to_string),
        );
    }
    argv.extend(A::ARGS.iter().map(std::string::ToString::to_string));
    if !task.is_empty() {
        argv.push(task);
    }
    let added = agent.launch(ctx)?;
    let mut env = base_env(ctx, agent.config());
    env.extend(added.env);
    ro_binds.extend(added.ro_binds);
    Ok(LaunchPlan::Process(ProcessPlan {
        argv,
        env,
        cwd: ctx.repo.clone(),
        files: added.files,
        ro_binds,
        egress_hosts: added.egress_hosts,
        interactive: ctx.interactive,
    }))
}

/// The proof a live agent's plan can carry the hook wiring: a process launch without any
/// forbidden flag, the agent's own checks, and an environment that reaches the gateway.
pub(crate) fn verify_wiring<A: LiveAgent>(
    agent: &A,
    ctx: &LaunchContext,
    plan: &LaunchPlan,
) -> Result<(), IntendantError> {
    let p = process_plan(A::NAME, plan, A::FORBIDDEN_FLAGS)?;
    agent.check_wiring(ctx, p)?;
    check_env(A::NAME, ctx, &p.env)
}

/// Implements `IntendantAdapter` for a [`LiveAgent`]: hook delivery, [`plan`] and
/// [`verify_wiring`].
macro_rules! live_adapter {
    ($agent:ty) => {
        impl agp_contracts::intendant::IntendantAdapter for $agent {
            fn name(&self) -> &str {
                <$agent as $crate::live::LiveAgent>::NAME
            }

            fn delivery(&self) -> agp_contracts::intendant::Delivery {
                agp_contracts::intendant::Delivery::Hook
            }

            fn plan(
                &self,
                ctx: &agp_contracts::intendant::LaunchContext,
            ) -> Result<
                agp_contracts::intendant::LaunchPlan,
                agp_contracts::intendant::IntendantError,
            > {
                $crate::live::plan(self, ctx)
            }

            fn verify_wiring(
                &self,
                ctx: &agp_contracts::intendant::LaunchContext,
                plan: &agp_contracts::intendant::LaunchPlan,
            ) -> Result<(), agp_contracts::intendant::IntendantError> {
                $crate::live::verify_wiring(self, ctx, plan)
            }
        }
    };
}
pub(crate) use live_adapter;

/// A headless launch context as the launcher builds it, for the adapters' tests.
#[cfg(test)]
pub(crate) fn test_context() -> LaunchContext {
    LaunchContext {
        session: "s1".into(),
        repo: "/src/repo".into(),
        task: Some("fix the bug".into()),
        gateway: agp_contracts::intendant::GatewayEndpoint {
            socket: GATEWAY_SOCKET.into(),
            token: "tok".into(),
        },
        agp_exe: AGP_EXE.into(),
        interactive: false,
    }
}

/// The process an adapter plans for the test context, its wiring verified.
#[cfg(test)]
pub(crate) fn verified_process(
    adapter: &dyn agp_contracts::intendant::IntendantAdapter,
    ctx: &LaunchContext,
) -> ProcessPlan {
    let plan = adapter.plan(ctx).unwrap();
    adapter.verify_wiring(ctx, &plan).unwrap();
    let LaunchPlan::Process(p) = plan else {
        panic!("not a process launch")
    };
    p
}

/// The first argument that is one of `forbidden`, alone or as `FLAG=value`.
fn forbidden_flag<'a>(argv: &'a [String], forbidden: &[&str]) -> Option<&'a String> {
    argv.iter().find(|a| {
        forbidden
            .iter()
            .any(|f| a.as_str() == *f || a.starts_with(&format!("{f}=")))
    })
}

/// The managed file the plan seeds at `path` (the client's hook settings, called `what`),
/// which must be there and read-only inside the sandbox.
pub(crate) fn managed_file<'a>(
    intendant: &str,
    plan: &'a ProcessPlan,
    path: &str,
    what: &str,
) -> Result<&'a SeededFile, IntendantError> {
    let file = plan
        .files
        .iter()
        .find(|f| f.path == Path::new(path))
        .ok_or_else(|| unverified(intendant, format!("no managed {what} in the plan")))?;
    if !file.read_only {
        return Err(unverified(
            intendant,
            format!("the managed {what} would be writable"),
        ));
    }
    Ok(file)
}

/// Checks the environment the plan gives the agent reaches the session's gateway.
pub(crate) fn check_env(
    intendant: &str,
    ctx: &LaunchContext,
    env: &[(String, String)],
) -> Result<(), IntendantError> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(e, _)| e == k)
            .map(|(_, v)| v.as_str())
    };
    if get(ENV_SOCKET) != Some(&ctx.gateway.socket.display().to_string()) {
        return Err(unverified(
            intendant,
            format!("{ENV_SOCKET} does not name the session's gateway"),
        ));
    }
    if get(ENV_TOKEN) != Some(ctx.gateway.token.as_str()) {
        return Err(unverified(
            intendant,
            format!("{ENV_TOKEN} is not the session's token"),
        ));
    }
    Ok(())
}
