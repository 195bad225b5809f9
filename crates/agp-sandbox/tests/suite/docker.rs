//! The container provider against a real engine: Debian's dockerd, started by this test
//! binary (agp-testkit), with runc and with gVisor's runsc, and the default busybox image
//! built through the Engine API as `agp sandbox image build` builds it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use agp_contracts::sandbox::{
    ExecOutput, ExecRequest, ResourceLimits, SandboxError, SandboxProvider, SandboxSpec,
};
use agp_sandbox::docker::{image, DockerProvider, DockerSession, Engine, ImageRef, Runtime};
use agp_testkit::docker::DockerEngine;

const UID: u32 = image::DEFAULT_IMAGE_UID;

fn engine() -> Option<(&'static DockerEngine, Engine)> {
    let daemon = DockerEngine::shared()?;
    Some((daemon, Engine::at(daemon.socket()).unwrap()))
}

/// The default image, imported once per test binary.
fn default_image(engine: &Engine) -> ImageRef {
    static IMAGE: OnceLock<ImageRef> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let rootfs = image::busybox_rootfs(Path::new("/bin/busybox")).unwrap();
            image::import(engine, "localhost/agp-test:busybox", rootfs.as_slice()).unwrap()
        })
        .clone()
}

struct Setup {
    dir: tempfile::TempDir,
    repo: PathBuf,
    outside: PathBuf,
    provider: DockerProvider,
    engine: Engine,
    daemon: &'static DockerEngine,
}

/// A repository owned by the image's non-root uid (the container runs as the repository's
/// owner), and a sibling directory outside it.
fn setup(runtime: Runtime) -> Option<Setup> {
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

fn run(p: &DockerProvider, s: &DockerSession, script: &str) -> ExecOutput {
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether the engine still knows the container.
fn exists(engine_socket: &Path, id: &str) -> bool {
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

fn session_works_and_is_confined(runtime: Runtime) {
    let Some(t) = setup(runtime) else { return };
    let s = t
        .provider
        .spawn(&SandboxSpec::new(format!("s-{}", runtime.name()), &t.repo))
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", t.daemon.log()));
    let report = t
        .provider
        .preflight(&s)
        .unwrap_or_else(|e| panic!("preflight ({}): {e}", runtime.name()));
    assert!(report.passed && report.checks.len() >= 8, "{report:?}");

    let out = run(&t.provider, &s, "echo hello");
    assert_eq!(
        (out.exit_code, text(&out.stdout)),
        (Some(0), "hello\n".into())
    );

    // Writes in the repository land on the host, as the repository's owner.
    let out = run(&t.provider, &s, "echo data > made-inside && id -u");
    assert_eq!(out.exit_code, Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), UID.to_string());
    let made = t.repo.join("made-inside");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "data\n");
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), UID);

    // Nothing outside the repository is writable or even there.
    let outside = t.outside.join("x");
    for target in [
        "/x".to_string(),
        "/etc/passwd".into(),
        "/usr/x".into(),
        "/bin/busybox".into(),
        outside.display().to_string(),
    ] {
        let out = run(&t.provider, &s, &format!("echo pwned > '{target}'"));
        assert_ne!(out.exit_code, Some(0), "wrote {target}");
    }
    assert!(!outside.exists());
    let out = run(&t.provider, &s, &format!("ls -A '{}'", t.outside.display()));
    assert_ne!(
        out.exit_code,
        Some(0),
        "the repository's sibling is visible"
    );

    // No network: only lo, no routes, no connection out.
    let out = run(
        &t.provider,
        &s,
        "cat /proc/net/dev; nc -w 2 1.1.1.1 443 </dev/null && echo CONNECTED",
    );
    let seen = text(&out.stdout);
    assert!(
        !seen.contains("CONNECTED") && !seen.contains("eth0"),
        "{seen}"
    );

    // Non-root, no capabilities, and the engine socket is nowhere.
    let out = run(
        &t.provider,
        &s,
        &format!(
            "grep -E '^(Uid|CapEff)' /proc/self/status; ls -la '{}' /var/run/docker.sock /run/docker.sock 2>&1",
            t.daemon.socket().display()
        ),
    );
    let seen = text(&out.stdout);
    assert!(
        seen.contains(&format!("Uid:\t{UID}\t{UID}\t{UID}\t{UID}")),
        "{seen}"
    );
    assert!(seen.contains("CapEff:\t0000000000000000"), "{seen}");
    assert!(
        !seen.contains("docker.sock\n") || seen.matches("No such file").count() == 3,
        "{seen}"
    );

    // stdin is fed and closed; the exit code is the command's.
    let out = t
        .provider
        .exec(
            &s,
            &ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), "cat; exit 3".into()],
                cwd: t.repo.clone(),
                stdin: Some(b"piped".to_vec()),
                timeout: Duration::from_secs(30),
            },
        )
        .unwrap();
    assert_eq!(
        (out.exit_code, text(&out.stdout)),
        (Some(3), "piped".into())
    );

    let id = s.container_id().to_string();
    assert!(exists(t.daemon.socket(), &id));
    t.provider.teardown(s).unwrap();
    assert!(
        !exists(t.daemon.socket(), &id),
        "teardown left the container"
    );
}

