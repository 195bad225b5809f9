//! The session's CPU and memory bounds as the container's cgroups hold them, measured in the
//! cgroup the kernel charges (never against the wall clock).

use std::path::{Path, PathBuf};

use agp_contracts::sandbox::{ResourceLimits, SandboxProvider, SandboxSpec};
use agp_sandbox::docker::Runtime;

use super::{run, setup_on, text, Daemon, Kind};

/// The host directory of `controller`'s cgroup of the container's init (v1 hierarchy, or
/// the unified one), and whether it is v2.
fn cgroup_dir(daemon: Daemon, container: &str, controller: &str) -> (PathBuf, bool) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(daemon.socket())
        .arg(format!("http://docker/v1.41/containers/{container}/json"))
        .output()
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = inspect["State"]["Pid"].as_u64().unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut unified = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == controller) {
            let mount = Path::new("/sys/fs/cgroup").join(controllers);
            return (mount.join(path.trim_start_matches('/')), false);
        }
        if controllers.is_empty() {
            unified = Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
    }
    (unified.expect("no cgroup of the container's init"), true)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing: {text}"))
}

/// (CPU time used in µs, CFS periods, periods throttled, quota per period in µs) of the
/// container's cgroup (`acct`: v1's cpuacct directory).
fn cpu_counters(dir: &Path, acct: &Path, v2: bool) -> (u64, u64, u64, u64) {
    let s = read(dir, "cpu.stat");
    let (usage, quota) = if v2 {
        let max = read(dir, "cpu.max");
        (
            stat(&s, "usage_usec"),
            max.split_whitespace().next().unwrap().parse().unwrap(),
        )
    } else {
        let ns: u64 = read(acct, "cpuacct.usage").trim().parse().unwrap();
        (
            ns / 1000,
            read(dir, "cpu.cfs_quota_us").trim().parse().unwrap(),
        )
    };
    (
        usage,
        stat(&s, "nr_periods"),
        stat(&s, "nr_throttled"),
        quota,
    )
}

/// Two busy loops (as many as this machine has cores) under a bound of a quarter CPU: the
/// cgroup throttles them, and in no stretch of periods did they use more than the quota of
/// each (two periods of slack: the kernel charges a period's overrun to the next).
#[test]
fn a_busy_loop_cannot_use_more_cpu_than_the_bound() {
    for kind in [Kind::Docker, Kind::Podman] {
        let Some(t) = setup_on(kind, Runtime::Runc) else {
            return;
        };
        let mut spec = SandboxSpec::new("cpu-bound", &t.repo);
        spec.limits = ResourceLimits {
            cpu_millis: Some(250),
            ..ResourceLimits::default()
        };
        let s = t
            .provider
            .spawn(&spec)
            .unwrap_or_else(|e| panic!("{kind:?}: spawn: {e}"));
        let (dir, v2) = cgroup_dir(t.daemon, s.container_id(), "cpu");
        let (acct, _) = cgroup_dir(t.daemon, s.container_id(), "cpuacct");
        let before = cpu_counters(&dir, &acct, v2);
        assert_eq!(before.3, 25_000, "{kind:?}: quota per 100 ms period");
        let out = run(
            &t.provider,
            &s,
            "spin() { i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; }; \
             spin & a=$!; spin & b=$!; wait $a $b; echo done",
        );
        assert_eq!(text(&out.stdout).trim(), "done", "{out:?}");
        let after = cpu_counters(&dir, &acct, v2);
        eprintln!("{kind:?}: before {before:?} after {after:?}");
        let used = after.0 - before.0;
        let periods = after.1 - before.1;
        let throttled = after.2 - before.2;
        assert!(throttled > 0, "{kind:?}: never throttled: {after:?}");
        assert!(
            used <= (periods + 2) * after.3,
            "{kind:?}: used {used} µs of CPU in {periods} periods of {} µs",
            after.3
        );
        t.provider.teardown(s).unwrap();
    }
}

/// A command the container's memory bound kills is reported as the bubblewrap provider
/// reports its session memory bound, with the cgroup's count to back it; the next command
/// runs.
#[test]
fn the_container_memory_bound_kill_is_reported() {
    for kind in [Kind::Docker, Kind::Podman] {
        let Some(t) = setup_on(kind, Runtime::Runc) else {
            return;
        };
        let bound = 64u64 << 20;
        let mut spec = SandboxSpec::new("oom", &t.repo);
        spec.limits = ResourceLimits {
            session_memory_bytes: Some(bound),
            ..ResourceLimits::default()
        };
        let s = t
            .provider
            .spawn(&spec)
            .unwrap_or_else(|e| panic!("{kind:?}: spawn: {e}"));
        let (dir, v2) = cgroup_dir(t.daemon, s.container_id(), "memory");
        let ooms = || {
            let (file, key) = if v2 {
                ("memory.events", "oom_kill")
            } else {
                ("memory.oom_control", "oom_kill")
            };
            stat(&read(&dir, file), key)
        };
        let before = ooms();
        let small = run(
            &t.provider,
            &s,
            "dd if=/dev/zero of=/dev/null bs=1M count=1",
        );
        assert_eq!(small.limit_exceeded, None, "{kind:?}: {small:?}");
        let out = run(
            &t.provider,
            &s,
            "dd if=/dev/zero of=/dev/null bs=200M count=1 && echo ALLOCATED",
        );
        assert!(
            !text(&out.stdout).contains("ALLOCATED"),
            "{kind:?}: {out:?}"
        );
        assert!(ooms() > before, "{kind:?}: the cgroup killed nothing");
        let hit = out
            .limit_exceeded
            .as_ref()
            .unwrap_or_else(|| panic!("{kind:?}: no limit reported: {out:?}"));
        assert_eq!(
            (hit.limit.as_str(), hit.bound),
            ("session_memory", bound),
            "{hit:?}"
        );
        assert!(hit.observed > 0, "{hit:?}");
        assert!(hit.message.contains("session_memory_bytes"), "{hit:?}");
        let next = run(&t.provider, &s, "echo still-here");
        assert_eq!(text(&next.stdout), "still-here\n", "{kind:?}: {next:?}");
        assert_eq!(next.limit_exceeded, None, "{kind:?}: {next:?}");
        t.provider.teardown(s).unwrap();
    }
}
