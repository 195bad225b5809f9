//! A session: it runs commands, confined, and ends without a trace.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use agp_contracts::sandbox::{ExecRequest, SandboxError, SandboxProvider, SandboxSpec};
use agp_sandbox::docker::{DockerProvider, ImageRef, Runtime};

use super::{default_image, engine, exists, run, setup, setup_on, text, Kind, UID};

fn session_works_and_is_confined(kind: Kind, runtime: Runtime) {
    let Some(t) = setup_on(kind, runtime) else {
        return;
    };
    let s = t
        .provider
        .spawn(&SandboxSpec::new(format!("s-{}", runtime.name()), &t.repo))
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", t.daemon.log()));
    let report = t
        .provider
        .preflight(&s)
        .unwrap_or_else(|e| panic!("preflight ({}): {e}", runtime.name()));
    assert!(report.passed && report.checks.len() >= 8, "{report:?}");
    // What it ran on, recorded as fields (journaled with the preflight).
    let target = report
        .target
        .as_ref()
        .expect("a container preflight names its target");
    assert_eq!(target.runtime, runtime.name(), "{report:?}");
    assert_eq!(target.image, t.provider.image().to_string(), "{report:?}");
    let engine = match kind {
        Kind::Docker => "docker",
        _ => "podman",
    };
    assert_eq!(target.engine, engine, "{report:?}");
    assert!(!target.engine_version.is_empty(), "{report:?}");

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
    session_works_and_is_confined(Kind::Docker, Runtime::Runc);
}

#[test]
fn podman_runc_session_works_and_is_confined() {
    session_works_and_is_confined(Kind::Podman, Runtime::Runc);
}

#[test]
fn runsc_session_works_and_is_confined() {
    session_works_and_is_confined(Kind::Docker, Runtime::Runsc);
}

/// What a hostile command tries once inside: each must fail.
fn escapes_fail(kind: Kind, runtime: Runtime) {
    let Some(t) = setup_on(kind, runtime) else {
        return;
    };
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
            "{what} succeeded under {kind:?}+{}: {} {}",
            runtime.name(),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    t.provider.teardown(s).unwrap();
}

/// Podman's stock seccomp profile lets `unshare -r` make a user namespace (Docker's does not):
/// the session is refused before any command runs, naming that, and the container is gone.
#[test]
fn podman_with_its_stock_seccomp_profile_is_refused() {
    let Some(t) = setup_on(Kind::PodmanStock, Runtime::Runc) else {
        return;
    };
    let Err(err) = t
        .provider
        .spawn(&SandboxSpec::new("stock-seccomp", &t.repo))
    else {
        panic!("a session on Podman's stock seccomp profile was allowed");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("refusing new namespaces and mounts") && msg.contains("seccomp_profile"),
        "{msg}"
    );
    assert!(!msg.contains("runtime,"), "{msg}");
    assert!(!msg.contains("capabilities"), "{msg}");
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(t.daemon.socket())
        .arg("http://docker/v1.41/containers/json?all=true")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        "[]",
        "the refused container was left"
    );
}

#[test]
fn runc_escapes_fail() {
    escapes_fail(Kind::Docker, Runtime::Runc);
}

#[test]
fn podman_runc_escapes_fail() {
    escapes_fail(Kind::Podman, Runtime::Runc);
}

#[test]
fn runsc_escapes_fail() {
    escapes_fail(Kind::Docker, Runtime::Runsc);
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
fn the_engine_check_names_podman_and_its_version() {
    let Some((_, engine)) = super::engine_of(Kind::Podman) else {
        return;
    };
    let pinned = default_image(&engine);
    let summary = DockerProvider::new(engine, pinned, Runtime::Runc)
        .check_engine()
        .unwrap();
    let version = std::process::Command::new("podman")
        .arg("--version")
        .output()
        .unwrap();
    // "podman version 4.3.1"
    let version = text(&version.stdout)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        summary.starts_with(&format!("Podman {version} (API 1.41)")) && summary.contains("runc"),
        "{summary}"
    );
}

#[test]
fn the_engine_check_names_what_is_missing() {
    let Some((_, engine)) = engine() else { return };
    let pinned = default_image(&engine);
    for runtime in [Runtime::Runc, Runtime::Runsc] {
        let summary = DockerProvider::new(engine.clone(), pinned.clone(), runtime)
            .check_engine()
            .unwrap();
        assert!(
            summary.starts_with("Docker 20.")
                && summary.contains("API 1.41")
                && summary.contains(runtime.name()),
            "{summary}"
        );
    }
    let mut wrong = pinned;
    wrong.digest = "2".repeat(64);
    let err = DockerProvider::new(engine, wrong, Runtime::Runc)
        .check_engine()
        .unwrap_err();
    assert!(err.to_string().contains("not the pinned"), "{err}");
}