#[test]
fn runc_session_works_and_is_confined() {
    session_works_and_is_confined(Runtime::Runc);
}

#[test]
fn runsc_session_works_and_is_confined() {
    session_works_and_is_confined(Runtime::Runsc);
}

/// What a hostile command tries once inside: each must fail.
fn escapes_fail(runtime: Runtime) {
    let Some(t) = setup(runtime) else { return };
    let s = t
        .provider
        .spawn(&SandboxSpec::new(
            format!("esc-{}", runtime.name()),
            &t.repo,
        ))
        .unwrap();
    let sock = t.daemon.socket().display().to_string();
    let attempts = [
        ("mount", "mount -t tmpfs none /mnt".to_string()),
        (
            "mount proc",
            "mkdir -p /tmp/p && mount -t proc proc /tmp/p".into(),
        ),
        ("unshare user", "unshare -r id".into()),
        ("unshare mount", "unshare -m true".into()),
        ("chroot", "chroot / true".into()),
        ("nsenter pid 1", "nsenter -t 1 -m true".into()),
        ("sysctl write", "echo 1 > /proc/sys/kernel/sysrq".into()),
        ("sysrq trigger", "echo h > /proc/sysrq-trigger".into()),
        ("engine socket", format!("nc -U '{sock}' </dev/null")),
        // gVisor lets mknod make a node in its own tmpfs; neither runtime lets it be opened.
        (
            "block device",
            "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda".into(),
        ),
        (
            "chown to root",
            "cp /bin/busybox /tmp/bb && chown 0:0 /tmp/bb".into(),
        ),
        (
            "kernel module",
            "insmod /tmp/none.ko 2>&1 || modprobe -q loop".into(),
        ),
        ("su root", "su -c true root </dev/null".into()),
        ("raw socket", "ping -c 1 -W 1 127.0.0.1".into()),
    ];
    for (what, script) in attempts {
        let out = run(&t.provider, &s, &script);
        assert_ne!(
            out.exit_code,
            Some(0),
            "{what} succeeded under {}: {} {}",
            runtime.name(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    t.provider.teardown(s).unwrap();
}

#[test]
fn runc_escapes_fail() {
    escapes_fail(Runtime::Runc);
}

#[test]
fn runsc_escapes_fail() {
    escapes_fail(Runtime::Runsc);
}

#[test]
fn runsc_runs_on_gvisor_and_runc_on_the_host_kernel() {
    let host = std::fs::read_to_string("/proc/version").unwrap();
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let Some(t) = setup(runtime) else { return };
        let s = t
            .provider
            .spawn(&SandboxSpec::new("kernel", &t.repo))
            .unwrap();
        let inside = text(&run(&t.provider, &s, "cat /proc/version").stdout);
        match runtime {
            Runtime::Runc => assert_eq!(inside.trim(), host.trim()),
            Runtime::Runsc => assert_ne!(inside.trim(), host.trim()),
        }
        let caveats = t.provider.isolation().caveats.join(" ");
        assert!(
            caveats.contains(match runtime {
                Runtime::Runc => "shares the host kernel",
                Runtime::Runsc => "user-space kernel",
            }),
            "{caveats}"
        );
        t.provider.teardown(s).unwrap();
    }
}

#[test]
fn a_timeout_kills_everything_and_the_session_goes_on() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let s = t
        .provider
        .spawn(&SandboxSpec::new("timeout", &t.repo))
        .unwrap();
    // A background process and the command itself both outlive the deadline.
    let out = t
        .provider
        .exec(
            &s,
            &ExecRequest {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "(sleep 1000 &) ; echo started; sleep 1000".into(),
                ],
                cwd: t.repo.clone(),
                stdin: None,
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
    assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
    assert_eq!(text(&out.stdout), "started\n");
    let left = run(&t.provider, &s, "ps -o comm | grep -c '^sleep'");
    // Only the container's own waiting `sleep` (PID 1's child under init) remains.
    assert_eq!(text(&left.stdout).trim(), "1", "{}", text(&left.stderr));
    t.provider.teardown(s).unwrap();
}

#[test]
fn output_is_capped() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let provider = t.provider.clone().output_cap(1000);
    let s = provider.spawn(&SandboxSpec::new("cap", &t.repo)).unwrap();
    let out = run(
        &provider,
        &s,
        "yes | head -c 100000; yes e | head -c 5000 >&2",
    );
    assert_eq!((out.stdout.len(), out.stderr.len()), (1000, 1000));
    assert!(out.truncated);
    provider.teardown(s).unwrap();
}

#[test]
fn a_tag_without_digest_and_a_wrong_digest_are_refused() {
    let Some((_, engine)) = engine() else { return };
    let pinned = default_image(&engine);
    assert!("localhost/agp-test:busybox".parse::<ImageRef>().is_err());
    let mut wrong = pinned.clone();
    wrong.digest = "0".repeat(64);
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let provider = DockerProvider::new(engine.clone(), wrong, Runtime::Runc);
    let err = provider
        .spawn(&SandboxSpec::new("wrong-digest", &t.repo))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Refused(m) if m.contains("not the pinned")),
        "{err}"
    );
    let missing: ImageRef = format!("localhost/agp-absent:1@sha256:{}", "1".repeat(64))
        .parse()
        .unwrap();
    let provider = DockerProvider::new(engine, missing, Runtime::Runc);
    let err = provider
        .spawn(&SandboxSpec::new("missing", &t.repo))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, SandboxError::Missing(_)), "{err}");
}

