//! Per-session pids cgroup lifecycle. Alone in its binary: it lists this process's session
//! cgroups, which other tests running in parallel would also create.

mod common;

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

#[test]
fn teardown_kills_leftovers_and_removes_the_session_cgroup() {
    let fx = Fixture::with_spec(|spec| spec.limits.max_processes = Some(32));
    if !fx.session.process_limit_by_cgroup() {
        // SAFETY: geteuid has no preconditions.
        assert_ne!(
            unsafe { libc::geteuid() },
            0,
            "root without a pids cgroup on this host"
        );
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
