//! The bubblewrap provider.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use agp_contracts::sandbox::{
    ExecOutput, ExecRequest, Isolation, PreflightReport, ResourceLimits, SandboxError,
    SandboxProvider, SandboxSpec,
};

use crate::cgroup::SessionCgroup;
use crate::growth::RepoGrowth;
use crate::{
    cgroup, env, gitguard, layout, limits, preflight, run, seccomp, sockets, DEFAULT_OUTPUT_CAP,
};
use agp_contracts::sandbox::LimitExceeded;

/// How to install bubblewrap, for the error shown when it is missing.
pub fn install_hint(looked_at: &str) -> String {
    format!(
        "bubblewrap (bwrap) not found ({looked_at}); install it with `apt-get install bubblewrap` \
         (Debian/Ubuntu), `dnf install bubblewrap` (Fedora/RHEL) or `pacman -S bubblewrap` (Arch), \
         or opt out explicitly with `--sandbox none` (nothing is then isolated)"
    )
}

/// The git metadata as it was before a long-running command (see
/// [`BubblewrapProvider::command_guarded`]).
#[derive(Debug)]
pub struct GitMetadataGuard(gitguard::Snapshot);

impl GitMetadataGuard {
    /// The git metadata of `repo` as it is now, with no sandbox: for a caller that scrubs while
    /// an agent runs elsewhere (the daemon, on every hook event of a gate-mode session). The
    /// same snapshot a sandbox build takes; the bubblewrap arguments that come with it are
    /// dropped.
    pub fn watch(repo: &Path) -> Result<Self, SandboxError> {
        let repo = std::fs::canonicalize(repo).map_err(|e| {
            SandboxError::Refused(format!(
                "repository {} is not accessible: {e}",
                repo.display()
            ))
        })?;
        let mut unused = Command::new("/nonexistent");
        let mut inherit = limits::Inherit::default();
        gitguard::protect(&repo, &mut unused, &mut inherit).map(Self)
    }

    /// Remove what was created or replaced in the git metadata since the command started and
    /// is not commit state; `path (what)` for each. Run it after the command has exited:
    /// while it runs, it could write again.
    pub fn scrub(&self) -> Vec<String> {
        gitguard::scrub(&self.0)
    }
}

/// Runs commands in per-call bubblewrap sandboxes built from a session's spec.
#[derive(Debug, Clone)]
pub struct BubblewrapProvider {
    /// `Err` holds where we looked, for the install hint.
    bwrap: Result<PathBuf, String>,
    output_cap: usize,
    protected: Vec<PathBuf>,
    /// Which per-session cgroups can be made here (probed once).
    cgroups: OnceLock<cgroup::Available>,
}

/// A session: the validated spec turned into bubblewrap arguments and an environment.
/// Each command gets fresh namespaces; only the repository persists between commands.
#[derive(Debug, Clone)]
pub struct BubblewrapSession {
    /// Shared (not a String): the session is cloned per command, and kept small.
    id: Arc<str>,
    repo: PathBuf,
    layout: Arc<layout::Layout>,
    env: Vec<(String, String)>,
    /// Limits applied with setrlimit (max_processes is left out when a cgroup holds it).
    limits: ResourceLimits,
    cgroup: Option<Arc<SessionCgroup>>,
    growth: Option<Arc<RepoGrowth>>,
    stop: Arc<Stop>,
}

/// The kill switch of one session: once raised, a running command is killed at the next
/// watch (every half second) and later ones are refused.
#[derive(Debug, Default)]
struct Stop {
    raised: std::sync::atomic::AtomicBool,
    running: std::sync::atomic::AtomicUsize,
}

/// Counts a command as running while it lives.
struct Running<'a>(&'a Stop);

