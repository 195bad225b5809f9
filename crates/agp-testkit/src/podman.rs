//! A real Podman for tests: `podman system service` serving the Docker-compatible API on a
//! private socket, with private storage and run roots and a private `containers.conf` (through
//! `CONTAINERS_CONF` / `CONTAINERS_STORAGE_CONF`; the machine's own configuration is left
//! alone), stopped by its PID (never by name) when the test binary exits.
//!
//! The configuration is the one seen to work on these machines (`shared/docs/containers.md`):
//! runc as the OCI runtime, cgroupfs as the cgroup manager, and nofile/nproc default ulimits.
//! Under `CI=true` a missing or failing engine fails the test with the reason; elsewhere the
//! test skips and says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};

use crate::docker::{find, in_ci, judge, launch, stop};

/// A running private Podman API service.
#[derive(Debug)]
pub struct PodmanEngine {
    dir: PathBuf,
    socket: PathBuf,
    pid: i32,
}

impl PodmanEngine {
    /// The service's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://` + the socket, as `DOCKER_HOST` takes it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The service's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The directory holding the socket, storage and configuration (to keep out of
    /// containers).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test binary's Podman, started on first use. `None` (after printing why) when it
    /// cannot run here and this is not CI; under `CI=true` that panics with the reason.
    pub fn shared() -> Option<&'static PodmanEngine> {
        static ENGINE: OnceLock<Result<PodmanEngine, String>> = OnceLock::new();
        judge(
            ENGINE.get_or_init(|| start_kept(Seccomp::Hardened, Runtime::Runc)),
            "Podman",
            in_ci(),
        )
    }

    /// A Podman whose default runtime is gVisor's runsc (`runtime = "runsc"` in
    /// containers.conf, the service started with `--runtime-flag network=none`): Podman's
    /// API applies no per-container runtime, so this is how its sessions get gVisor.
    pub fn runsc() -> Option<&'static PodmanEngine> {
        static ENGINE: OnceLock<Result<PodmanEngine, String>> = OnceLock::new();
        judge(
            ENGINE.get_or_init(|| start_kept(Seccomp::Hardened, Runtime::Runsc)),
            "Podman",
            in_ci(),
        )
    }

    /// A second Podman with the distribution's stock seccomp profile, which allows user
    /// namespaces and mounts: the provider must refuse it.
    pub fn stock() -> Option<&'static PodmanEngine> {
        static ENGINE: OnceLock<Result<PodmanEngine, String>> = OnceLock::new();
        judge(
            ENGINE.get_or_init(|| start_kept(Seccomp::Stock, Runtime::Runc)),
            "Podman",
            in_ci(),
        )
    }

    /// The service's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podman.log")).unwrap_or_default()
    }
}

/// Which seccomp profile the service gives containers.
#[derive(Clone, Copy)]
enum Seccomp {
    /// Podman's stock profile without the namespace and mount syscalls.
    Hardened,
    /// Podman's stock profile as installed.
    Stock,
}

/// The service's default OCI runtime.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Runc,
    /// gVisor; Debian's runsc starts only with `--network=none` here.
    Runsc,
}

static RUNNING: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

/// As for dockerd: the service's parent-death signal is tied to a thread that lives as long
/// as the process.
fn start_kept(seccomp: Seccomp, runtime: Runtime) -> Result<PodmanEngine, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("agp-podman-parent".into())
        .spawn(move || {
            let _ = tx.send(start(seccomp, runtime));
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("cannot start the engine's parent thread: {e}"))?;
    let engine = rx
        .recv()
        .map_err(|_| "the engine's parent thread died".to_string())??;
    if let Ok(mut running) = RUNNING.lock() {
        if running.is_empty() {
            // SAFETY: registering a plain `extern "C" fn` with no arguments; it runs at exit.
            unsafe { libc::atexit(stop_at_exit) };
        }
        running.push((engine.pid, engine.dir.clone()));
    }
    Ok(engine)
}

