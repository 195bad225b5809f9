//! The preflight proves isolation from inside, and refuses a sandbox that leaks.

use super::support as common;

use agp_contracts::sandbox::{
    BindMount, PreflightCheck, PreflightReport, SandboxError, SandboxProvider, SandboxSpec,
};
use agp_sandbox::{BubblewrapProvider, NoSandbox};
use common::*;

const EXPECTED: &[&str] = &[
    "probes_completed",
    "host_loopback_unreachable",
    "public_network_unreachable",
    "write_outside_repo_blocked",
    "home_canary_unreadable",
    "repo_unix_socket_masked",
    "namespaces_and_capabilities",
];

/// The check `name` of `report`, which must be there and have failed.
fn failed_check<'a>(report: &'a PreflightReport, name: &str) -> &'a PreflightCheck {
    let check = report.checks.iter().find(|c| c.name == name);
    let check = check.unwrap_or_else(|| panic!("no check {name}: {report:?}"));
    assert!(!check.passed, "{check:?}");
    check
}

#[test]
fn preflight_passes_on_a_proper_sandbox_and_names_every_check() {
    let fx = Fixture::new();
    let report = fx
        .provider
        .preflight(&fx.session)
        .expect("preflight passes");
    assert!(report.passed);
    assert_eq!(report.provider, "bubblewrap");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, EXPECTED);
    assert!(report
        .checks
        .iter()
        .all(|c| c.passed && !c.detail.is_empty()));
    let public = &report.checks[2].detail;
    assert!(
        public.contains("Network is unreachable") && public.contains("[lo]"),
        "{public}"
    );
    // Serializable for the journal.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"].as_array().unwrap().len(), EXPECTED.len());
    // The canary it planted (named in the detail) is cleaned up.
    let detail = &report.checks[4].detail;
    let start = detail.find("/").unwrap();
    let path: String = detail[start..].chars().take_while(|c| *c != ':').collect();
    assert!(path.contains(".agp-preflight-canary-"), "{detail}");
    assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
    // So is the bait socket it listened on inside the repository.
    let socket = &report.checks[5].detail;
    assert!(socket.contains("seen from inside as: masked"), "{socket}");
    let left: Vec<_> = std::fs::read_dir(&fx.repo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn exposing_the_real_home_fails_the_preflight() {
    let home = real_home();
    let fx = Fixture::with_spec(|spec| spec.ro_binds.push(home.clone()));
    let report = fx.provider.run_preflight(&fx.session).unwrap();
    assert!(!report.passed);
    failed_check(&report, "home_canary_unreadable");
    let err = fx.provider.preflight(&fx.session).unwrap_err();
    match err {
        SandboxError::PreflightFailed(msg) => {
            assert!(msg.contains("home_canary_unreadable"), "{msg}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_writable_path_outside_the_repo_fails_the_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let parent = std::fs::canonicalize(dir.path()).unwrap();
    let provider = BubblewrapProvider::new();
    let mut spec = SandboxSpec::new("s", &repo);
    // The repo's parent bound read-write: writes outside the repo now reach the host.
    spec.binds.push(BindMount {
        source: parent.clone(),
        dest: parent.clone(),
        writable: true,
    });
    let session = provider.spawn(&spec).unwrap();
    let report = provider.run_preflight(&session).unwrap();
    let writes = failed_check(&report, "write_outside_repo_blocked");
    assert!(
        writes.detail.contains("file appeared on the host"),
        "{writes:?}"
    );
    assert!(!report.passed);
    // The leaked marker was removed again.
    let leftovers: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".agp-preflight-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn missing_bubblewrap_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let provider = BubblewrapProvider::with_bwrap_path("/nonexistent/agp-test/bwrap");
    let err = provider
        .spawn(&SandboxSpec::new("s", dir.path()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SandboxError::Missing(_)), "{msg}");
    for hint in [
        "apt-get install bubblewrap",
        "dnf install bubblewrap",
        "pacman -S bubblewrap",
        "/nonexistent/agp-test/bwrap",
        "--sandbox none",
    ] {
        assert!(msg.contains(hint), "{hint} missing from: {msg}");
    }
    // Not executable is as good as missing.
    let not_exec = dir.path().join("bwrap");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let err = BubblewrapProvider::with_bwrap_path(&not_exec)
        .spawn(&SandboxSpec::new("s", dir.path()))
        .unwrap_err();
    assert!(matches!(err, SandboxError::Missing(_)), "{err}");
}

#[test]
fn repos_that_would_expose_the_host_are_refused() {
    let provider = BubblewrapProvider::new();
    for repo in ["/", "/tmp", "/home", "/etc"] {
        let err = provider.spawn(&SandboxSpec::new("s", repo)).unwrap_err();
        assert!(matches!(err, SandboxError::Refused(_)), "{repo}: {err}");
    }
    let err = provider
        .spawn(&SandboxSpec::new("s", real_home()))
        .unwrap_err();
    assert!(matches!(err, SandboxError::Refused(_)), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let agp_home = dir.path().join(".agp");
    std::fs::create_dir(&agp_home).unwrap();
    let err = BubblewrapProvider::new()
        .protect(&agp_home)
        .spawn(&SandboxSpec::new("s", dir.path()))
        .unwrap_err();
    assert!(err.to_string().contains(".agp"), "{err}");
}

#[test]
fn no_sandbox_is_honest_about_isolating_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let provider = NoSandbox::new();
    let iso = provider.isolation();
    assert_eq!(iso.provider, "none");
    assert!(!iso.network_isolated && !iso.filesystem_isolated && !iso.pid_isolated);
    assert!(iso
        .caveats
        .iter()
        .any(|c| c.contains("directly on the host")));
    let session = provider.spawn(&SandboxSpec::new("s", dir.path())).unwrap();
    let report = provider.preflight(&session).unwrap();
    assert_eq!(report.provider, "none");
    assert!(report.checks[0].detail.contains("nothing is isolated"));
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    let out = provider
        .exec(&session, &bash_in(&cwd, "echo hi > f; cat f; echo $HOME"))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n/home/agent\n");
    assert!(dir.path().join("f").exists());
    let bwrap = BubblewrapProvider::new().isolation();
    assert!(bwrap.network_isolated && bwrap.filesystem_isolated && bwrap.pid_isolated);
}
