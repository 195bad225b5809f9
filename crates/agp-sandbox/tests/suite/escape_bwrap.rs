//! Bubblewrap's own mechanics, not what a hostile command can reach (that is `escape`, run on
//! every provider): the bwrap helper dies with its parent, bwrap's seccomp filter, a bwrap
//! command line that cannot be built, the RLIMIT_NPROC caveat, and `command` (a long-running
//! child with its own stdio, which the container provider has no counterpart of yet).

use super::support as common;

use std::time::Duration;

use agp_contracts::sandbox::{BindMount, SandboxError, SandboxProvider};
use common::*;

/// Bubblewrap's pids cgroup or RLIMIT_NPROC (which root escapes); the container's pids cgroup
/// bound is `docker::hardening::session_bounds_become_container_limits`.
#[test]
fn process_limit_is_enforced_or_honestly_not() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_processes = Some(16));
    // Python forks without bash's fork-retry back-off.
    let out = fx.sh(
        "python3 -c '\nimport os, time\npids = []\nfor _ in range(40):\n    try:\n        pid = os.fork()\n    except BlockingIOError:\n        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    pids.append(pid)\nprint(len(pids))\nfor p in pids:\n    os.kill(p, 9)\n'",
    );
    let started: u32 = stdout(&out).trim().parse().unwrap();
    let caveats = fx.provider.isolation().caveats.join("\n");
    if fx.session.process_limit_by_cgroup() {
        // 16 counts bwrap's two processes and bash too.
        assert!(started <= 13, "{started} processes started: {out:?}");
        assert!(caveats.contains("per-session pids cgroup"), "{caveats}");
    } else if is_root() {
        // The kernel exempts root from RLIMIT_NPROC; the provider must say so.
        assert_eq!(started, 40, "{out:?}");
        assert!(
            caveats.contains("RLIMIT_NPROC) is not enforced"),
            "{caveats}"
        );
    } else {
        assert!(started < 40, "{started}");
    }
}

/// Not a test on its own: the stand-in daemon of `killing_the_parent_kills_the_sandbox`, run
/// in a child process of this test binary. Starts a sandboxed long-running command through
/// the provider, as the agent launcher does, then waits to be killed.
#[test]
fn die_with_parent_helper() {
    let (Some(marker), Some(repo)) = (
        std::env::var_os("AGP_DWP_MARKER"),
        std::env::var_os("AGP_DWP_REPO"),
    ) else {
        return;
    };
    let provider = agp_sandbox::BubblewrapProvider::new();
    let session = provider
        .spawn(&agp_contracts::sandbox::SandboxSpec::new("dwp", &repo))
        .unwrap();
    let script = format!("exec -a {} sleep 300", marker.to_string_lossy());
    let mut child = provider
        .command(
            &session,
            &["bash".into(), "-c".into(), script],
            session.repo(),
        )
        .unwrap()
        .spawn()
        .unwrap();
    let _ = child.wait();
}

/// bwrap's `--die-with-parent`; a container outlives agp by design and is removed by the
/// orphan sweep (`docker::hardening::orphaned_containers_are_found_and_removed`).
#[test]
fn killing_the_parent_kills_the_sandbox() {
    let fx = Fixture::new();
    let marker = format!("agp-dwp-{}", token());
    let mut parent = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::escape_bwrap::die_with_parent_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AGP_DWP_MARKER", &marker)
        .env("AGP_DWP_REPO", &fx.repo)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while host_pids_with(&format!("{marker}\0")).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sandboxed sleep never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    let survivors = wait_gone(&marker, Duration::from_secs(5));
    assert!(
        survivors.is_empty(),
        "sandboxed processes survived: {survivors:?}"
    );
}

/// A bwrap command line that fails at run time; the container provider refuses at spawn.
#[test]
fn a_sandbox_that_cannot_be_built_is_an_error_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let provider = agp_sandbox::BubblewrapProvider::new();
    let mut spec = agp_contracts::sandbox::SandboxSpec::new("s", dir.path());
    // /usr is bound read-only: bubblewrap cannot create a mount point under it.
    spec.binds.push(BindMount {
        source: src.path().to_path_buf(),
        dest: "/usr/agp-cannot-exist-here".into(),
        writable: false,
    });
    let session = provider.spawn(&spec).unwrap();
    let err = provider
        .exec(&session, &run_in(session.repo(), &["true"]))
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Refused(m) if m.contains("could not set up")),
        "{err}"
    );
    let preflight = provider.preflight(&session).unwrap_err();
    assert!(
        matches!(preflight, SandboxError::PreflightFailed(_)),
        "{preflight}"
    );
}

#[test]
fn long_running_command_gets_its_own_stdio() {
    use std::io::{BufRead, BufReader, Write};
    let fx = Fixture::new();
    let mut cmd = fx
        .provider
        .command(
            &fx.session,
            &[
                "bash".into(),
                "-c".into(),
                "while read -r line; do echo \"got $line in $PWD as $HOME\"; done".into(),
            ],
            &fx.repo,
        )
        .unwrap();
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for word in ["one", "two"] {
        writeln!(stdin, "{word}").unwrap();
        let line = lines.next().unwrap().unwrap();
        assert_eq!(
            line,
            format!("got {word} in {} as /home/agent", fx.repo.display())
        );
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// agp's own seccomp filter for bwrap; containers run the engine's default profile, which
/// the container provider's verification checks is kept.
#[cfg(target_arch = "x86_64")]
#[test]
fn risky_system_calls_are_refused_by_seccomp() {
    let fx = Fixture::new();
    // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING), bpf(0, 0, 0),
    // userfaultfd(0), unshare(CLONE_NEWNS), getpid through the x32 ABI.
    let python = [
        "import ctypes",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "calls = [('keyctl', 250, (0, -3)), ('bpf', 321, (0, 0, 0)), ('userfaultfd', 323, (0,)),",
        "         ('unshare', 272, (0x20000,)), ('x32_getpid', 0x40000000 | 39, ())]",
        "for name, nr, args in calls:",
        "    r = libc.syscall(nr, *args)",
        "    print(name, r, ctypes.get_errno())",
        "print('getpid', libc.syscall(39))",
    ]
    .join("\n");
    let out = fx.sh(&format!(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; python3 -c \"{python}\""
    ));
    let s = stdout(&out);
    assert!(s.contains("Seccomp:\t2"), "{out:?}");
    assert!(s.contains("NoNewPrivs:\t1"), "{out:?}");
    for name in ["keyctl", "bpf", "userfaultfd", "unshare", "x32_getpid"] {
        assert!(
            s.lines().any(|l| l == format!("{name} -1 1")),
            "{name} not refused with EPERM: {s}"
        );
    }
    // Ordinary calls still work.
    assert!(
        s.lines()
            .any(|l| l.starts_with("getpid ") && !l.starts_with("getpid -1")),
        "{s}"
    );
}
