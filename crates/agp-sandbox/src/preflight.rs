//! Preflight: prove from inside a session's sandbox that it is isolated, instead of trusting
//! the flags that built it. One sandboxed bash run probes everything; the host side sets up
//! the bait (a loopback listener, a canary in the real HOME, write targets outside the repo,
//! a listening Unix socket inside the repo, which `sockets` must have masked)
//! and judges the results by what it can observe itself wherever it can.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use agp_contracts::sandbox::{ExecRequest, PreflightCheck, PreflightReport, SandboxError};

use crate::bwrap::{BubblewrapProvider, BubblewrapSession, PREFLIGHT_TIMEOUT};

/// Runs inside the sandbox. Uses bash built-ins (`/dev/tcp`) and coreutils only, present on
/// any system bubblewrap runs on. Prints `key<TAB>value` lines.
const PROBE: &str = r#"export LC_ALL=C
port=$1 port6=$2 canary=$3 sock=$4; shift 4
one() { local v=${2//$'\n'/ }; printf '%s\t%s\n' "$1" "${v//$'\t'/ }"; }
tcp() { local out; if out=$( ( exec 3<>"/dev/tcp/$1/$2" ) 2>&1 ); then echo CONNECTED; else echo "$out"; fi; }
one loopback "$(tcp 127.0.0.1 "$port")"
[ "$port6" = 0 ] || one loopback6 "$(tcp ::1 "$port6")"
one public1 "$(tcp 1.1.1.1 443)"
one public2 "$(tcp 8.8.8.8 53)"
ifaces=
while IFS=: read -r name _; do
  case $name in *'|'*) continue ;; esac
  ifaces="$ifaces${name// /} "
done < /proc/net/dev
one ifaces "$ifaces"
routes=-1
while read -r _; do routes=$((routes + 1)); done < /proc/net/route
one routes "$routes"
one netns "$(readlink /proc/self/ns/net)"
one pidns "$(readlink /proc/self/ns/pid)"
one userns "$(readlink /proc/self/ns/user)"
while IFS=$'\t' read -r k v; do
  case $k in CapEff:) one capeff "$v" ;; Seccomp:) one seccomp "$v" ;; NoNewPrivs:) one nonewprivs "$v" ;; esac
done < /proc/self/status
i=0
for t in "$@"; do
  if out=$( ( : > "$t" ) 2>&1 ); then one "write$i" WROTE; else one "write$i" "$out"; fi
  i=$((i + 1))
done
if out=$(cat -- "$canary" 2>&1); then one canary "READ $out"; else one canary "$out"; fi
if [ -S "$sock" ]; then one socket SOCKET; elif [ -c "$sock" ]; then one socket masked; else one socket "not found"; fi
one done ok
"#;

fn random_token() -> Result<String, SandboxError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| SandboxError::Io(std::io::Error::other(format!("no randomness: {e}"))))?;
    Ok(hex::encode(bytes))
}

/// A file with secret content in the invoking user's real HOME (or, when HOME is not
/// writable, a host temporary directory standing in for it), removed on drop. Both providers'
/// preflights look for it from inside.
pub(crate) struct Canary {
    pub(crate) path: PathBuf,
    pub(crate) content: String,
    pub(crate) where_: String,
    _tmp: Option<TempDir>,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Canary {
    /// `mode`: 0o600 where the sandbox runs as the invoking user (only invisibility keeps it
    /// out); readable by all where the sandbox runs as another uid, so that only invisibility,
    /// not the file mode, keeps it out there too.
    pub(crate) fn place(token: &str, mode: u32) -> Result<Self, SandboxError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let content = format!("agp-canary-{}", random_token()?);
        let name = format!(".agp-preflight-canary-{token}");
        let write = |path: &Path| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)?;
            f.write_all(content.as_bytes())
        };
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let path = PathBuf::from(home).join(&name);
            if write(&path).is_ok() {
                return Ok(Self {
                    where_: "the real HOME".into(),
                    path,
                    content,
                    _tmp: None,
                });
            }
        }
        let dir = std::env::temp_dir().join(format!("agp-preflight-{token}"));
        std::fs::create_dir(&dir)?;
        let tmp = TempDir(dir.clone());
        let path = dir.join(&name);
        write(&path)?;
        Ok(Self {
            where_: "a host temporary directory (HOME is not writable)".into(),
            path,
            content,
            _tmp: Some(tmp),
        })
    }
}

/// A host Unix socket listening inside the repository, removed on drop. Bound through the
/// repository's descriptor, so a long repository path does not overflow `sun_path`.
struct BaitSocket {
    dir: std::fs::File,
    name: String,
    listener: UnixListener,
}

