//! The container provider: one hardened container per session in a Docker Engine API
//! compatible engine (Docker, or Podman's API socket), reached over its Unix socket; each
//! command is an exec in it.
//!
//! Hardening, each on by default and checked after the container starts against what the
//! engine reports (see `container`), then proven from inside by the preflight: no network,
//! all capabilities dropped, no-new-privileges, the engine's default seccomp profile, a
//! read-only root, tmpfs `/tmp` and HOME with a size, memory/pids/CPU limits and per-process
//! rlimits from the session bounds, a non-root user (the repository's owner), only the
//! repository bind-mounted read-write, and the engine socket and agp's home never mounted.
//! The image is pinned by digest (see `image`). With `runsc` the container gets gVisor's
//! user-space kernel. Podman's container is made through its own API (see `libpod`) and
//! checked the same way.

mod api;
mod attach;
mod call;
mod cgroup;
mod container;
mod elf;
mod engine_kind;
mod exec;
mod fence;
mod git;
pub mod image;
mod libpod;
mod lifecycle;
mod oom;
mod preflight;
mod reap;
mod tar;
mod terminal;
mod watch;

pub use engine_kind::{podman_runtime_fix, podman_runtime_refusal, EngineKind};

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agp_contracts::sandbox::{
    ExecOutput, ExecRequest, Isolation, PreflightReport, ResourceLimits, SandboxError,
    SandboxProvider, SandboxSpec,
};

pub use api::Engine;
pub use attach::{attach, exec_container, remove_container};
pub use container::{MANAGED_LABEL, OWNER_LABEL, SESSION_LABEL};
pub use elf::loader_files;
pub use image::ImageRef;
pub use lifecycle::remove_orphans;
use lifecycle::{create_and_start, remove};
pub use terminal::{attach_terminal, resize_exec};

use crate::growth::RepoGrowth;
use crate::{env, layout, sockets, DEFAULT_OUTPUT_CAP};

/// The OCI runtime the engine runs the container with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// Namespaces and cgroups on the host kernel.
    #[default]
    Runc,
    /// gVisor: a user-space kernel between the container and the host's.
    Runsc,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Self::Runc => "runc",
            Self::Runsc => "runsc",
        }
    }
}

impl std::str::FromStr for Runtime {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, SandboxError> {
        match s {
            "runc" => Ok(Self::Runc),
            "runsc" => Ok(Self::Runsc),
            other => Err(SandboxError::Refused(format!(
                "unknown container runtime `{other}`: use \"runc\" or \"runsc\" (gVisor)"
            ))),
        }
    }
}

/// Runs sessions as containers of a pinned image.
#[derive(Debug, Clone)]
pub struct DockerProvider {
    engine: Engine,
    image: ImageRef,
    runtime: Runtime,
    output_cap: usize,
    protected: Vec<PathBuf>,
    /// Paths inside a protected one that binds may still name (see [`Self::expose`]).
    exposed: Vec<PathBuf>,
    owner: String,
}

/// A running session container. Dropping it removes the container.
#[derive(Debug)]
pub struct DockerSession {
    engine: Engine,
    id: String,
    owner: String,
    container: String,
    image_id: String,
    runtime: Runtime,
    repo: PathBuf,
    /// The git metadata bind sources as checked, watched while the container starts.
    fence: fence::Fence,
    user: String,
    uid_gid: (u32, u32),
    env: Vec<(String, String)>,
    binds: Vec<(PathBuf, PathBuf, bool)>,
    limits: ResourceLimits,
    growth: Option<RepoGrowth>,
    /// Set when a restart after a timeout failed: later commands are refused.
    broken: Mutex<Option<String>>,
    /// PIDs (inside) of the container's own processes the reaper spares, space-separated:
    /// its waiting process, and the watcher when there is one.
    spared: Mutex<String>,
    /// How a command is shown to have left nothing running.
    check: Mutex<reap::Check>,
    /// The engine serving the session, and its version as it reports it.
    engine_kind: EngineKind,
    engine_version: String,
    /// Under runc with a memory bound: the container's memory cgroup, read for OOM kills.
    memory: Mutex<Option<oom::MemoryWatch>>,
    /// Held for the whole of each command: after one, the reaper kills every process of the
    /// commands' uid (and a timeout restarts the container), which would kill another command
    /// running beside it. So a session's commands run one at a time.
    one_at_a_time: Mutex<()>,
    removed: bool,
}

impl DockerSession {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The engine's id of the session's container.
    pub fn container_id(&self) -> &str {
        &self.container
    }