#[test]
fn root_owned_repos_and_binds_exposing_the_engine_are_refused() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    std::os::unix::fs::chown(&t.repo, Some(0), Some(0)).unwrap();
    let err = t
        .provider
        .spawn(&SandboxSpec::new("root", &t.repo))
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("owned by root"), "{err}");
    std::os::unix::fs::chown(&t.repo, Some(UID), Some(UID)).unwrap();
    let mut spec = SandboxSpec::new("expose", &t.repo);
    spec.ro_binds
        .push(t.daemon.socket().parent().unwrap().to_path_buf());
    let err = t.provider.spawn(&spec).map(|_| ()).unwrap_err();
    assert!(err.to_string().contains("would expose"), "{err}");
    let mut spec = SandboxSpec::new("net", &t.repo);
    spec.share_network = true;
    assert!(t.provider.spawn(&spec).is_err());
}

#[test]
fn session_bounds_become_container_limits() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let mut spec = SandboxSpec::new("limits", &t.repo);
    spec.limits = ResourceLimits {
        max_processes: Some(20),
        session_memory_bytes: Some(64 * 1024 * 1024),
        tmpfs_bytes: Some(1024 * 1024),
        ..ResourceLimits::default()
    };
    let s = t.provider.spawn(&spec).unwrap();
    let out = run(
        &t.provider,
        &s,
        "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done 2>/dev/null; wait",
    );
    assert!(
        text(&out.stderr).contains("can't fork") || out.exit_code != Some(0),
        "40 processes under a bound of 20: {out:?}"
    );
    let out = run(
        &t.provider,
        &s,
        "dd if=/dev/zero of=/tmp/big bs=1024 count=4096",
    );
    assert_ne!(out.exit_code, Some(0), "4 MiB into a 1 MiB /tmp");
    let out = run(
        &t.provider,
        &s,
        "dd if=/dev/zero of=$HOME/big bs=1024 count=4096",
    );
    assert_ne!(out.exit_code, Some(0), "4 MiB into a 1 MiB HOME");
    t.provider.teardown(s).unwrap();
}

#[test]
fn orphaned_containers_are_found_and_removed() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let s = t
        .provider
        .spawn(&SandboxSpec::new("orphan-of-a-crash", &t.repo))
        .unwrap();
    let id = s.container_id().to_string();
    // A crash: the session is never torn down or dropped.
    std::mem::forget(s);
    assert!(exists(t.daemon.socket(), &id));
    // Other tests' sessions run on the same engine: they count as live here.
    let removed =
        agp_sandbox::docker::remove_orphans(&t.engine, |s| s != "orphan-of-a-crash").unwrap();
    assert_eq!(removed, vec![id.clone()]);
    assert!(!exists(t.daemon.socket(), &id));
}

