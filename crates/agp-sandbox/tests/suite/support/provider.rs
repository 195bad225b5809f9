//! One fixture over every `SandboxProvider` the escape suite runs against: bubblewrap, the
//! container provider on Docker with runc and with gVisor's runsc, and on Podman with runc.
//! A case is a function of [`Which`]; [`each_provider!`] makes one test of it per provider
//! (`bwrap::case`, `docker_runc::case`, `docker_runsc::case`, `podman_runc::case`), so a case
//! added to a suite's list runs everywhere, and a case left off the list does not compile
//! (an unused function under `-D warnings`).
//!
//! The default container image is a static busybox: no bash, python or git. Scripts are POSIX
//! sh using what both a Debian host and busybox have; sockets are reached with `agp-probe`, a
//! static C client compiled once per test binary and copied into each repository (`./agp-probe`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use agp_contracts::sandbox::{ExecOutput, ExecRequest, SandboxError, SandboxProvider, SandboxSpec};
use agp_sandbox::docker::{DockerProvider, DockerSession, Runtime};
use agp_sandbox::{BubblewrapProvider, BubblewrapSession};

use crate::suite::docker::{default_image, engine_of, Daemon, Kind, UID};

/// A provider (and engine and runtime) the suite runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Bwrap,
    DockerRunc,
    DockerRunsc,
    PodmanRunc,
}

impl Which {
    pub fn is_container(self) -> bool {
        self != Which::Bwrap
    }

    pub fn is_runsc(self) -> bool {
        self == Which::DockerRunsc
    }

    /// The module [`each_provider!`] puts this provider's tests in.
    pub fn module(self) -> &'static str {
        match self {
            Which::Bwrap => "bwrap",
            Which::DockerRunc => "docker_runc",
            Which::DockerRunsc => "docker_runsc",
            Which::PodmanRunc => "podman_runc",
        }
    }

    fn engine(self) -> Option<(Kind, Runtime)> {
        match self {
            Which::Bwrap => None,
            Which::DockerRunc => Some((Kind::Docker, Runtime::Runc)),
            Which::DockerRunsc => Some((Kind::Docker, Runtime::Runsc)),
            Which::PodmanRunc => Some((Kind::Podman, Runtime::Runc)),
        }
    }
}