/// Podman 4.3's API does not apply a per-container runtime (it runs its default): a session
/// asking for another is refused before a container is made, naming why and the fix.
#[test]
fn podman_refuses_a_runtime_other_than_its_default() {
    for (kind, runtime, default) in [
        (Kind::Podman, Runtime::Runsc, "runc"),
        (Kind::PodmanRunsc, Runtime::Runc, "runsc"),
    ] {
        let Some(t) = setup_on(kind, runtime) else {
            return;
        };
        let Err(e) = t.provider.spawn(&SandboxSpec::new("p-other", &t.repo)) else {
            panic!(
                "{kind:?}: a {} session ran on Podman's {default}",
                runtime.name()
            );
        };
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("default runtime \"{default}\""))
                && msg.contains(&format!(
                    "runtime \"{}\" cannot be asked for",
                    runtime.name()
                ))
                && msg.contains(&format!(
                    "`runtime = \"{}\"` under [engine]",
                    runtime.name()
                )),
            "{msg}"
        );
        let out = std::process::Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(t.daemon.socket())
            .arg("http://docker/v1.41/containers/json?all=true&filters=%7B%22label%22%3A%5B%22agp.session%3Dp-other%22%5D%7D")
            .output()
            .unwrap();
        assert_eq!(
            text(&out.stdout).trim(),
            "[]",
            "a refused container was made"
        );
    }
}

/// The fix the refusal names, applied: with runsc as the service's default (and the network
/// flag it needs), Podman's sessions run on gVisor, confined as under Docker.
#[test]
fn podman_runsc_session_works_and_is_confined() {
    session_works_and_is_confined(Kind::PodmanRunsc, Runtime::Runsc);
}

#[test]
fn podman_runsc_escapes_fail() {
    escapes_fail(Kind::PodmanRunsc, Runtime::Runsc);
}

#[test]
fn podman_runsc_runs_on_gvisor() {
    let Some(t) = setup_on(Kind::PodmanRunsc, Runtime::Runsc) else {
        return;
    };
    let s = t
        .provider
        .spawn(&SandboxSpec::new("p-gvisor", &t.repo))
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", t.daemon.log()));
    let inside = text(&run(&t.provider, &s, "cat /proc/version").stdout);
    let host = std::fs::read_to_string("/proc/version").unwrap();
    assert_ne!(inside.trim(), host.trim(), "runsc asked, host kernel given");
    assert!(!inside.trim().is_empty());
    t.provider.teardown(s).unwrap();
}

/// Podman's compatible API rejects the `as` ulimit (RLIMIT_AS); through its own API a session
/// with agp's default bounds runs, and every process inside has them.
#[test]
fn podman_holds_the_per_process_bounds() {
    let Some(t) = setup_on(Kind::Podman, Runtime::Runc) else {
        return;
    };
    let mut spec = SandboxSpec::new("as-limit", &t.repo);
    spec.limits.max_memory_bytes = Some(2 << 30);
    spec.limits.max_cpu_seconds = Some(600);
    spec.limits.repo_growth_bytes = Some(8 << 20);
    let s = t
        .provider
        .spawn(&spec)
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", t.daemon.log()));
    let out = run(&t.provider, &s, "cat /proc/self/limits");
    let limits = text(&out.stdout);
    for (label, value) in [
        ("Max address space", (2u64 << 30).to_string()),
        ("Max cpu time", "600".to_string()),
        ("Max file size", (8u64 << 20).to_string()),
    ] {
        let line = limits
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label} missing: {limits}"));
        let fields: Vec<&str> = line[label.len()..].split_whitespace().collect();
        assert_eq!(&fields[..2], &[value.as_str(), value.as_str()], "{line}");
    }
    // Asking for more address space than the bound fails (dd allocates its block).
    let out = run(
        &t.provider,
        &s,
        "dd if=/dev/zero of=/dev/null bs=2500M count=1 && echo ALLOCATED",
    );
    assert!(!text(&out.stdout).contains("ALLOCATED"), "{out:?}");
    t.provider.teardown(s).unwrap();
}