#[test]
fn git_metadata_is_guarded_in_the_container() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&t.repo)
        .status()
        .unwrap();
    assert!(git.success());
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{UID}:{UID}")])
        .arg(&t.repo)
        .status()
        .unwrap();
    assert!(chown.success());
    let config_before = std::fs::read_to_string(t.repo.join(".git/config")).unwrap();
    let s = t.provider.spawn(&SandboxSpec::new("git", &t.repo)).unwrap();
    for (what, script) in [
        (
            "config",
            "echo '[core]\n\tfsmonitor = /tmp/x' >> .git/config",
        ),
        ("hook", "echo '#!/bin/sh' > .git/hooks/pre-commit"),
        ("rename .git", "mv .git .git-old"),
        (
            "replace config",
            "cp .git/config /tmp/c && mv /tmp/c .git/config",
        ),
    ] {
        let out = run(&t.provider, &s, script);
        assert_ne!(out.exit_code, Some(0), "{what} succeeded: {out:?}");
    }
    // Planted where nothing was bound: moved out of git's way after the command.
    let out = run(&t.provider, &s, "echo /tmp/evil > .git/commondir");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(
        out.git_metadata_removed
            .iter()
            .any(|r| r.contains("commondir")),
        "{out:?}"
    );
    assert!(!t.repo.join(".git/commondir").exists());
    // Commit state stays writable.
    let out = run(&t.provider, &s, "echo ref: refs/heads/other > .git/HEAD");
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(t.repo.join(".git/config")).unwrap(),
        config_before
    );
    t.provider.teardown(s).unwrap();
}

#[test]
fn host_sockets_in_the_repository_are_masked() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let listener = std::os::unix::net::UnixListener::bind(t.repo.join("host.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let s = t
        .provider
        .spawn(&SandboxSpec::new("sockets", &t.repo))
        .unwrap();
    let out = run(
        &t.provider,
        &s,
        "test -S host.sock && echo SOCKET; nc -U host.sock </dev/null && echo CONNECTED",
    );
    let seen = text(&out.stdout);
    assert!(
        !seen.contains("SOCKET") && !seen.contains("CONNECTED"),
        "{out:?}"
    );
    assert!(
        listener.accept().is_err(),
        "the host socket accepted a connection"
    );
    t.provider.teardown(s).unwrap();
}

/// Figures for the report, not a check: `cargo test -p agp-sandbox --test all
/// docker::latency -- --ignored --nocapture` (`agp bench sandbox --provider docker` is to come).
#[test]
#[ignore = "prints figures; run by hand"]
fn latency() {
    fn p(sorted: &[u128], q: f64) -> u128 {
        sorted[((sorted.len() - 1) as f64 * q) as usize]
    }
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let Some(t) = setup(runtime) else { return };
        let mut starts = Vec::new();
        let mut execs = Vec::new();
        for i in 0..10 {
            let begun = std::time::Instant::now();
            let s = t
                .provider
                .spawn(&SandboxSpec::new(format!("bench-{i}"), &t.repo))
                .unwrap();
            starts.push(begun.elapsed().as_millis());
            for _ in 0..10 {
                let begun = std::time::Instant::now();
                let out = run(&t.provider, &s, "true");
                assert_eq!(out.exit_code, Some(0));
                execs.push(begun.elapsed().as_millis());
            }
            t.provider.teardown(s).unwrap();
        }
        starts.sort_unstable();
        execs.sort_unstable();
        eprintln!(
            "{}: session start p50 {} ms p99 {} ms; exec p50 {} ms p99 {} ms",
            runtime.name(),
            p(&starts, 0.5),
            p(&starts, 0.99),
            p(&execs, 0.5),
            p(&execs, 0.99)
        );
    }
}

#[test]
fn nothing_a_command_starts_outlives_it() {
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let Some(t) = setup(runtime) else { return };
        let s = t
            .provider
            .spawn(&SandboxSpec::new("leftovers", &t.repo))
            .unwrap();
        // Detached in every way a shell allows: background, new session, double fork.
        let out = run(
            &t.provider,
            &s,
            "(sleep 300 &) ; setsid sh -c 'while :; do date > tick; sleep 1; done' & \
             nohup sleep 301 >/dev/null 2>&1 & echo started",
        );
        assert_eq!(text(&out.stdout), "started\n", "{out:?}");
        let out = run(&t.provider, &s, "ps -o pid,comm | grep -c sleep");
        // Only the container's own waiting process is left.
        assert_eq!(
            text(&out.stdout).trim(),
            "1",
            "{} {:?}",
            runtime.name(),
            out
        );
        let before = std::fs::read_to_string(t.repo.join("tick")).unwrap_or_default();
        let again = run(&t.provider, &s, "sleep 2; cat tick 2>/dev/null || true");
        assert_eq!(text(&again.stdout), before, "the writer kept running");
        // The session goes on.
        assert_eq!(run(&t.provider, &s, "echo ok").exit_code, Some(0));
        t.provider.teardown(s).unwrap();
    }
}