extern "C" fn stop_at_exit() {
    let running = RUNNING
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for (pid, dir) in running {
        remove_all_containers(&dir);
        stop(pid);
        stop_conmons(&dir);
        unmount_under(&dir);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Containers a test left (a deliberate orphan, a panicking test) keep running after the
/// service stops: their processes are not the service's children. Removed with the engine's
/// own `podman rm`, on this engine's private roots only.
fn remove_all_containers(dir: &Path) {
    let Some(podman) = find("podman") else {
        return;
    };
    let _ = podman_command(&podman, dir)
        .args(["rm", "--all", "--force", "--time", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Mounts Podman left under `dir` (each container's `shm`), detached so the directory can go.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    for point in mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
    {
        let Ok(c) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: umount2 with a NUL-terminated path we own.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `podman` with this engine's private configuration and roots.
fn podman_command(podman: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(podman);
    cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("XDG_RUNTIME_DIR", dir.join("xdg-run"))
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("XDG_DATA_HOME", dir.join("xdg-data"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"));
    cmd
}

/// Podman runs each container and exec under a `conmon` that outlives the service (an exec's
/// waits 300 s for a cleanup the stopped service never does). Only those naming this
/// engine's private directory on their command line are this engine's; each is killed by
/// its PID.
fn stop_conmons(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let conmon = cmdline
            .split(|b| *b == 0)
            .next()
            .is_some_and(|argv0| argv0.ends_with(b"conmon"));
        if conmon && cmdline.windows(needle.len()).any(|w| w == needle) {
            // SAFETY: kill with a PID read from /proc; no memory passed.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Podman's stock seccomp profile (read, never changed).
const STOCK_SECCOMP: &str = "/usr/share/containers/seccomp.json";
/// Namespace and mount syscalls that Docker's default profile refuses without
/// `CAP_SYS_ADMIN` and Podman 4.3's stock profile allows (`unshare -r` works under it).
const DENIED: &[&str] = &[
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "clone3",
    "clone",
];

/// Podman's stock profile with the namespace and mount syscalls taken out of its allow rules
/// and `clone` allowed only without namespace flags, as Docker's default profile does; the
/// provider refuses Podman's stock profile (see agp-sandbox's `engine_kind`). `clone3` then
/// falls to the default errno (ENOSYS), and libc retries with `clone`.
pub(crate) fn hardened_seccomp(stock: &str) -> Result<String, String> {
    let mut profile: serde_json::Value =
        serde_json::from_str(stock).map_err(|e| format!("{STOCK_SECCOMP} is not JSON: {e}"))?;
    let rules = profile["syscalls"]
        .as_array_mut()
        .ok_or_else(|| format!("{STOCK_SECCOMP} has no syscalls list"))?;
    for rule in rules.iter_mut() {
        if rule["action"] == "SCMP_ACT_ALLOW" {
            if let Some(names) = rule["names"].as_array_mut() {
                names.retain(|n| n.as_str().is_none_or(|n| !DENIED.contains(&n)));
            }
        }
    }
    rules.retain(|r| r["names"].as_array().is_none_or(|n| !n.is_empty()));
    rules.push(serde_json::json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 2_114_060_288_u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    Ok(profile.to_string())
}

/// The private configuration: `containers.conf`, `storage.conf` and the seccomp profile
/// under `dir`.
fn write_config(dir: &Path, profile: Seccomp, runtime: Runtime) -> Result<(), String> {
    let stock = std::fs::read_to_string(STOCK_SECCOMP)
        .map_err(|e| format!("cannot read Podman's {STOCK_SECCOMP}: {e}"))?;
    let seccomp = dir.join("seccomp.json");
    let written = match profile {
        Seccomp::Hardened => hardened_seccomp(&stock)?,
        Seccomp::Stock => stock,
    };
    std::fs::write(&seccomp, written).map_err(|e| format!("cannot write seccomp.json: {e}"))?;
    let conf = format!(
        "[containers]\n\
         default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
         seccomp_profile = \"{}\"\n\
         [engine]\n\
         runtime = \"{}\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n",
        seccomp.display(),
        match runtime {
            Runtime::Runc => "runc",
            Runtime::Runsc => "runsc",
        }
    );
    std::fs::write(dir.join("containers.conf"), conf)
        .map_err(|e| format!("cannot write containers.conf: {e}"))?;
    // vfs: no overlay mounts left on the host if the service dies mid-test.
    let storage = format!(
        "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        dir.join("root").display(),
        dir.join("run").display()
    );
    std::fs::write(dir.join("storage.conf"), storage)
        .map_err(|e| format!("cannot write storage.conf: {e}"))
}

fn start(seccomp: Seccomp, runtime: Runtime) -> Result<PodmanEngine, String> {
    let install = "install it with `apt-get install podman catatonit runc` (.ci/run does)";
    let podman = find("podman").ok_or_else(|| format!("podman not found; {install}"))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("the Podman tests run rootful and the tests do not run as root".into());
    }
    find("runc").ok_or_else(|| format!("runc not found; {install}"))?;
    if runtime == Runtime::Runsc {
        find("runsc").ok_or("runsc not found; install it with `apt-get install runsc`")?;
    }
    find("catatonit").ok_or_else(|| format!("catatonit not found; {install}"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("agp-podman-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_config(&dir, seccomp, runtime)?;
    let log = std::fs::File::create(dir.join("podman.log"))
        .map_err(|e| format!("cannot create the engine log: {e}"))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("cannot dup the engine log: {e}"))?;
    let socket = dir.join("podman.sock");
    let mut cmd = podman_command(&podman, &dir);
    if runtime == Runtime::Runsc {
        cmd.args(["--runtime-flag", "network=none"]);
    }
    cmd.args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let pid = launch(&mut cmd, "podman", &dir, &socket, &dir.join("podman.log"))?;
    Ok(PodmanEngine { dir, socket, pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hardened_profile_allows_no_namespace_syscall() {
        let stock = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["read", "clone", "unshare", "mount"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["setns"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let p: serde_json::Value = serde_json::from_str(&hardened_seccomp(stock).unwrap()).unwrap();
        let rules = p["syscalls"].as_array().unwrap();
        assert_eq!(rules[0]["names"], serde_json::json!(["read"]));
        assert_eq!(rules[1]["names"], serde_json::json!(["bpf"]));
        assert_eq!(rules[2]["names"], serde_json::json!(["clone"]));
        assert_eq!(rules.len(), 3);
    }

    #[test]
    fn the_private_configuration_names_runc_and_private_roots() {
        let dir = std::env::temp_dir().join(format!("agp-podman-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_config(&dir, Seccomp::Hardened, Runtime::Runc).unwrap();
        let conf = std::fs::read_to_string(dir.join("containers.conf")).unwrap();
        let storage = std::fs::read_to_string(dir.join("storage.conf")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(conf.contains("runtime = \"runc\""), "{conf}");
        assert!(conf.contains("seccomp_profile"), "{conf}");
        assert!(
            storage.contains(&dir.join("root").display().to_string()),
            "{storage}"
        );
    }
}
