//! The container provider against a real engine: Debian's dockerd, started by this test
//! binary (agp-testkit), with runc and with gVisor's runsc, and the default busybox image
//! built through the Engine API as `agp sandbox image build` builds it. `session`: a session's
//! life and confinement; `hardening`: what a hostile command tries beyond that.

mod hardening;
mod session;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use agp_contracts::sandbox::{ExecOutput, ExecRequest, SandboxProvider};
use agp_sandbox::docker::{image, DockerProvider, DockerSession, Engine, ImageRef, Runtime};
use agp_testkit::docker::DockerEngine;

pub(super) const UID: u32 = image::DEFAULT_IMAGE_UID;

pub(super) fn engine() -> Option<(&'static DockerEngine, Engine)> {
    let daemon = DockerEngine::shared()?;
    Some((daemon, Engine::at(daemon.socket()).unwrap()))
}

/// The default image, imported once per test binary.
pub(super) fn default_image(engine: &Engine) -> ImageRef {
    static IMAGE: OnceLock<ImageRef> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let rootfs = image::busybox_rootfs(Path::new("/bin/busybox")).unwrap();
            image::import(engine, "localhost/agp-test:busybox", rootfs.as_slice()).unwrap()
        })
        .clone()
}

pub(super) struct Setup {
    pub(super) dir: tempfile::TempDir,
    pub(super) repo: PathBuf,
    pub(super) outside: PathBuf,
    pub(super) provider: DockerProvider,
    pub(super) engine: Engine,
    pub(super) daemon: &'static DockerEngine,
}

/// A repository owned by the image's non-root uid (the container runs as the repository's
/// owner), and a sibling directory outside it.
pub(super) fn setup(runtime: Runtime) -> Option<Setup> {
    let (daemon, engine) = engine()?;
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

/// Whether the engine still knows the container.
pub(super) fn exists(engine_socket: &Path, id: &str) -> bool {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(engine_socket)
        .arg(format!("http://docker/v1.41/containers/{id}/json"))
        .output()
        .unwrap();
    let code = text(&out.stdout);
    assert!(
        code == "200" || code == "404",
        "unexpected inspect status {code}"
    );
    code == "200"
}