impl<'a> Running<'a> {
    fn start(stop: &'a Stop) -> Self {
        stop.running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(stop)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl BubblewrapSession {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The canonical repository path (the same inside and outside).
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Whether `max_processes` is held by a per-session pids cgroup (rather than
    /// RLIMIT_NPROC).
    pub fn process_limit_by_cgroup(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|c| c.limits_processes())
    }

    /// Whether `session_memory_bytes` is held by a per-session memory cgroup (otherwise only
    /// the per-process RLIMIT_AS bounds memory).
    pub fn memory_limit_by_cgroup(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|c| c.limits_memory())
    }
}

impl Default for BubblewrapProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl BubblewrapProvider {
    /// Use the `bwrap` found on PATH.
    pub fn new() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .map(|dir| dir.join("bwrap"))
            .find(|p| is_executable(p));
        Self {
            bwrap: found.ok_or_else(|| "not on PATH".to_string()),
            output_cap: DEFAULT_OUTPUT_CAP,
            protected: Vec::new(),
            cgroups: OnceLock::new(),
        }
    }

    /// Use this bwrap executable.
    pub fn with_bwrap_path(path: impl Into<PathBuf>) -> Self {
        Self {
            bwrap: Ok(path.into()),
            ..Self::new()
        }
    }

    /// Cap on captured stdout and on captured stderr of one command (each).
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }

    /// A host path a session's repository must never contain (agp's own home, say): such a
    /// repository is refused, since it is mounted read-write.
    pub fn protect(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }

    /// The bwrap executable, or [`SandboxError::Missing`] with install instructions.
    pub fn bwrap(&self) -> Result<&Path, SandboxError> {
        match &self.bwrap {
            Ok(p) if is_executable(p) => Ok(p),
            Ok(p) => Err(SandboxError::Missing(install_hint(&format!(
                "no executable at {}",
                p.display()
            )))),
            Err(where_) => Err(SandboxError::Missing(install_hint(where_))),
        }
    }

    /// A sandboxed command for a long-running process with its own stdio (an agent CLI):
    /// the caller sets stdin/stdout/stderr and spawns it, once (the command carries a
    /// one-shot seccomp program). The process and everything it starts
    /// die with the returned child's parent (`--die-with-parent`).
    pub fn command(
        &self,
        session: &BubblewrapSession,
        argv: &[String],
        cwd: &Path,
    ) -> Result<Command, SandboxError> {
        self.sandboxed(session, None, argv, cwd).map(|(cmd, _)| cmd)
    }

    /// [`Self::command`], plus the second half of the git metadata guard: call
    /// [`GitMetadataGuard::scrub`] once the process has exited (the session's end, for an
    /// agent CLI) to remove the metadata it created in the git directory, and journal what
    /// it returns.
    pub fn command_guarded(
        &self,
        session: &BubblewrapSession,
        argv: &[String],
        cwd: &Path,
    ) -> Result<(Command, GitMetadataGuard), SandboxError> {
        self.sandboxed(session, None, argv, cwd)
            .map(|(cmd, snapshot)| (cmd, GitMetadataGuard(snapshot)))
    }

    pub(crate) fn sandboxed(
        &self,
        session: &BubblewrapSession,
        status_fd: Option<RawFd>,
        argv: &[String],
        cwd: &Path,
    ) -> Result<(Command, gitguard::Snapshot), SandboxError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(SandboxError::Refused("empty command".into()));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(SandboxError::Refused("command contains a NUL byte".into()));
        }
        layout::check_cwd(cwd, &session.repo)?;
        let mut cmd = Command::new(self.bwrap()?);
        let mut inherit = limits::Inherit::default();
        cmd.args(&session.layout.head);
        for path in &session.layout.etc_files {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                // Gone since the session started: the sandbox just lacks it too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let fd = OwnedFd::from(file);
            cmd.arg("--perms").arg("0644").arg("--file");
            cmd.arg(fd.as_raw_fd().to_string()).arg(path);
            inherit.owned.push(fd);
        }
        cmd.args(&session.layout.mid);
        let snapshot = gitguard::protect(&session.repo, &mut cmd, &mut inherit)?;
        // After the repository and git binds, so each mask lies on top of them.
        cmd.args(sockets::mask_args(&sockets::find(&session.repo)?));
        cmd.args(&session.layout.tail);
        if let Some(fd) = status_fd {
            cmd.arg("--json-status-fd").arg(fd.to_string());
            inherit.borrowed.push(fd);
        }
        if let Some(program) = seccomp::program_fd()? {
            cmd.arg("--seccomp").arg(program.as_raw_fd().to_string());
            inherit.owned.push(program);
        }
        cmd.arg("--chdir").arg(cwd).arg("--").args(argv);
        // bwrap passes its own environment on, so clearing it here is what clears the
        // sandbox's (and keeps values off bwrap's command line, visible in the host's ps).
        cmd.env_clear()
            .envs(session.env.iter().map(|(k, v)| (k, v)));
        cmd.current_dir("/");
        limits::install(
            &mut cmd,
            &session.limits,
            inherit,
            session
                .cgroup
                .as_ref()
                .map(|c| c.procs_fds())
                .unwrap_or_default(),
        );
        Ok((cmd, snapshot))
    }

    /// Run the preflight and return the full report, whether it passed or not (for
    /// `agp doctor --json` and for journaling). [`SandboxProvider::preflight`] is the gate.
    pub fn run_preflight(
        &self,
        session: &BubblewrapSession,
    ) -> Result<PreflightReport, SandboxError> {
        preflight::run(self, session)
    }

    pub(crate) fn exec_inner(
        &self,
        session: &BubblewrapSession,
        request: &ExecRequest,
    ) -> Result<(ExecOutput, Vec<serde_json::Value>), SandboxError> {
        use std::sync::atomic::Ordering;
        let stop = &*session.stop;
        if stop.raised.load(Ordering::Acquire) {
            return Err(SandboxError::Refused("the session was stopped".into()));
        }
        let _running = Running::start(stop);
        if let Some(growth) = &session.growth {
            growth.admit().map_err(SandboxError::LimitExceeded)?;
        }
        let before = session.cgroup.as_ref().map(|c| c.counters());
        let (read_end, write_end) = status_pipe()?;
        let (cmd, snapshot) = self.sandboxed(
            session,
            Some(write_end.as_raw_fd()),
            &request.argv,
            &request.cwd,
        )?;
        let mut growth = session.growth.as_ref().map(|g| g.watcher());
        let mut watcher =
            || stop.raised.load(Ordering::Acquire) || growth.as_mut().is_some_and(|w| w());
        let result = run::run(
            cmd,
            request.stdin.as_deref(),
            request.timeout,
            self.output_cap,
            false,
            Some(&mut watcher as &mut dyn FnMut() -> bool),
        );
        drop(write_end);
        // Every process of the command is gone (its pid namespace died with bwrap), so
        // nothing can race the check.
        let git_metadata_removed = gitguard::scrub(&snapshot);
        let limit_exceeded = limit_hit(session, before);
        let captured = result?;
        let status = read_status(read_end);
        let exit_from_status = status
            .iter()
            .find_map(|v| v.get("exit-code").and_then(serde_json::Value::as_i64))
            .map(|c| c as i32);
        let exit_code = match (captured.timed_out || captured.stopped, exit_from_status) {
            (true, _) => None,
            (false, Some(code)) => Some(code),
            (false, None) => {
                let stderr = String::from_utf8_lossy(&captured.stderr);
                if stderr.starts_with("bwrap: execvp") {
                    // The sandbox was fine; the program does not exist inside it.
                    Some(127)
                } else {
                    return Err(SandboxError::Refused(format!(
                        "bubblewrap could not set up the sandbox: {}",
                        stderr.trim()
                    )));
                }
            }
        };
        Ok((
            ExecOutput {
                git_metadata_removed,
                limit_exceeded,
                ..captured.into_output(exit_code)
            },
            status,
        ))
    }
}

