//! The sandbox a real agent CLI runs in, whichever provider the run uses: bubblewrap, or a
//! session container (`--sandbox docker`). The launcher and the version check speak only to
//! this; each provider gives a `std::process::Command` the launcher spawns, waits for and
//! signals the same way (under docker it is `agp sandbox attach`, see `sandbox_attach`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use agp_contracts::sandbox::{BindMount, ExecRequest, PreflightReport, SandboxSpec, SANDBOX_HOME};
use agp_contracts::SandboxProvider;
use agp_sandbox::docker::{DockerProvider, DockerSession};
use agp_sandbox::{BubblewrapProvider, BubblewrapSession};
use anyhow::{anyhow, bail, Context, Result};

/// The provider a live agent runs in.
pub enum AgentSandbox {
    Bwrap(BubblewrapProvider),
    Docker {
        provider: DockerProvider,
        /// agp's own executable on the host: it runs the attach relay.
        agp_exe: PathBuf,
    },
}

/// A running sandbox of an [`AgentSandbox`].
pub enum AgentSession {
    Bwrap(BubblewrapSession),
    Docker(Box<DockerSession>),
}

impl AgentSandbox {
    /// How the session banner names it: `bubblewrap`, `docker (runc)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Bwrap(_) => "bubblewrap".into(),
            Self::Docker { provider, .. } => format!("docker ({})", provider.runtime().name()),
        }
    }

    /// The uid and gid the agent will run as when that is not this process's own (the
    /// container runs as the repository's owner): files and sockets agp hands the agent must
    /// be given to it. `None` under bubblewrap, which runs the agent as this user.
    pub fn foreign_user(&self, repo: &Path) -> Result<Option<(u32, u32)>> {
        match self {
            Self::Bwrap(_) => Ok(None),
            Self::Docker { .. } => {
                let meta = std::fs::metadata(repo)
                    .with_context(|| format!("repository {}", repo.display()))?;
                let me = rustix::process::geteuid().as_raw();
                Ok((meta.uid() != me).then_some((meta.uid(), meta.gid())))
            }
        }
    }

    /// Whether the provider creates missing bind targets as root (a container engine does):
    /// the launcher then gives the agent directories of its own in HOME.
    pub fn own_home_dirs(&self) -> bool {
        matches!(self, Self::Docker { .. })
    }

    /// Starts the sandbox. `executables`: host executables the spec binds (agp, the agent);
    /// in a container each also gets its ELF loader and libraries from the host, read-only
    /// at the paths its loader opens, since the pinned image need not have them.
    pub fn spawn(&self, spec: &SandboxSpec, executables: &[&Path]) -> Result<AgentSession> {
        match self {
            Self::Bwrap(p) => Ok(AgentSession::Bwrap(
                p.spawn(spec).map_err(|e| anyhow!("{e}"))?,
            )),
            Self::Docker { provider, .. } => {
                let mut spec = spec.clone();
                for exe in executables {
                    let files = agp_sandbox::docker::loader_files(exe).map_err(|e| {
                        anyhow!(
                            "{e}; the container image cannot run it: use an image that has \
                             what it needs, or --sandbox bwrap"
                        )
                    })?;
                    for (source, dest) in files {
                        if !spec.binds.iter().any(|b| b.dest == dest) {
                            spec.binds.push(BindMount {
                                source,
                                dest,
                                writable: false,
                            });
                        }
                    }
                }
                Ok(AgentSession::Docker(Box::new(
                    provider.spawn(&spec).map_err(|e| anyhow!("{e}"))?,
                )))
            }
        }
    }

    /// What the agent needs of the container that the preflight does not prove, checked from
    /// inside as the agent's user before it starts: a shell at `/bin/sh` (both agents run their
    /// tools through one), a writable HOME, and agp's sockets (`agp_inside` connects to each;
    /// gVisor reaches host sockets only when its runtime allows it). One line naming the fix,
    /// else. Nothing to check under bubblewrap, whose root is the host's.
    pub fn check_ready(
        &self,
        session: &AgentSession,
        agp_inside: &str,
        sockets: &[&str],
    ) -> Result<()> {
        let (Self::Docker { provider, .. }, AgentSession::Docker(s)) = (self, session) else {
            return Ok(());
        };
        let run = |argv: Vec<String>| {
            provider
                .exec(
                    s,
                    &ExecRequest {
                        argv,
                        cwd: s.repo().to_path_buf(),
                        stdin: None,
                        timeout: Duration::from_secs(30),
                    },
                )
                .map_err(|e| anyhow!("{e}"))
        };
        let image = provider.image();
        let shell = run(vec![
            "/bin/sh".into(),
            "-c".into(),
            "test -w \"$HOME\" && test -w /tmp".into(),
        ])?;
        if shell.exit_code != Some(0) {
            bail!(
                "the container image {image} cannot run an agent: it needs a shell at /bin/sh \
                 and a HOME ({SANDBOX_HOME}) the agent can write, world-writable and sticky like \
                 /tmp (`agp sandbox image build` makes one){}",
                tail(&shell.stderr)
            );
        }
        let mut argv = vec![agp_inside.to_owned(), "sandbox".into(), "reach".into()];
        argv.extend(sockets.iter().map(|s| (*s).to_owned()));
        let reached = run(argv)?;
        if reached.exit_code != Some(0) {
            bail!(
                "the agent cannot reach agp's sockets from inside the container{}; under runsc \
                 (gVisor) register the runtime with \"runtimeArgs\": [\"--network=none\", \
                 \"--host-uds=open\"] in the engine's daemon.json",
                tail(&reached.stderr)
            );
        }
        Ok(())
    }

    /// The full preflight report, passed or not (the caller journals it, then refuses a
    /// failed one).
    pub fn preflight(&self, session: &AgentSession) -> Result<PreflightReport> {
        match (self, session) {
            (Self::Bwrap(p), AgentSession::Bwrap(s)) => p.run_preflight(s),
            (Self::Docker { provider, .. }, AgentSession::Docker(s)) => provider.run_preflight(s),
            _ => unreachable!("a session of another provider"),
        }
        .map_err(|e| anyhow!("{e}"))
    }

    /// A command running `argv` inside the sandbox, in `cwd`, for the caller to set stdout
    /// and stderr on, spawn, wait for and signal. `stdin`: the process reads the command's
    /// stdin (else set it to null).
    pub fn command(
        &self,
        session: &AgentSession,
        argv: &[String],
        cwd: &Path,
        stdin: bool,
    ) -> Result<Command> {
        match (self, session) {
            (Self::Bwrap(p), AgentSession::Bwrap(s)) => {
                p.command(s, argv, cwd).map_err(|e| anyhow!("{e}"))
            }
            (Self::Docker { provider, agp_exe }, AgentSession::Docker(s)) => {
                let exec = provider
                    .create_exec(s, argv, cwd, stdin)
                    .map_err(|e| anyhow!("{e}"))?;
                Ok(attach_command(
                    provider,
                    agp_exe,
                    &exec,
                    stdin.then_some("--stdin"),
                ))
            }
            _ => unreachable!("a session of another provider"),
        }
    }

    /// Like [`AgentSandbox::command`] with stdin, for a person at the terminal on this
    /// process's stdin: under bubblewrap the command inherits the terminal; in a container it
    /// gets a terminal of its own (of the host's `TERM`), relayed raw with the window size.
    pub fn terminal_command(
        &self,
        session: &AgentSession,
        argv: &[String],
        cwd: &Path,
    ) -> Result<Command> {
        match (self, session) {
            (Self::Bwrap(..), AgentSession::Bwrap(..)) => self.command(session, argv, cwd, true),
            (Self::Docker { provider, agp_exe }, AgentSession::Docker(s)) => {
                let term = std::env::var("TERM").ok().filter(|t| !t.is_empty());
                let exec = provider
                    .create_terminal_exec(s, argv, cwd, term.as_deref())
                    .map_err(|e| anyhow!("{e}"))?;
                Ok(attach_command(provider, agp_exe, &exec, Some("--tty")))
            }
            _ => unreachable!("a session of another provider"),
        }
    }

    /// Ends the sandbox and everything in it.
    pub fn teardown(&self, session: AgentSession) -> Result<()> {
        match (self, session) {
            (Self::Bwrap(p), AgentSession::Bwrap(s)) => p.teardown(s),
            (Self::Docker { provider, .. }, AgentSession::Docker(s)) => provider.teardown(*s),
            _ => unreachable!("a session of another provider"),
        }
        .map_err(|e| anyhow!("{e}"))
    }
}

/// `agp sandbox attach` of `exec`, with `flag` (`--stdin`, `--tty`) when given.
fn attach_command(
    provider: &DockerProvider,
    agp_exe: &Path,
    exec: &str,
    flag: Option<&str>,
) -> Command {
    let mut cmd = Command::new(agp_exe);
    cmd.args(["sandbox", "attach", "--socket"])
        .arg(provider.engine().socket())
        .args(["--exec", exec]);
    cmd.args(flag);
    // The relay needs nothing of agp's environment (the command's own is in the exec), and
    // must not hand the session's variables to anything it starts.
    cmd.env_clear();
    cmd
}

/// `: WHAT` for a failed check's stderr, trimmed, when it said anything.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", agp_channels::sanitize::escape(text))
    }
}
