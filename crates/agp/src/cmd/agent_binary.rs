//! Which agent CLI binary `agp run` launches, and whether it may: found as npm installs it
//! (`install_layout`), pinned by hash (`[intendants.<name>] sha256` in config.toml), and its
//! version asked in a sandbox and judged against the tested range (`identity`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{BindMount, ResourceLimits, SandboxSpec, SANDBOX_HOME};
use agp_intendants::identity::{self, Version, VersionVerdict};
use agp_intendants::install_layout::{self, AgentInstall, AgentKind};
use agp_intendants::live::{self, LiveConfig};
use agp_intendants::proc_report;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::app::config::Config;
use crate::cmd::agent_sandbox::AgentSandbox;

/// Longest `--version` may take inside the sandbox.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent binary agp will run, identified.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub install: AgentInstall,
    /// What PATH (or the variable) named, before resolving launchers and links.
    pub found: PathBuf,
    pub sha256: String,
    pub version: Version,
    /// Set when the version is outside the tested range (printed and journaled).
    pub warning: Option<String>,
}

impl AgentBinary {
    /// What `session.started` records about the agent.
    pub fn identity(&self) -> Value {
        json!({
            "path": self.install.exe, "found": self.found, "layout": self.install.layout,
            "sha256": self.sha256, "version": self.version.to_string(),
            "package_version": self.install.package_version,
            "tested": self.warning.is_none(),
        })
    }

    /// The binary part of the adapter's settings.
    pub fn live_config(
        &self,
        hook_timeout_secs: u64,
        passthrough_env: Vec<(String, String)>,
    ) -> LiveConfig {
        LiveConfig {
            binary: self.install.exe.clone(),
            bundle: self.install.bundle.clone(),
            path_dirs: self.install.path_dirs.clone(),
            version: Some(self.version),
            hook_timeout_secs,
            passthrough_env,
        }
    }
}

/// Finds, resolves, hashes, pins and version-checks the agent binary. `var` overrides PATH.
pub fn prepare(
    config: &Config,
    kind: AgentKind,
    name: &str,
    (var, exe, install): (&str, &str, &str),
    provider: &AgentSandbox,
    repo: &Path,
) -> Result<AgentBinary> {
    let found = match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(exe))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "{name} is not installed ({exe} not on PATH and {var} not set): install it \
                     with `{install}`, or set {var}"
                )
            })?,
    };
    let resolved =
        install_layout::resolve(kind, &found).map_err(|e| anyhow!("{name} cannot run: {e}"))?;
    let sha256 = identity::sha256_file(&resolved.exe)
        .with_context(|| format!("cannot read {}", resolved.exe.display()))?;
    identity::check_pins(name, config.pins(name), &sha256, &resolved.exe)
        .map_err(|e| anyhow!("{name} refused: {e}"))?;
    let printed = ask_version(provider, repo, &resolved, name)?;
    let version = Version::find_in(&printed);
    let support = match kind {
        AgentKind::ClaudeCode => identity::CLAUDE_CODE,
        AgentKind::Codex => identity::CODEX,
    };
    let (version, warning) = match (version, support.judge(name, version)) {
        (_, VersionVerdict::Refused(why)) => {
            bail!("{name} refused: {why} ({})", resolved.exe.display())
        }
        (Some(v), VersionVerdict::Tested) => (v, None),
        (Some(v), VersionVerdict::Untested(w)) => (v, Some(w)),
        // `judge` refuses an unknown version; kept apart so no unknown one slips through.
        (None, _) => bail!(
            "{name} refused: its --version printed no version ({})",
            resolved.exe.display()
        ),
    };
    Ok(AgentBinary {
        version,
        install: resolved,
        found,
        sha256,
        warning,
    })
}

/// Runs `EXE --version` in a sandbox of its own (nothing of the user's bound, no network) and
/// returns what it printed; a failure says how it ended and what it wrote on stderr.
fn ask_version(
    provider: &AgentSandbox,
    repo: &Path,
    install: &AgentInstall,
    name: &str,
) -> Result<String> {
    let cfg = LiveConfig {
        binary: install.exe.clone(),
        bundle: install.bundle.clone(),
        path_dirs: install.path_dirs.clone(),
        ..Default::default()
    };
    let (exe, binds) = live::agent_placement(&cfg, name);
    let mut spec = SandboxSpec::new(format!("version-{}", std::process::id()), repo);
    spec.limits = ResourceLimits::default();
    spec.env = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), SANDBOX_HOME.into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    spec.binds = binds
        .into_iter()
        .map(|(source, dest)| BindMount {
            source,
            dest,
            writable: false,
        })
        .collect();
    let sandbox = provider.spawn(&spec, &[&install.exe])?;
    let argv = vec![exe.display().to_string(), "--version".into()];
    let mut cmd = match provider.command(&sandbox, &argv, repo, false) {
        Ok(cmd) => cmd,
        Err(e) => {
            let _ = provider.teardown(sandbox);
            return Err(e);
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = provider.teardown(sandbox);
            return Err(e).with_context(|| format!("cannot start {name} in the sandbox"));
        }
    };
    let stderr = child.stderr.take().map(proc_report::keep_tail);
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(64 * 1024).read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + VERSION_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = provider.teardown(sandbox);
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let tail = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => bail!(
            "{name} ({}) cannot start: `--version` {}",
            install.exe.display(),
            proc_report::describe(Some(s), &tail)
        ),
        None => bail!(
            "{name} ({}) did not print its version within {} s: {}",
            install.exe.display(),
            VERSION_TIMEOUT.as_secs(),
            proc_report::describe(None, &tail)
        ),
    }
}