    /// The image ID the container runs.
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Whether a command that left nothing is shown clean by reading the container's cgroup
    /// on the host (one round trip per command) rather than by a second exec (runc, with the
    /// engine's PIDs this host's).
    pub fn host_checked(&self) -> bool {
        self.check
            .lock()
            .is_ok_and(|c| matches!(*c, reap::Check::HostCgroup(_)))
    }

    /// Whether a command that left nothing is shown clean by the session's watcher (an exec
    /// of the container's own uid kept open, see `watch`) rather than by a second exec: where
    /// the host cgroup cannot be read (gVisor), while the watcher answers.
    pub fn watched(&self) -> bool {
        self.check
            .lock()
            .is_ok_and(|c| matches!(*c, reap::Check::Watcher(_)))
    }

    fn plan(&self) -> container::Plan<'_> {
        container::Plan {
            session: &self.id,
            owner: &self.owner,
            image_id: &self.image_id,
            runtime: self.runtime,
            user: self.uid_gid,
            repo: &self.repo,
            env: &self.env,
            binds: self.binds.clone(),
            limits: &self.limits,
        }
    }
}

impl Drop for DockerSession {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove(&self.engine, &self.container);
        }
    }
}

impl DockerProvider {
    pub fn new(engine: Engine, image: ImageRef, runtime: Runtime) -> Self {
        Self {
            engine,
            image,
            runtime,
            output_cap: DEFAULT_OUTPUT_CAP,
            protected: Vec::new(),
            exposed: Vec::new(),
            owner: String::new(),
        }
    }

