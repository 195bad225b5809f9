//! What an allowed session leaves in the repository cannot reach the host: with real
//! bubblewrap and real git, a scripted session plants a fifo, a symlink to the user's home, a
//! nested repository with a hook and a setuid copy of a shell. When the session ends the
//! integrity report is journaled and printed, the planted items are in the quarantine, and a
//! host `git commit` where the nested repository was no longer runs its hook. A fifo that was
//! there before the session is reported as pre-existing and kept.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use super::support::looping::{self as support_loop, git};

#[test]
fn planted_items_are_reported_quarantined_and_host_git_runs_no_planted_hook() {
    let w = support_loop::git_world();
    assert!(Command::new("mkfifo")
        .arg(w.repo.join("old-pipe"))
        .status()
        .unwrap()
        .success());
    let marker = w.dir.path().join("hook-ran");

    let policy = support_loop::write_allow_everything(w.dir.path());
    let calls = [
        "mkfifo pipe".to_owned(),
        format!("ln -s {}/.bashrc home-link", w.user_home.display()),
        format!(
            "git init -q nested && printf '#!/bin/sh\\ntouch {}\\n' > nested/.git/hooks/pre-commit \
             && chmod +x nested/.git/hooks/pre-commit",
            marker.display()
        ),
        "cp /bin/sh suid-sh && chmod 4755 suid-sh".to_owned(),
    ];
    let script = w.dir.path().join("plant.yaml");
    let yaml = support_loop::bash_calls_yaml(&calls);
    std::fs::write(&script, yaml).unwrap();

    let out =
        support_loop::run_scripted_auto_approve(&w.home, &w.user_home, &script, &w.repo, &policy);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("✓ journal verified"), "{stdout}");
    // The planted items really were made inside the sandbox.
    let results: Vec<Value> = support_loop::journal(&w.home)
        .into_iter()
        .filter(|e| e["kind"] == "tool_call.result")
        .collect();
    for r in &results[..3] {
        assert_eq!(r["body"]["ok"], true, "{r}");
    }

    let entries = support_loop::journal(&w.home);
    let integrity: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "session.integrity")
        .collect();
    assert_eq!(integrity.len(), 1, "{stdout}");
    let body = &integrity[0]["body"];
    assert_eq!(body["report"]["complete"], true, "{body}");
    let findings = body["report"]["findings"].as_array().unwrap();
    let finding = |path: &str| -> &Value {
        findings
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("no finding for {path}: {body:#}"))
    };
    let quarantine = w
        .home
        .join("quarantine")
        .join(body["session"].as_str().unwrap());
    for (path, kind) in [
        ("pipe", "fifo"),
        ("home-link", "escaping_symlink"),
        ("nested/.git", "nested_git_metadata"),
    ] {
        let f = finding(path);
        assert_eq!(
            (
                f["kind"].as_str(),
                f["origin"].as_str(),
                f["action"].as_str()
            ),
            (Some(kind), Some("new"), Some("quarantined")),
            "{f}"
        );
        assert!(w.repo.join(path).symlink_metadata().is_err(), "{path} kept");
        assert!(quarantine.join(path).symlink_metadata().is_ok(), "{path}");
        assert!(
            stdout.contains(&format!("✗ repository: {path}")),
            "{stdout}"
        );
    }
    assert!(finding("nested/.git")["detail"]
        .as_str()
        .unwrap()
        .contains("hooks/pre-commit"));
    // Moved, not followed: the quarantine holds the link itself.
    assert_eq!(
        std::fs::read_link(quarantine.join("home-link")).unwrap(),
        w.user_home.join(".bashrc")
    );
    let old = finding("old-pipe");
    assert_eq!(
        (old["origin"].as_str(), old["action"].as_str()),
        (Some("pre_existing"), Some("kept"))
    );
    assert!(w.repo.join("old-pipe").symlink_metadata().is_ok());
    if let Some(f) = findings.iter().find(|f| f["path"] == "suid-sh") {
        assert_eq!(
            (f["kind"].as_str(), f["action"].as_str()),
            (Some("setuid"), Some("bits_cleared"))
        );
    }
    // Whether or not the sandbox let the setuid bit be set, none is left on the host.
    if let Ok(meta) = std::fs::metadata(w.repo.join("suid-sh")) {
        assert_eq!(meta.permissions().mode() & 0o6000, 0, "{body:#}");
    }

    // The user's next commit where the nested repository was runs no planted hook.
    std::fs::write(w.repo.join("nested/file.txt"), "x").unwrap();
    assert!(git(&w.repo.join("nested"), &["add", "file.txt"])
        .status
        .success());
    let commit = git(
        &w.repo.join("nested"),
        &["commit", "-q", "-m", "after the session"],
    );
    assert!(
        commit.status.success(),
        "{}",
        String::from_utf8_lossy(&commit.stderr)
    );
    assert!(!marker.exists(), "the planted hook ran on the host");
}
