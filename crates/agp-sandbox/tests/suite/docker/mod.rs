//! The container provider against a real engine: Debian's dockerd, started by this test
//! binary (agp-testkit), with runc and with gVisor's runsc, and the default busybox image
//! built through the Engine API as `agp sandbox image build` builds it. `session`: a session's
//! life and confinement; `hardening`: what a hostile command tries beyond that; `reaper`: a
//! command against the check that it left nothing running.

mod hardening;
mod limits;
mod reaper;
mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agp_contracts::sandbox::{ExecOutput, ExecRequest, SandboxProvider};
use agp_sandbox::docker::{image, DockerProvider, DockerSession, Engine, ImageRef, Runtime};
use agp_testkit::docker::DockerEngine;
use agp_testkit::podman::PodmanEngine;

pub(super) const UID: u32 = image::DEFAULT_IMAGE_UID;

/// Which engine serves the API: Debian's dockerd or `podman system service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Docker,
    Podman,
    /// Podman with its distribution's seccomp profile (user namespaces allowed).
    PodmanStock,
    /// Podman whose default runtime is gVisor's runsc.
    PodmanRunsc,
}

/// The engine and runtime pairs the shared tests run over.
pub(super) const ENGINES: [(Kind, Runtime); 3] = [
    (Kind::Docker, Runtime::Runc),
    (Kind::Docker, Runtime::Runsc),
    (Kind::Podman, Runtime::Runc),
];

/// The test binary's running engine of either kind.
#[derive(Clone, Copy)]
pub(super) enum Daemon {
    Docker(&'static DockerEngine),
    Podman(&'static PodmanEngine),
}

impl Daemon {
    pub(super) fn socket(&self) -> &'static Path {
        match self {
            Daemon::Docker(d) => d.socket(),
            Daemon::Podman(p) => p.socket(),
        }
    }

    pub(super) fn log(&self) -> String {
        match self {
            Daemon::Docker(d) => d.log(),
            Daemon::Podman(p) => p.log(),
        }
    }
}

pub(super) fn engine() -> Option<(Daemon, Engine)> {
    engine_of(Kind::Docker)
}

pub(super) fn engine_of(kind: Kind) -> Option<(Daemon, Engine)> {
    let daemon = match kind {
        Kind::Docker => Daemon::Docker(DockerEngine::shared()?),
        Kind::Podman => Daemon::Podman(PodmanEngine::shared()?),
        Kind::PodmanStock => Daemon::Podman(PodmanEngine::stock()?),
        Kind::PodmanRunsc => Daemon::Podman(PodmanEngine::runsc()?),
    };
    Some((daemon, Engine::at(daemon.socket()).unwrap()))
}

/// The default image, imported once per test binary and engine.
pub(super) fn default_image(engine: &Engine) -> ImageRef {
    static IMAGES: std::sync::Mutex<Vec<(PathBuf, ImageRef)>> = std::sync::Mutex::new(Vec::new());
    let mut images = IMAGES.lock().unwrap();
    if let Some((_, image)) = images.iter().find(|(s, _)| s == engine.socket()) {
        return image.clone();
    }
    let rootfs = image::busybox_rootfs(Path::new("/bin/busybox")).unwrap();
    let image = image::import(engine, "localhost/agp-test:busybox", rootfs.as_slice()).unwrap();
    images.push((engine.socket().to_path_buf(), image.clone()));
    image
}

pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) repo: PathBuf,
    pub(super) outside: PathBuf,
    pub(super) provider: DockerProvider,
    pub(super) engine: Engine,
    pub(super) daemon: Daemon,
}

/// A repository owned by the image's non-root uid (the container runs as the repository's
/// owner), and a sibling directory outside it.
pub(super) fn setup(runtime: Runtime) -> Option<Setup> {
    setup_on(Kind::Docker, runtime)
}

/// As `setup`, on the given engine.
pub(super) fn setup_on(kind: Kind, runtime: Runtime) -> Option<Setup> {
    let (daemon, engine) = engine_of(kind)?;
    let image = default_image(&engine);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&repo).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::chown(&repo, Some(UID), Some(UID)).unwrap();
    let repo = std::fs::canonicalize(repo).unwrap();
    let provider = DockerProvider::new(engine.clone(), image, runtime)
        .protect(daemon.socket().parent().unwrap());
    Some(Setup {
        dir,
        repo,
        outside,
        provider,
        engine,
        daemon,
    })
}

pub(super) fn run(p: &DockerProvider, s: &DockerSession, script: &str) -> ExecOutput {
    p.exec(
        s,
        &ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            cwd: s.repo().to_path_buf(),
            stdin: None,
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(super) use agp_testkit::docker::container_exists as exists;
