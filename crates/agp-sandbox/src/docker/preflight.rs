//! Preflight of a container session: one probe run as an exec in the session's container,
//! judged with host-side bait (a loopback listener, a canary in the real HOME, write targets
//! outside the repository), as the bubblewrap preflight does. The probe uses only a POSIX
//! `sh` and `cat`, `readlink`, `nc` (optional) and `rm`, which the default busybox image has;
//! an image without them fails the preflight and the session is refused.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agp_contracts::sandbox::{
    ExecRequest, PreflightCheck, PreflightReport, SandboxError, SandboxTarget,
};

use super::{DockerProvider, DockerSession, Runtime};
use crate::preflight::{check, Canary};

const TIMEOUT: Duration = Duration::from_secs(20);

/// `key<TAB>value` lines. Multi-line values are folded to one line.
const PROBE: &str = r#"export LC_ALL=C
port=$1 canary=$2 repo=$3 n_hidden=$4; shift 4
tab=$(printf '\t')
one() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ')"; }
if command -v nc >/dev/null 2>&1; then
  if out=$(nc -w 2 127.0.0.1 "$port" </dev/null 2>&1); then one loopback CONNECTED; else one loopback "refused: $out"; fi
  if out=$(nc -w 2 1.1.1.1 443 </dev/null 2>&1); then one public CONNECTED; else one public "refused: $out"; fi
else
  one loopback "no nc in the image"; one public "no nc in the image"
fi
ifaces=
while IFS=: read -r name _; do
  case $name in *'|'*) continue ;; esac
  ifaces="$ifaces$(echo $name) "
done < /proc/net/dev
one ifaces "$ifaces"
routes=-1
while read -r _; do routes=$((routes + 1)); done < /proc/net/route
one routes "$routes"
one netns "$(readlink /proc/self/ns/net)"
while IFS="$tab" read -r k v rest; do
  case $k in Uid:) one uid "$v $rest" ;; CapEff:) one capeff "$v" ;; CapBnd:) one capbnd "$v" ;; Seccomp:) one seccomp "$v" ;; NoNewPrivs:) one nonewprivs "$v" ;; esac
done < /proc/self/status
one version "$(cat /proc/version)"
if out=$(cat -- "$canary" 2>&1); then one canary "READ $out"; else one canary "$out"; fi
i=0
while [ "$i" -lt "$n_hidden" ]; do
  if [ -e "$1" ] || [ -L "$1" ]; then one "hidden$i" VISIBLE; else one "hidden$i" absent; fi
  shift; i=$((i + 1))
done
i=0
for t in "$@"; do
  if out=$( ( : > "$t" ) 2>&1 ); then one "write$i" WROTE; rm -f -- "$t"; else one "write$i" "$out"; fi
  i=$((i + 1))
done
probe="$repo/.agp-preflight-repo-$$"
if ( : > "$probe" ) 2>/dev/null; then rm -f -- "$probe"; one repo writable; else one repo "not writable"; fi
one done ok
"#;

