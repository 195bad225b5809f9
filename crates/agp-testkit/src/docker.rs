//! A real Docker Engine for tests: Debian's `dockerd`, started by the test binary itself on a
//! private socket, data root, exec root and pidfile under a temporary directory, with gVisor's
//! `runsc` registered as a runtime, and stopped by its PID (never by name) when the test
//! binary exits.
//!
//! One engine per test binary ([`DockerEngine::shared`]): it takes about 5 s to start. Under
//! `CI=true` a missing or failing engine fails the test with the reason; elsewhere the test
//! skips and says why.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the engine may take to answer `/_ping`.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a stopping engine is given before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// A running private engine.
#[derive(Debug)]
pub struct DockerEngine {
    dir: PathBuf,
    socket: PathBuf,
    pid: i32,
}

impl DockerEngine {
    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://` + the socket, as `DOCKER_HOST` takes it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The daemon's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The test binary's engine, started on first use. `None` (after printing why) when it
    /// cannot run here and this is not CI; under `CI=true` that panics with the reason.
    pub fn shared() -> Option<&'static DockerEngine> {
        static ENGINE: OnceLock<Result<DockerEngine, String>> = OnceLock::new();
        judge(ENGINE.get_or_init(start_kept), "Docker", in_ci())
    }

    /// The engine's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

pub(crate) fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A started engine (`kind`: Docker, Podman), or: under CI a failed test with the reason,
/// elsewhere a skip that says why.
pub(crate) fn judge<'a, E>(started: &'a Result<E, String>, kind: &str, ci: bool) -> Option<&'a E> {
    match started {
        Ok(engine) => Some(engine),
        Err(reason) => {
            assert!(
                !ci,
                "CI=true and the {kind} engine for the container tests is unavailable: {reason}"
            );
            eprintln!("SKIPPED (not CI): no {kind} engine for the container tests: {reason}");
            None
        }
    }
}

/// Where the one shared engine lives, for the exit handler.
static RUNNING: Mutex<Option<(i32, PathBuf)>> = Mutex::new(None);

/// Start the engine from a thread that lives as long as the process: the daemon gets
/// SIGTERM when its parent thread dies (`PR_SET_PDEATHSIG`), so it must not be a test
/// thread; a killed test binary then still takes its engine down.
fn start_kept() -> Result<DockerEngine, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("agp-dockerd-parent".into())
        .spawn(move || {
            let _ = tx.send(start());
            // Park for the rest of the process; the daemon's parent-death signal is tied to
            // this thread.
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("cannot start the engine's parent thread: {e}"))?;
    let engine = rx
        .recv()
        .map_err(|_| "the engine's parent thread died".to_string())??;
    if let Ok(mut running) = RUNNING.lock() {
        *running = Some((engine.pid, engine.dir.clone()));
    }
    // SAFETY: registering a plain `extern "C" fn` with no arguments; it runs at exit.
    unsafe { libc::atexit(stop_at_exit) };
    Ok(engine)
}

extern "C" fn stop_at_exit() {
    let Some((pid, dir)) = RUNNING.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    stop(pid);
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGTERM the daemon by PID, wait for it, SIGKILL when it does not go.
pub(crate) fn stop(pid: i32) {
    stop_with(pid, libc::SIGTERM);
}

/// `signal` to our child `pid`, wait for it, SIGKILL when it does not go.
pub(crate) fn stop_with(pid: i32, signal: i32) {
    // SAFETY: kill and waitpid on the PID of our own child, with no memory passed.
    unsafe { libc::kill(pid, signal) };
    let until = Instant::now() + STOP_WITHIN;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes into the int we own.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
        if rc != 0 {
            return;
        }
        if Instant::now() > until {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn start() -> Result<DockerEngine, String> {
    let install = "install it with `apt-get install docker.io runsc busybox-static` (.ci/run does)";
    let dockerd = find("dockerd").ok_or_else(|| format!("dockerd not found; {install}"))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("dockerd needs root here and the tests do not run as root".into());
    }
    let runsc = find("runsc").ok_or_else(|| format!("runsc not found; {install}"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("agp-dockerd-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let config = serde_json::json!({
        "runtimes": {"runsc": {"path": runsc, "runtimeArgs": ["--network=none", "--host-uds=open"]}},
    });
    std::fs::write(dir.join("daemon.json"), config.to_string())
        .map_err(|e| format!("cannot write daemon.json: {e}"))?;
    let log = std::fs::File::create(dir.join("dockerd.log"))
        .map_err(|e| format!("cannot create the engine log: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot dup the engine log: {e}"))?;
    let socket = dir.join("docker.sock");
    let mut cmd = Command::new(&dockerd);
    cmd.arg("--config-file")
        .arg(dir.join("daemon.json"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        // No bridge and no iptables rules: the tests' containers have no network, and the
        // host's network configuration is left alone.
        .arg("--bridge=none")
        .arg("--iptables=false")
        .arg("--ip-masq=false")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let pid = launch(&mut cmd, "dockerd", &dir, &socket, &dir.join("dockerd.log"))?;
    Ok(DockerEngine { dir, socket, pid })
}

/// Starts an engine's service (`cmd`, named `what` in errors), dying with the test binary,
/// and waits until it answers `/_ping` on `socket`: its pid, or why not (with the tail of its
/// log), its directory `dir` then removed.
pub(crate) fn launch(
    cmd: &mut Command,
    what: &str,
    dir: &Path,
    socket: &Path,
    log: &Path,
) -> Result<i32, String> {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    // SAFETY: prctl in the forked child before exec; async-signal-safe, no allocation.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let pid = i32::try_from(child.id()).map_err(|_| "pid out of range".to_string())?;
    let until = Instant::now() + READY_WITHIN;
    loop {
        if ping(socket) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = log();
            let _ = std::fs::remove_dir_all(dir);
            return Err(format!("{what} exited ({status}): {}", tail(&log)));
        }
        if Instant::now() > until {
            let log = log();
            stop(pid);
            let _ = std::fs::remove_dir_all(dir);
            return Err(format!(
                "{what} did not answer /_ping within {READY_WITHIN:?}: {}",
                tail(&log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the engine at `socket` still knows container `id`, asked with curl (a client
/// independent of agp's own); any answer but "found" or "no such container" fails the test.
pub fn container_exists(socket: &Path, id: &str) -> bool {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://docker/v1.41/containers/{id}/json"))
        .output();
    let code = match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => panic!("cannot run curl to inspect container {id}: {e}"),
    };
    assert!(
        code == "200" || code == "404",
        "unexpected inspect status {code}"
    );
    code == "200"
}

pub(crate) fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

pub(crate) fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") && reply.ends_with("OK")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One judge serves both engines: the test names each engine's kind in its verdict.
    #[test]
    fn under_ci_a_missing_engine_fails_the_test_elsewhere_it_skips() {
        for (kind, reason) in [
            ("Docker", "dockerd not found"),
            ("Podman", "podman not found"),
        ] {
            let missing: Result<(), String> = Err(reason.into());
            let failed = std::panic::catch_unwind(|| judge(&missing, kind, true).is_some())
                .expect_err("under CI a missing engine fails the test");
            let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
            assert_eq!(
                message,
                format!(
                    "CI=true and the {kind} engine for the container tests is unavailable: {reason}"
                )
            );
            assert!(judge(&missing, kind, false).is_none());
        }
    }
}