    /// Label every container with `owner` (`agp.owner`), so [`remove_orphans`] run by the same
    /// owner (an agp home, at daemon start) touches only its own.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Cap on captured stdout and on captured stderr of one command (each).
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.output_cap = bytes;
        self
    }

    /// A host path that must never be visible inside (agp's own home, say): a repository
    /// or bind that would expose it is refused, and the preflight checks it is absent.
    pub fn protect(mut self, path: impl Into<PathBuf>) -> Self {
        self.protected.push(path.into());
        self
    }

    /// A path inside a protected one that a bind may still name, it or what is under it (the
    /// session's own gateway socket and scratch directory in agp's run directory): binding it
    /// exposes only itself, never the protected path around it.
    pub fn expose(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.exposed
            .push(std::fs::canonicalize(&path).unwrap_or(path));
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The OCI runtime sessions run with.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// The pinned image sessions run.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// What `agp doctor` checks without starting a container: the engine answers, speaks
    /// API 1.41 or later, has the configured runtime, and holds the pinned image. One line
    /// describing the engine, or the first problem.
    pub fn check_engine(&self) -> Result<String, SandboxError> {
        let version = self.engine.call("GET", "/version", None)?;
        if !version.ok() {
            return Err(SandboxError::Missing(format!(
                "container engine at {} does not answer /version: {}",
                self.engine.socket().display(),
                version.message()
            )));
        }
        let version = version.json()?;
        let api = version["ApiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let numbers: Vec<u32> = api.split('.').filter_map(|n| n.parse().ok()).collect();
        if numbers.len() != 2 || (numbers[0], numbers[1]) < (1, 41) {
            return Err(SandboxError::Missing(format!(
                "container engine speaks API {api:?}; agp needs 1.41 (Docker Engine 20.10) or later"
            )));
        }
        let info = self.engine.call("GET", "/info", None)?.json()?;
        let runtime = self.runtime.name();
        if info["Runtimes"].get(runtime).is_none() {
            return Err(SandboxError::Missing(format!(
                "container engine has no runtime {runtime:?} (has {}); register it in the \
                 engine's daemon.json (runsc: \"runtimeArgs\": [\"--network=none\"])",
                info["Runtimes"]
                    .as_object()
                    .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )));
        }
        let kind = EngineKind::of_version(&version);
        if kind == EngineKind::Podman {
            let default = engine_kind::podman_default_runtime(&self.engine)?;
            if let Some(why) = podman_runtime_refusal(runtime, &default) {
                return Err(SandboxError::Missing(why));
            }
        }
        let id = self.image.resolve(&self.engine)?;
        Ok(format!(
            "{} {} (API {api}) at {}, runtime {runtime}, pinned image {id}",
            kind.name(),
            version["Version"].as_str().unwrap_or_default(),
            self.engine.socket().display()
        ))
    }

    /// The session's CPU bound as the engine can hold it: no more than the engine's CPUs
    /// (Docker refuses a larger one, and it would bound nothing).
    fn cpu_bound(&self, asked: Option<u64>) -> Result<Option<u64>, SandboxError> {
        let Some(asked) = asked else {
            return Ok(None);
        };
        let info = self.engine.call("GET", "/info", None)?;
        info.refuse_unless_ok(|| "container engine does not answer /info".to_owned())?;
        let cpus = info.json()?["NCPU"].as_u64().filter(|n| *n > 0);
        Ok(Some(
            cpus.map_or(asked, |n| asked.min(n.saturating_mul(1000))),
        ))
    }

    /// Run the preflight and return the full report, whether it passed or not.
    pub fn run_preflight(&self, session: &DockerSession) -> Result<PreflightReport, SandboxError> {
        preflight::run(self, session)
    }

    /// Paths whose exposure would hand the sandbox the engine or agp itself.
    fn guarded(&self) -> Vec<PathBuf> {
        let mut all = self.protected.clone();
        all.push(self.engine.socket().to_path_buf());
        all.iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect()
    }

    fn checked_binds(
        &self,
        spec: &SandboxSpec,
        repo: &Path,
        fence: &mut fence::Fence,
    ) -> Result<Vec<(PathBuf, PathBuf, bool)>, SandboxError> {
        let guarded = self.guarded();
        let mut binds = Vec::new();
        let ro = spec.ro_binds.iter().map(|p| (p, p, false));
        let extra = spec.binds.iter().map(|b| (&b.source, &b.dest, b.writable));
        for (source, dest, writable) in ro.chain(extra) {
            let source = layout::check_source(source, repo)?;
            layout::check_dest(dest)?;
            let exposed = self.exposed.iter().any(|e| source.starts_with(e));
            if let Some(hit) = guarded
                .iter()
                .find(|g| g.starts_with(&source) || (source.starts_with(g) && !exposed))
            {
                return Err(SandboxError::Refused(format!(
                    "bind {} would expose {} inside the container",
                    source.display(),
                    hit.display()
                )));
            }
            binds.push((source, dest.clone(), writable));
        }
        // Host Unix sockets in the repository are masked with /dev/null, as under bubblewrap.
        let masks = sockets::find(repo)?;
        // A socket at the top of the git directory (git's own `fsmonitor--daemon.ipc`) is
        // also an entry the guard binds over itself: two mounts on one path are refused by
        // the engine, and a read-only bind still lets a socket be connected to. The mask wins.
        binds.extend(
            git::binds(repo, fence)?
                .into_iter()
                .filter(|(_, dest, _)| !masks.contains(dest)),
        );
        if self.runtime == Runtime::Runsc && !masks.is_empty() {
            // runsc (20221219) does not start with any mount over a socket ("cannot read client
            // sync file"), whatever the source: refused here, saying why and what to do.
            return Err(SandboxError::Refused(format!(
                "under runsc (gVisor) a session cannot start on a repository holding host Unix \
                 sockets (gVisor cannot mount over them to mask them): stop what listens at {} \
                 or use runtime runc",
                masks
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for socket in masks {
            binds.push((PathBuf::from("/dev/null"), socket, false));
        }
        Ok(binds)
    }
}

pub(crate) fn random_hex() -> Result<String, SandboxError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| SandboxError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(hex::encode(bytes))
}

impl SandboxProvider for DockerProvider {
    type Session = DockerSession;

    fn spawn(&self, spec: &SandboxSpec) -> Result<DockerSession, SandboxError> {
        if spec.session.is_empty() {
            return Err(SandboxError::Refused("empty session id".into()));
        }
        if spec.share_network {
            return Err(SandboxError::Refused(
                "the container provider never shares the host network".into(),
            ));
        }
        let repo = layout::check_repo(&spec.repo, &self.guarded())?;
        let meta = std::fs::metadata(&repo)?;
        if meta.uid() == 0 {
            return Err(SandboxError::Refused(format!(
                "repository {} is owned by root; the container runs as the repository's owner \
                 and never as root: give the repository to a regular user (chown)",
                repo.display()
            )));
        }
        let mut fence = fence::Fence::new(&repo);
        let binds = self.checked_binds(spec, &repo, &mut fence)?;
        let (kind, engine_version) = engine_kind::of_with_version(&self.engine)?;
        if kind == EngineKind::Podman {
            let default = engine_kind::podman_default_runtime(&self.engine)?;
            if let Some(why) = podman_runtime_refusal(self.runtime.name(), &default) {
                return Err(SandboxError::Refused(why));
            }
        }
        let mut limits = spec.limits.clone();
        limits.cpu_millis = self.cpu_bound(limits.cpu_millis)?;
        let env = env::build(&spec.env)?;
        let image_id = self.image.resolve(&self.engine)?;
        let uid_gid = (meta.uid(), meta.gid());
        let mut session = DockerSession {
            engine: self.engine.clone(),
            id: spec.session.clone(),
            owner: self.owner.clone(),
            container: String::new(),
            image_id,
            runtime: self.runtime,
            repo,
            fence,
            user: format!("{}:{}", uid_gid.0, uid_gid.1),
            uid_gid,
            env,
            binds,
            limits,
            growth: None,
            broken: Mutex::new(None),
            spared: Mutex::new(String::new()),
            check: Mutex::new(reap::Check::Reaper),
            memory: Mutex::new(None),
            engine_kind: kind,
            engine_version,
            one_at_a_time: Mutex::new(()),
            removed: true,
        };
        create_and_start(&self.engine, &mut session)?;
        session.growth = session
            .limits
            .repo_growth_bytes
            .map(|bound| RepoGrowth::new(&session.repo, bound));
        Ok(session)
    }

    fn exec(
        &self,
        session: &DockerSession,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SandboxError> {
        call::exec_checked(self, session, request)
    }

    fn teardown(&self, mut session: DockerSession) -> Result<(), SandboxError> {
        session.removed = true;
        remove(&self.engine, &session.container)
    }

    fn interrupt(&self, session: &DockerSession) -> Result<bool, SandboxError> {
        let poisoned = || SandboxError::Refused("session state poisoned".into());
        // Refuses every later command, and keeps the container from being restarted.
        *session.broken.lock().map_err(|_| poisoned())? = Some("the session was stopped".into());
        let running = session.one_at_a_time.try_lock().is_err();
        let c = &session.container;
        self.engine
            .call("POST", &format!("/containers/{c}/kill?signal=KILL"), None)?;
        Ok(running)
    }

    fn isolation(&self) -> Isolation {
        let mut runtime_caveats = Vec::new();
        if self.runtime == Runtime::Runsc {
            // Seen with gVisor 20221219: a busy loop under RLIMIT_CPU 1 ran until its timeout.
            // Seen with gVisor 20221219: connect to a host socket in a bind mount fails with
            // EPERM unless runsc runs with --host-uds=open (the engine's runtimeArgs).
            runtime_caveats.push("host Unix sockets bound into the container (the agent's gateway and egress sockets) connect under runsc only when the engine registers runsc with --host-uds=open; without it gVisor refuses them (EPERM) and a live agent is refused before it starts, naming that fix".to_string());
            runtime_caveats.push("max_cpu_seconds (RLIMIT_CPU) is NOT enforced under runsc: gVisor does not deliver SIGXCPU; a command is bounded by its timeout and the session's memory and pids limits".to_string());
        }
        let kernel = match self.runtime {
            Runtime::Runc => "runtime runc: the container shares the host kernel (namespaces, cgroups, all capabilities dropped, no-new-privileges, the engine's default seccomp profile); a kernel bug reachable through the allowed system calls is an escape",
            Runtime::Runsc => "runtime runsc (gVisor): the container runs on a user-space kernel; the host kernel is reached only through gVisor's own narrow seccomp-filtered interface",
        };
        Isolation {
            provider: "docker".into(),
            network_isolated: true,
            filesystem_isolated: true,
            pid_isolated: true,
            caveats: vec![
                kernel.to_string(),
                "one container per session: /tmp and HOME persist across the session's commands; every process a command leaves running is killed after it (the container's init, waiting process and, under gVisor, the watcher that looks for leftovers run as another uid, which commands can neither signal nor trace), and a timeout kills the whole container and starts it again with an empty /tmp and HOME".to_string(),
                "the repository's git metadata is guarded as under bubblewrap (config, hooks, info, alternates and the like bound read-only for the whole session, as they were when it started, and a start or restart during which another session renamed them is undone and refused; what a command creates or replaces there is quarantined after it); processes a command leaves running are killed before that check".to_string(),
                "host Unix sockets in the repository are masked when the session starts; one created there later is reachable from the container under runc".to_string(),
                "session_memory_bytes, max_processes and cpu_millis are the container's memory, pids and CPU quota cgroup limits (cpu_millis at most the engine's CPUs); max_cpu_seconds, max_memory_bytes and repo_growth_bytes are per-process rlimits (cpu, as, fsize); repo_growth_bytes is also checked after each command; under runc a command the memory limit killed is reported as session_memory (read from the container's memory cgroup), under runsc only by its exit status".to_string(),
                "a session's commands run one at a time: what one command leaves running is killed when it ends, which would kill another running beside it".to_string(),
                "commands run as the repository's owner uid; the image's other files are read-only; /tmp and HOME are tmpfs mounted noexec (the engine's default), so programs run only from the image or the repository".to_string(),
            ]
            .into_iter()
            .chain(runtime_caveats)
            .collect(),
        }
    }

    fn preflight(&self, session: &DockerSession) -> Result<PreflightReport, SandboxError> {
        let report = preflight::run(self, session)?;
        if report.passed {
            Ok(report)
        } else {
            Err(SandboxError::PreflightFailed(report.failure_summary()))
        }
    }
}