#[test]
fn commands_cannot_signal_or_trace_the_containers_own_processes() {
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let Some(t) = setup(runtime) else { return };
        let s = t
            .provider
            .spawn(&SandboxSpec::new("kill-all", &t.repo))
            .unwrap();
        // /tmp lives as long as the container runs: a restart would empty it.
        assert_eq!(run(&t.provider, &s, "touch /tmp/marker").exit_code, Some(0));
        let out = run(
            &t.provider,
            &s,
            "for p in $(ps -o pid= ); do if [ $p != $$ ] && kill -9 $p 2>/dev/null; then echo killed $p; fi; done; \
             kill -9 -1; cat /proc/1/environ >/dev/null && echo read-environ; \
             readlink /proc/1/exe >/dev/null 2>&1 && echo read-exe; true",
        );
        let seen = text(&out.stdout);
        assert!(!seen.contains("read-exe"), "{} {seen}", runtime.name());
        // gVisor lets another uid read /proc/1/environ, which holds the same environment the
        // commands get; the host kernel does not.
        if runtime == Runtime::Runc {
            assert!(!seen.contains("read-environ"), "{seen}");
        }
        assert!(
            seen.lines().all(|l| !l.starts_with("killed")),
            "{} {seen}",
            runtime.name()
        );
        let out = run(&t.provider, &s, "ls /tmp/marker");
        assert_eq!(
            out.exit_code,
            Some(0),
            "the container was restarted: {out:?}"
        );
        t.provider.teardown(s).unwrap();
    }
}

#[test]
fn an_image_that_brings_its_own_volume_is_refused_and_removed() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    // The default root, imported with a VOLUME the engine would mount into every container.
    let rootfs = image::busybox_rootfs(Path::new("/bin/busybox")).unwrap();
    let tar = t.dir.path().join("rootfs.tar");
    std::fs::write(&tar, rootfs).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "--fail", "--unix-socket"])
        .arg(t.daemon.socket())
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-tar",
            "--data-binary",
        ])
        .arg(format!("@{}", tar.display()))
        .arg(
            "http://docker/v1.41/images/create?fromSrc=-&repo=localhost/agp-test&tag=volume\
             &changes=VOLUME%20%2Fdata",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(t.daemon.socket())
        .arg("http://docker/v1.41/images/localhost/agp-test:volume/json")
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let id = info["Id"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let pinned: ImageRef = format!("localhost/agp-test:volume@sha256:{id}")
        .parse()
        .unwrap();
    let provider = DockerProvider::new(t.engine.clone(), pinned, Runtime::Runc);
    let err = provider
        .spawn(&SandboxSpec::new("volume", &t.repo))
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only the repository and the binds asked for"),
        "{err}"
    );
    // The refused container did not stay behind.
    let left = agp_sandbox::docker::remove_orphans(&t.engine, |s| s != "volume").unwrap();
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn the_session_memory_bound_holds_all_commands_together() {
    let Some(t) = setup(Runtime::Runc) else {
        return;
    };
    let mut spec = SandboxSpec::new("memory", &t.repo);
    spec.limits = ResourceLimits {
        session_memory_bytes: Some(64 * 1024 * 1024),
        tmpfs_bytes: Some(512 * 1024 * 1024),
        ..ResourceLimits::default()
    };
    let s = t.provider.spawn(&spec).unwrap();
    // tmpfs pages count against the container's memory: 200 MiB cannot fit in 64 MiB.
    let out = run(
        &t.provider,
        &s,
        "dd if=/dev/zero of=/tmp/big bs=1M count=200 2>/dev/null; echo $?; wc -c < /tmp/big",
    );
    let seen = text(&out.stdout);
    let mut lines = seen.lines();
    let (status, size) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    assert_ne!(status, "0", "{out:?}");
    assert!(
        size.trim().parse::<u64>().unwrap() < 200 * 1024 * 1024,
        "{out:?}"
    );
    t.provider.teardown(s).unwrap();
}