impl BubblewrapProvider {
    fn cgroups_available(&self) -> cgroup::Available {
        *self.cgroups.get_or_init(cgroup::available)
    }
}

/// The first session bound the command just hit: memory (its biggest process was killed),
/// processes (forks failed), repository growth (later commands are refused).
fn limit_hit(
    session: &BubblewrapSession,
    before: Option<cgroup::Counters>,
) -> Option<LimitExceeded> {
    let from_cgroup = session
        .cgroup
        .as_ref()
        .zip(before)
        .and_then(|(c, before)| c.hits_since(before).into_iter().next())
        .map(|(limit, bound, observed)| match limit {
            "session_memory" => cgroup::session_memory_exceeded(bound, observed),
            _ => LimitExceeded {
                limit: limit.to_string(),
                bound,
                observed,
                message: format!(
                    "the session's bound of {bound} processes (config.toml [sandbox.limits] \
                     processes) was reached: {observed} process creations failed"
                ),
            },
        });
    // The repository is measured after every command, so a later refusal has a fresh size.
    let from_growth = session.growth.as_ref().and_then(|g| g.check());
    from_cgroup.or(from_growth)
}

fn random_hex() -> Result<String, SandboxError> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| SandboxError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(hex::encode(bytes))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn status_pipe() -> Result<(std::fs::File, OwnedFd), SandboxError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((std::fs::File::from(read), write))
}

