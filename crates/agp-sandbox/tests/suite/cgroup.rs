//! Per-session pids cgroup lifecycle. Alone in its binary: it lists this process's session
//! cgroups, which other tests running in parallel would also create.

use super::support as common;

use std::time::Duration;

use agp_contracts::sandbox::SandboxProvider;
use common::*;

fn our_cgroups() -> Vec<String> {
    let prefix = format!("agp-sandbox-{}-", std::process::id());
    let mut found = Vec::new();
    for base in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    found.push(format!("{base}/{name}"));
                }
            }
        }
    }
    found
}

/// The tests of this binary each count this process's session cgroups: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Directories named like this process's session cgroups in the memory hierarchy.
fn our_memory_cgroups() -> Vec<std::path::PathBuf> {
    let prefix = format!("agp-sandbox-{}-", std::process::id());
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut bases = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            bases.push(std::path::Path::new("/sys/fs/cgroup/memory").join(path));
        } else if controllers.is_empty() {
            bases.push(std::path::Path::new("/sys/fs/cgroup").join(path));
        }
    }
    bases
        .iter()
        .filter_map(|b| std::fs::read_dir(b).ok())
        .flat_map(std::iter::Iterator::flatten)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn the_session_memory_cgroup_goes_with_the_session() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fx = Fixture::with_spec(|spec| spec.limits.session_memory_bytes = Some(512 << 20));
    if !fx.session.memory_limit_by_cgroup() {
        assert!(!is_root(), "root without a memory cgroup here");
        eprintln!("SKIPPED: no memory cgroup can be created here (not root)");
        return;
    }
    assert_eq!(our_memory_cgroups().len(), 1, "{:?}", our_memory_cgroups());
    assert_eq!(stdout(&fx.sh("echo in")), "in\n");
    let Fixture {
        provider, session, ..
    } = fx;
    provider.teardown(session).unwrap();
    assert!(
        our_memory_cgroups().is_empty(),
        "{:?}",
        our_memory_cgroups()
    );
}

#[test]
fn teardown_kills_leftovers_and_removes_the_session_cgroup() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fx = Fixture::with_spec(|spec| spec.limits.max_processes = Some(32));
    if !fx.session.process_limit_by_cgroup() {
        assert!(!is_root(), "root without a pids cgroup on this host");
        eprintln!("SKIPPED: no pids cgroup can be created here (not root)");
        return;
    }
    assert_eq!(our_cgroups().len(), 1, "{:?}", our_cgroups());
    let marker = format!("agp-cg-{}", token());
    let mut child = fx
        .provider
        .command(
            &fx.session,
            &[
                "bash".into(),
                "-c".into(),
                format!("exec -a {marker} sleep 300"),
            ],
            &fx.repo,
        )
        .unwrap()
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_pids_with(&format!("{marker}\0")).is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let Fixture {
        provider, session, ..
    } = fx;
    provider.teardown(session).unwrap();
    assert!(host_pids_with(&format!("{marker}\0")).is_empty());
    let _ = child.wait();
    assert!(our_cgroups().is_empty(), "{:?}", our_cgroups());
}