impl BaitSocket {
    fn place(repo: &Path, token: &str) -> std::io::Result<Self> {
        let dir = std::fs::File::open(repo)?;
        let name = format!(".agp-preflight-socket-{token}");
        let listener = UnixListener::bind(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            dir,
            name,
            listener,
        })
    }
}

impl Drop for BaitSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!(
            "/proc/self/fd/{}/{}",
            self.dir.as_raw_fd(),
            self.name
        ));
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(crate) fn check(name: &str, passed: bool, detail: impl Into<String>) -> PreflightCheck {
    PreflightCheck {
        name: name.into(),
        passed,
        detail: detail.into(),
    }
}

fn own_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Run the probes and judge them. `Err` only when the preflight could not run at all (no
/// bwrap, no randomness, host I/O); a sandbox that fails to start is a failed check.
pub(crate) fn run(
    provider: &BubblewrapProvider,
    session: &BubblewrapSession,
) -> Result<PreflightReport, SandboxError> {
    provider.bwrap()?;
    let started = Instant::now();
    let token = random_token()?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener6 = TcpListener::bind("[::1]:0").ok();
    if let Some(l) = &listener6 {
        l.set_nonblocking(true)?;
    }
    let port6 = match &listener6 {
        Some(l) => l.local_addr()?.port(),
        None => 0,
    };

    let canary = Canary::place(&token, 0o600)?;
    let bait = BaitSocket::place(session.repo(), &token);
    let bait_path = session
        .repo()
        .join(format!(".agp-preflight-socket-{token}"));

    let marker = format!(".agp-preflight-write-{token}");
    let mut write_dirs: Vec<PathBuf> = vec!["/".into(), "/etc".into(), "/usr".into()];
    if let Some(parent) = session.repo().parent() {
        write_dirs.push(parent.to_path_buf());
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        write_dirs.push(PathBuf::from(home));
    }
    write_dirs.dedup();
    let targets: Vec<PathBuf> = write_dirs.iter().map(|d| d.join(&marker)).collect();

    let mut argv = vec![
        "/bin/bash".to_string(),
        "--noprofile".into(),
        "--norc".into(),
        "-c".into(),
        PROBE.into(),
        "agp-preflight".into(),
        port.to_string(),
        port6.to_string(),
        canary.path.display().to_string(),
        bait_path.display().to_string(),
    ];
    argv.extend(targets.iter().map(|t| t.display().to_string()));
    let request = ExecRequest {
        argv,
        cwd: session.repo().to_path_buf(),
        stdin: None,
        timeout: PREFLIGHT_TIMEOUT,
    };
    let outcome = provider.exec_inner(session, &request);

    // Host-side evidence, gathered whatever happened inside.
    let mut leaked_writes = Vec::new();
    for t in &targets {
        if std::fs::symlink_metadata(t).is_ok() {
            let _ = std::fs::remove_file(t);
            leaked_writes.push(t.display().to_string());
        }
    }
    let accepted =
        |l: &TcpListener| !matches!(l.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock);
    let loopback_accepted = accepted(&listener) || listener6.as_ref().is_some_and(accepted);
    let bait_accepted = bait
        .as_ref()
        .is_ok_and(|b| !matches!(b.listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock));

    let mut checks = Vec::new();
    let output = match outcome {
        Ok((out, _)) => out,
        Err(SandboxError::Missing(m)) => return Err(SandboxError::Missing(m)),
        Err(e) => {
            checks.push(check("sandbox_started", false, e.to_string()));
            return Ok(finish(checks, started));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let probes: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('\t')).collect();
    let get = |k: &str| probes.get(k).copied().unwrap_or("(no result)");

    let completed = output.exit_code == Some(0) && probes.get("done") == Some(&"ok");
    checks.push(check(
        "probes_completed",
        completed,
        if completed {
            format!("probes ran inside the sandbox in {} ms", output.duration_ms)
        } else {
            format!(
                "probes did not complete (exit {:?}, timed out: {}): {}",
                output.exit_code,
                output.timed_out,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        },
    ));

    // (a) The host's loopback: a listener we own must see nothing, and the connect must fail.
    let lo = get("loopback");
    let mut lo_ok = probes.contains_key("loopback") && lo != "CONNECTED" && !loopback_accepted;
    let mut lo_detail = format!("connect to host 127.0.0.1:{port} from inside: {lo}");
    if listener6.is_some() {
        let lo6 = get("loopback6");
        lo_ok &= probes.contains_key("loopback6") && lo6 != "CONNECTED";
        lo_detail.push_str(&format!("; [::1]:{port6}: {lo6}"));
    }
    if loopback_accepted {
        lo_detail.push_str("; the host listener ACCEPTED a connection");
    }
    checks.push(check("host_loopback_unreachable", lo_ok, lo_detail));

    // (b) A public address. This host may have no internet either, so a failed connect alone
    // proves nothing: require the specific "no route" failure and show it comes from an
    // empty namespace of our own (only `lo`, no routes, a network namespace that is not ours).
    let (p1, p2) = (get("public1"), get("public2"));
    let unreachable = |v: &str| v.contains("Network is unreachable");
    let ifaces = get("ifaces").trim();
    let routes = get("routes").trim();
    let host_netns = own_ns("net");
    let netns = get("netns");
    let public_ok = unreachable(p1)
        && unreachable(p2)
        && ifaces == "lo"
        && routes == "0"
        && netns.starts_with("net:[")
        && netns != host_netns;
    checks.push(check(
        "public_network_unreachable",
        public_ok,
        format!(
            "1.1.1.1:443: {p1}; 8.8.8.8:53: {p2}; interfaces inside: [{ifaces}]; routes inside: {routes}; \
             network namespace {netns} (host {host_netns})"
        ),
    ));

    // (c) Writes outside the repository: judged on the host, where a leaked file would be.
    let mut write_detail = Vec::new();
    let mut system_writes_failed = true;
    for (i, dir) in write_dirs.iter().enumerate() {
        let inside = get(&format!("write{i}"));
        if i < 3 && inside == "WROTE" {
            system_writes_failed = false;
        }
        write_detail.push(format!("{}: {inside}", dir.display()));
    }
    let writes_ok = leaked_writes.is_empty()
        && system_writes_failed
        && (0..write_dirs.len()).all(|i| probes.contains_key(format!("write{i}").as_str()));
    let mut detail = write_detail.join("; ");
    if !leaked_writes.is_empty() {
        detail = format!(
            "file appeared on the host: {}; {detail}",
            leaked_writes.join(", ")
        );
    }
    checks.push(check("write_outside_repo_blocked", writes_ok, detail));

    // (d) The canary in the real HOME.
    let canary_probe = get("canary");
    let canary_ok = probes.contains_key("canary")
        && !canary_probe.starts_with("READ")
        && !stdout.contains(&canary.content)
        && !String::from_utf8_lossy(&output.stderr).contains(&canary.content);
    checks.push(check(
        "home_canary_unreadable",
        canary_ok,
        format!("canary in {}: {canary_probe}", canary.where_),
    ));

    // (e) A host socket inside the repository: what the sandbox sees at its path must be the
    // mask, not a socket it could connect to.
    let socket_probe = get("socket");
    let (socket_ok, socket_detail) =
        match &bait {
            Ok(_) => {
                (
                    socket_probe == "masked" && !bait_accepted,
                    format!(
                "listening socket {} in the repository, seen from inside as: {socket_probe}{}",
                bait_path.display(),
                if bait_accepted { "; the host listener ACCEPTED a connection" } else { "" }
            ),
                )
            }
            Err(e) => (
                false,
                format!("could not place a listening socket in the repository to test: {e}"),
            ),
        };
    checks.push(check("repo_unix_socket_masked", socket_ok, socket_detail));
    drop(bait);

    // Namespaces and capabilities, read from inside.
    let (pidns, userns, capeff) = (get("pidns"), get("userns"), get("capeff").trim());
    let (seccomp, nnp) = (get("seccomp").trim(), get("nonewprivs").trim());
    // Seccomp mode 2 = filter; required where agp ships a filter for the architecture.
    let seccomp_ok = !crate::seccomp::SUPPORTED || seccomp == "2";
    let ns_ok = pidns.starts_with("pid:[")
        && pidns != own_ns("pid")
        && userns.starts_with("user:[")
        && userns != own_ns("user")
        && capeff == "0000000000000000"
        && nnp == "1"
        && seccomp_ok;
    checks.push(check(
        "namespaces_and_capabilities",
        ns_ok,
        format!(
            "pid {pidns}, user {userns}, effective capabilities {capeff}, no_new_privs {nnp}, \
             seccomp mode {seccomp}"
        ),
    ));

    Ok(finish(checks, started))
}

fn finish(checks: Vec<PreflightCheck>, started: Instant) -> PreflightReport {
    PreflightReport {
        provider: "bubblewrap".into(),
        passed: !checks.is_empty() && checks.iter().all(|c| c.passed),
        checks,
        duration_ms: started.elapsed().as_millis() as u64,
        target: None,
    }
}