/// Run the probe and judge it. `Err` only when the preflight could not run at all.
pub(crate) fn run(
    provider: &DockerProvider,
    session: &DockerSession,
) -> Result<PreflightReport, SandboxError> {
    let started = Instant::now();
    let token = super::random_hex()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let canary = Canary::place(&token, 0o644)?;

    // What must not exist inside: the engine's socket (where agp reached it and the usual
    // places), agp's home and other protected paths, the real HOME.
    let mut hidden: Vec<PathBuf> = vec![
        provider.engine.socket().to_path_buf(),
        "/var/run/docker.sock".into(),
        "/run/docker.sock".into(),
        "/run/podman/podman.sock".into(),
        "/run/containerd/containerd.sock".into(),
    ];
    hidden.extend(provider.protected.iter().cloned());
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        // The real HOME is only allowed to exist inside as a path leading to the repository.
        if !session.repo.starts_with(&home) {
            hidden.push(home);
        }
    }
    hidden.dedup();

    let marker = format!(".agp-preflight-write-{token}");
    let mut write_dirs: Vec<PathBuf> =
        vec!["/".into(), "/etc".into(), "/usr".into(), "/bin".into()];
    if let Some(parent) = session.repo.parent() {
        write_dirs.push(parent.to_path_buf());
    }
    let targets: Vec<PathBuf> = write_dirs.iter().map(|d| d.join(&marker)).collect();

    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        PROBE.into(),
        "agp-preflight".into(),
        port.to_string(),
        canary.path.display().to_string(),
        session.repo.display().to_string(),
        hidden.len().to_string(),
    ];
    argv.extend(hidden.iter().map(|p| p.display().to_string()));
    argv.extend(targets.iter().map(|t| t.display().to_string()));
    let request = ExecRequest {
        argv,
        cwd: session.repo.clone(),
        stdin: None,
        timeout: TIMEOUT,
    };
    let outcome = super::call::exec_checked(provider, session, &request);

    let leaked: Vec<String> = targets
        .iter()
        .filter(|t| std::fs::symlink_metadata(t).is_ok())
        .map(|t| {
            let _ = std::fs::remove_file(t);
            t.display().to_string()
        })
        .collect();
    let accepted = !matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock);

    // What the engine reports now, not what it reported at the start.
    let applied = super::lifecycle::verify(&provider.engine, session);
    let mut checks = vec![check(
        "container_hardening_applied",
        applied.is_ok(),
        match applied {
            Ok(()) => format!(
                "the engine reports the container as asked: network none, all capabilities \
                 dropped, no-new-privileges, engine seccomp, read-only root, tmpfs /tmp and \
                 HOME, only the asked binds, commands as {}, runtime {}, image {}",
                session.user,
                session.runtime.name(),
                session.image_id
            ),
            Err(e) => e.to_string(),
        },
    )];
    let output = match outcome {
        Ok(out) => out,
        Err(e) => {
            checks.push(check("probes_completed", false, e.to_string()));
            return Ok(finish(checks, started, provider, session));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let probes: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('\t')).collect();
    let get = |k: &str| probes.get(k).copied().unwrap_or("(no result)");
    let completed = output.exit_code == Some(0) && get("done") == "ok";
    checks.push(check(
        "probes_completed",
        completed,
        format!(
            "exit {:?}, timed out {}, {} ms{}",
            output.exit_code,
            output.timed_out,
            output.duration_ms,
            if completed {
                String::new()
            } else {
                format!(": {}", String::from_utf8_lossy(&output.stderr).trim())
            }
        ),
    ));

    let host_netns = std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (netns, ifaces, routes) = (get("netns"), get("ifaces").trim(), get("routes").trim());
    let (lo, public) = (get("loopback"), get("public"));
    let net_ok = netns.starts_with("net:[")
        && netns != host_netns
        && ifaces == "lo"
        && routes == "0"
        && lo != "CONNECTED"
        && public != "CONNECTED"
        && !accepted;
    checks.push(check(
        "network_unreachable",
        net_ok,
        format!(
            "host 127.0.0.1:{port}: {lo}{}; 1.1.1.1:443: {public}; interfaces inside: [{ifaces}]; \
             routes inside: {routes}; network namespace {netns} (host {host_netns})",
            if accepted {
                " (the host listener ACCEPTED a connection)"
            } else {
                ""
            }
        ),
    ));

    let mut detail = Vec::new();
    let mut inside_ok = true;
    for (i, dir) in write_dirs.iter().enumerate() {
        let got = get(&format!("write{i}"));
        // The repository's parent may sit on the container's own tmpfs (/tmp): only a file
        // appearing on the host counts there.
        if (i < 4 && got == "WROTE") || !probes.contains_key(format!("write{i}").as_str()) {
            inside_ok = false;
        }
        detail.push(format!("{}: {got}", dir.display()));
    }
    if !leaked.is_empty() {
        detail.insert(
            0,
            format!("file appeared on the host: {}", leaked.join(", ")),
        );
    }
    checks.push(check(
        "write_outside_repo_blocked",
        inside_ok && leaked.is_empty(),
        detail.join("; "),
    ));
    checks.push(check(
        "repo_writable",
        get("repo") == "writable",
        format!("{}: {}", session.repo.display(), get("repo")),
    ));

    let canary_seen = get("canary").starts_with("READ")
        || stdout.contains(&canary.content)
        || String::from_utf8_lossy(&output.stderr).contains(&canary.content);
    checks.push(check(
        "home_canary_unreadable",
        probes.contains_key("canary") && !canary_seen,
        format!("{}: {}", canary.path.display(), get("canary")),
    ));

    let visible: Vec<String> = hidden
        .iter()
        .enumerate()
        .filter(|(i, _)| get(&format!("hidden{i}")) != "absent")
        .map(|(i, p)| format!("{} ({})", p.display(), get(&format!("hidden{i}"))))
        .collect();
    checks.push(check(
        "host_paths_invisible",
        visible.is_empty(),
        if visible.is_empty() {
            format!(
                "absent inside: {}",
                hidden
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("visible inside: {}", visible.join(", "))
        },
    ));

    let uids = get("uid");
    let uid_ok = probes.contains_key("uid")
        && uids.split_whitespace().count() == 4
        && uids.split_whitespace().all(|u| u != "0");
    let (capeff, capbnd) = (get("capeff").trim(), get("capbnd").trim());
    let caps_ok = capeff == "0000000000000000" && capbnd == "0000000000000000";
    let (seccomp, nnp) = (get("seccomp").trim(), get("nonewprivs").trim());
    // gVisor applies seccomp and no_new_privs in its own kernel and does not show them in
    // the sandbox's /proc; the engine's report (first check) covers them there.
    let kernel_ok = match session.runtime {
        Runtime::Runc => seccomp == "2" && nnp == "1",
        Runtime::Runsc => true,
    };
    checks.push(check(
        "unprivileged",
        uid_ok && caps_ok && kernel_ok,
        format!(
            "uids {uids}, effective capabilities {capeff}, bounding set {capbnd}, seccomp mode \
             {seccomp}, no_new_privs {nnp}"
        ),
    ));

    let host_version = std::fs::read_to_string("/proc/version").unwrap_or_default();
    let version = get("version");
    let (kernel_pass, kernel_detail) = match session.runtime {
        Runtime::Runsc => (
            probes.contains_key("version") && version.trim() != host_version.trim(),
            format!(
                "gVisor's user-space kernel expected; inside: {version}; host: {}",
                host_version.trim()
            ),
        ),
        Runtime::Runc => (
            probes.contains_key("version"),
            format!("shared host kernel (runc): {version}"),
        ),
    };
    checks.push(check("kernel", kernel_pass, kernel_detail));

    Ok(finish(checks, started, provider, session))
}

fn finish(
    checks: Vec<PreflightCheck>,
    started: Instant,
    provider: &DockerProvider,
    session: &DockerSession,
) -> PreflightReport {
    PreflightReport {
        provider: "docker".into(),
        passed: !checks.is_empty() && checks.iter().all(|c| c.passed),
        checks,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        target: Some(SandboxTarget {
            runtime: session.runtime.name().to_string(),
            image: provider.image.to_string(),
            engine: session.engine_kind.name().to_ascii_lowercase(),
            engine_version: session.engine_version.clone(),
        }),
    }
}