/// bubblewrap's status documents. bwrap never hands the descriptor to the sandboxed command,
/// and every write end is closed by now, so this reads to EOF without blocking.
fn read_status(mut file: std::fs::File) -> Vec<serde_json::Value> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .collect()
}

impl SandboxProvider for BubblewrapProvider {
    type Session = BubblewrapSession;

    fn spawn(&self, spec: &SandboxSpec) -> Result<BubblewrapSession, SandboxError> {
        self.bwrap()?;
        if spec.session.is_empty() {
            return Err(SandboxError::Refused("empty session id".into()));
        }
        let repo = layout::check_repo(&spec.repo, &self.protected)?;
        let layout = Arc::new(layout::bwrap_args(spec, &repo)?);
        let env = env::build(&spec.env)?;
        let mut limits = spec.limits.clone();
        let avail = self.cgroups_available();
        let want_pids = limits.max_processes.filter(|_| avail.pids);
        let want_memory = limits.session_memory_bytes.filter(|_| avail.memory);
        let cgroup = if want_pids.is_some() || want_memory.is_some() {
            let name = format!("agp-sandbox-{}-{}", std::process::id(), random_hex()?);
            SessionCgroup::create(&name, want_pids, want_memory)?.map(Arc::new)
        } else {
            None
        };
        if cgroup.as_ref().is_some_and(|c| c.limits_processes()) {
            limits.max_processes = None;
        }
        let growth = limits
            .repo_growth_bytes
            .map(|bound| Arc::new(RepoGrowth::new(&repo, bound)));
        Ok(BubblewrapSession {
            id: spec.session.as_str().into(),
            repo,
            layout,
            env,
            limits,
            cgroup,
            growth,
            stop: Arc::default(),
        })
    }