/// One test per provider for each case named: `each_provider!(case_a, case_b)` where each
/// case is `fn case(p: Which)`.
macro_rules! each_provider {
    ($($case:ident),* $(,)?) => {
        mod bwrap {
            $( #[test] fn $case() { super::$case($crate::suite::support::provider::Which::Bwrap) } )*
        }
        mod docker_runc {
            $( #[test] fn $case() { super::$case($crate::suite::support::provider::Which::DockerRunc) } )*
        }
        mod docker_runsc {
            $( #[test] fn $case() { super::$case($crate::suite::support::provider::Which::DockerRunsc) } )*
        }
        mod podman_runc {
            $( #[test] fn $case() { super::$case($crate::suite::support::provider::Which::PodmanRunc) } )*
        }
    };
}
pub(crate) use each_provider;

enum Inner {
    Bwrap(BubblewrapProvider, BubblewrapSession),
    Docker(DockerProvider, Box<DockerSession>),
}

impl Inner {
    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        match self {
            Inner::Bwrap(p, s) => p.exec(s, request),
            Inner::Docker(p, s) => p.exec(s, request),
        }
    }
}

/// Another session on a [`Sandbox`]'s repository, from a provider of its own.
pub struct Beside {
    inner: Inner,
    repo: PathBuf,
}

impl Beside {
    pub fn sh(&self, script: &str) -> Result<ExecOutput, SandboxError> {
        self.inner.exec(&sh_in(&self.repo, script))
    }
}

/// A session on a fresh repository (with a sibling `outside` directory) under one provider.
pub struct Sandbox {
    pub which: Which,
    pub repo: PathBuf,
    pub outside: PathBuf,
    /// The container engine's daemon (its socket must never be reachable inside).
    pub daemon: Option<Daemon>,
    inner: Inner,
    // Last: the directory goes after the session that uses it.
    pub dir: tempfile::TempDir,
}

/// A provider ready to spawn sessions on `repo`, without one yet.
pub enum Provider {
    Bwrap(BubblewrapProvider),
    Docker(DockerProvider, Daemon),
}

impl Provider {
    /// The provider for `which`; `None` when its engine cannot run here (the testkit says why,
    /// and fails the test under CI).
    pub fn of(which: Which) -> Option<Provider> {
        let Some((kind, runtime)) = which.engine() else {
            return Some(Provider::Bwrap(BubblewrapProvider::new()));
        };
        let (daemon, engine) = engine_of(kind)?;
        let image = default_image(&engine);
        let provider =
            DockerProvider::new(engine, image, runtime).protect(daemon.socket().parent().unwrap());
        Some(Provider::Docker(provider, daemon))
    }

    pub fn output_cap(self, bytes: usize) -> Self {
        match self {
            Provider::Bwrap(p) => Provider::Bwrap(p.output_cap(bytes)),
            Provider::Docker(p, d) => Provider::Docker(p.output_cap(bytes), d),
        }
    }

    /// Spawn only (no fixture), for cases about what a spawn refuses.
    pub fn spawn_err(&self, spec: &SandboxSpec) -> Option<SandboxError> {
        match self {
            Provider::Bwrap(p) => p.spawn(spec).err(),
            Provider::Docker(p, _) => p.spawn(spec).err(),
        }
    }
}

/// Make `path` (and everything under it) the container user's, as a repository a container
/// session runs on must be; nothing for bubblewrap.
pub fn give_to_sandbox_user(which: Which, path: &Path) {
    if which.is_container() {
        let status = std::process::Command::new("chown")
            .args(["-R", &format!("{UID}:{UID}")])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Sandbox {
    pub fn new(which: Which) -> Option<Self> {
        Self::build(which, |_| {}, |_| {}, |p| p)
    }

    pub fn with_spec(which: Which, edit: impl FnOnce(&mut SandboxSpec)) -> Option<Self> {
        Self::build(which, |_| {}, edit, |p| p)
    }

    /// `prepare` runs on the host on the fresh repository before the session starts (files
    /// it makes are given to the container user afterwards); `edit` changes the spec;
    /// `provider` changes the provider.
    pub fn build(
        which: Which,
        prepare: impl FnOnce(&Path),
        edit: impl FnOnce(&mut SandboxSpec),
        provider: impl FnOnce(Provider) -> Provider,
    ) -> Option<Self> {
        Self::try_build(which, prepare, edit, provider)
            .map(|built| built.unwrap_or_else(|e| panic!("spawn {which:?} session: {e}")))
    }

    /// As [`Sandbox::with_spec`], with a refused spawn returned rather than failing the test.
    pub fn try_with_spec(
        which: Which,
        edit: impl FnOnce(&mut SandboxSpec),
    ) -> Option<Result<Self, SandboxError>> {
        Self::try_build(which, |_| {}, edit, |p| p)
    }

    pub fn try_build(
        which: Which,
        prepare: impl FnOnce(&Path),
        edit: impl FnOnce(&mut SandboxSpec),
        provider: impl FnOnce(Provider) -> Provider,
    ) -> Option<Result<Self, SandboxError>> {
        let provider = provider(Provider::of(which)?);
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&repo).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let repo = std::fs::canonicalize(repo).unwrap();
        let outside = std::fs::canonicalize(outside).unwrap();
        prepare(&repo);
        std::fs::copy(probe(), repo.join("agp-probe")).unwrap();
        give_to_sandbox_user(which, &repo);
        let mut spec = SandboxSpec::new(format!("escape-{which:?}"), &repo);
        edit(&mut spec);
        let (inner, daemon) = match provider {
            Provider::Bwrap(p) => match p.spawn(&spec) {
                Ok(s) => (Inner::Bwrap(p, s), None),
                Err(e) => return Some(Err(e)),
            },
            Provider::Docker(p, daemon) => match p.spawn(&spec) {
                Ok(s) => (Inner::Docker(p, Box::new(s)), Some(daemon)),
                Err(e) => return Some(Err(e)),
            },
        };
        Some(Ok(Self {
            which,
            repo,
            outside,
            daemon,
            inner,
            dir,
        }))
    }

    /// Writes `text` to `rel` in the repo (from the host), creating its parent directories.
    pub fn put(&self, rel: &str, text: &str) {
        let path = self.repo.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        give_to_sandbox_user(self.which, &path);
    }

    pub fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        self.inner.exec(request)
    }

    /// Start another session (`name`) on this repository, as a second agent would.
    pub fn beside(&self, name: &str) -> Result<Beside, SandboxError> {
        let spec = SandboxSpec::new(name, &self.repo);
        let inner = match Provider::of(self.which).expect("the engine ran a moment ago") {
            Provider::Bwrap(p) => {
                let s = p.spawn(&spec)?;
                Inner::Bwrap(p, s)
            }
            Provider::Docker(p, _) => {
                let s = p.spawn(&spec)?;
                Inner::Docker(p, Box::new(s))
            }
        };
        Ok(Beside {
            inner,
            repo: self.repo.clone(),
        })
    }

    /// Run a POSIX sh script inside, in the repo, given 20 s.
    pub fn sh(&self, script: &str) -> ExecOutput {
        self.sh_timeout(script, Duration::from_secs(20))
    }

    pub fn sh_timeout(&self, script: &str, timeout: Duration) -> ExecOutput {
        let request = ExecRequest {
            timeout,
            ..sh_in(&self.repo, script)
        };
        self.exec(&request).expect("exec in sandbox")
    }

    /// Run `argv` inside, in the repo.
    pub fn run(&self, argv: &[impl AsRef<str>]) -> Result<ExecOutput, SandboxError> {
        self.exec(&super::run_in(&self.repo, argv))
    }

    pub fn isolation_caveats(&self) -> String {
        match &self.inner {
            Inner::Bwrap(p, _) => p.isolation().caveats.join("\n"),
            Inner::Docker(p, _) => p.isolation().caveats.join("\n"),
        }
    }

    /// The kill switch (`SandboxProvider::interrupt`): `true` when a command was running.
    pub fn interrupt(&self) -> Result<bool, SandboxError> {
        match &self.inner {
            Inner::Bwrap(p, s) => p.interrupt(s),
            Inner::Docker(p, s) => p.interrupt(s),
        }
    }

    /// The bubblewrap session, for the cases that ask it about its cgroups.
    pub fn bwrap(&self) -> Option<&BubblewrapSession> {
        match &self.inner {
            Inner::Bwrap(_, s) => Some(s),
            Inner::Docker(..) => None,
        }
    }
}

/// A request to run the POSIX sh `script` in `cwd` without stdin, given 20 s.
pub fn sh_in(cwd: &Path, script: &str) -> ExecRequest {
    super::run_in(cwd, &["/bin/sh", "-c", script])
}

/// `agp-probe`, built static once per test binary (see `probe.c`).
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        // Under the target directory; built under a name of this process and renamed into
        // place, so test binaries running side by side never see a half-written probe.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let source = dir.join(format!("agp-probe-{}.c", std::process::id()));
        let building = dir.join(format!("agp-probe-{}", std::process::id()));
        std::fs::write(&source, include_str!("probe.c")).unwrap();
        let out = std::process::Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&building)
            .arg(&source)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&source);
        assert!(
            out.status.success(),
            "cannot build the static probe (cc and libc.a are needed): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let binary = dir.join("agp-probe");
        std::fs::rename(&building, &binary).unwrap();
        binary
    })
}