    fn exec(
        &self,
        session: &BubblewrapSession,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SandboxError> {
        if request.timeout.is_zero() {
            return Err(SandboxError::Refused("zero timeout".into()));
        }
        self.exec_inner(session, request).map(|(out, _)| out)
    }

    fn teardown(&self, session: BubblewrapSession) -> Result<(), SandboxError> {
        // Each exec's namespaces, tmpfs HOME and /tmp die with it. Dropping the session's
        // last handle kills whatever is left in its pids cgroup (a long-running command)
        // and removes the cgroup.
        drop(session);
        Ok(())
    }

    fn interrupt(&self, session: &BubblewrapSession) -> Result<bool, SandboxError> {
        use std::sync::atomic::Ordering;
        session.stop.raised.store(true, Ordering::Release);
        Ok(session.stop.running.load(Ordering::Acquire) > 0)
    }

    fn isolation(&self) -> Isolation {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mut caveats = vec![
            if seccomp::SUPPORTED {
                "seccomp is a denylist of rarely needed, risky system calls (keyrings, modules, BPF, perf, userfaultfd, mounts, namespaces, file handles); the rest of the kernel's system call surface stays reachable".to_string()
            } else {
                "no seccomp filter on this architecture: the kernel's full system call surface is reachable".to_string()
            },
            "each command gets fresh namespaces and an empty tmpfs HOME and /tmp; only the repository persists between commands".to_string(),
            "max_cpu_seconds is RLIMIT_CPU: per process, not per session".to_string(),
            "max_memory_bytes is RLIMIT_AS per process; the tmpfs HOME and /tmp are each capped at tmpfs_bytes".to_string(),
            "repo_growth_bytes is checked after each command (a walk of the repository) and by RLIMIT_FSIZE per file: one command can write past it before it is stopped; later commands are then refused until the repository is back under it".to_string(),
            "extra read-only and read-write binds expose exactly what they name, Unix sockets in them included".to_string(),
            format!("host Unix sockets inside the repository are masked (found by a walk each time a sandbox is built; refused past {} entries or {} sockets); one a host process creates there after a sandbox was built is reachable from it, which for the agent CLI of hook mode means until the session ends", sockets::MAX_ENTRIES, sockets::MAX_SOCKETS),
            "the repository is writable, but its git directory only for what committing needs (objects, refs, logs, index, HEAD and the usual state files): existing config, hooks, info, worktrees, modules, alternates and the like are read-only, and metadata a command creates or replaces there (commondir, config.worktree, alternates, rebase/cherry-pick state) is moved to .git/agp-quarantine after the command and reported; hooks under core.hooksPath or symlinked into the work tree and submodule .git pointers are read-only too; a long-running command (the agent CLI) gets the second half only when its owner scrubs (agp's daemon does on every hook event of a gate-mode session and every 3 s, so a plant can live until then); a .git planted in a subdirectory and other files a host tool may execute later (Makefile, .envrc, editor tasks, package scripts, what a hook script runs) are not protected".to_string(),
        ];
        if root {
            caveats.push(
                "agp runs as root: the sandboxed process keeps kernel uid 0 without any capability, so files visible inside and owned by root are accessible per their owner bits (only system directories, read-only, and the repository are visible); seccomp refuses setuid/setgid modes and device nodes, and file capabilities need a dropped capability, so no privilege is carried out in files".to_string(),
            );
        }
        let avail = self.cgroups_available();
        caveats.push(if avail.memory {
            "session_memory_bytes is a per-session memory cgroup (no swap), shared by all commands of the session and their tmpfs pages; when reached, the kernel kills the largest process".to_string()
        } else {
            "session_memory_bytes is NOT enforced: no memory cgroup can be created here; memory is bounded only per process (max_memory_bytes, RLIMIT_AS) and per tmpfs, so several processes together can use more".to_string()
        });
        caveats.push(if avail.pids {
            "max_processes is a per-session pids cgroup (pids.max), shared by all commands of the session".to_string()
        } else if root {
            "max_processes (RLIMIT_NPROC) is not enforced: the kernel exempts root, and no pids cgroup can be created here".to_string()
        } else {
            "max_processes (RLIMIT_NPROC) counts every process of the invoking user, not only the sandbox's (no pids cgroup can be created here)".to_string()
        });
        Isolation {
            provider: "bubblewrap".into(),
            network_isolated: true,
            filesystem_isolated: true,
            pid_isolated: true,
            caveats,
        }
    }

    fn preflight(&self, session: &BubblewrapSession) -> Result<PreflightReport, SandboxError> {
        let report = preflight::run(self, session)?;
        if report.passed {
            Ok(report)
        } else {
            Err(SandboxError::PreflightFailed(report.failure_summary()))
        }
    }
}

/// Default timeout of one preflight run.
pub(crate) const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);
