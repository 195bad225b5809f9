//! The README's interactive path with the real binary: `agp run` on the demo, with a real
//! pseudo-terminal as its controlling terminal, and the test pressing keys like the human at it.
//! Real socket, real bubblewrap, real SQLite, real signed journal.

use std::process::{Command, Stdio};

use serde_json::Value;
use support_loop::{demo_world, journal, workspace, AGP};

use super::support::looping as support_loop;
use super::support::pty::{open_pty, Screen, PATIENCE};

#[test]
fn a_person_at_the_terminal_approves_and_denies_the_demo_calls() {
    let w = demo_world();

    let (master, slave) = open_pty();

    // `setsid --ctty` makes the pty (its stdin) the controlling terminal of a new session, so
    // agp's /dev/tty is this pty, exactly as in a terminal window.
    let mut child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(workspace().join("examples/demo.yaml"))
        .arg("--repo")
        .arg(&w.repo)
        .env("HOME", &w.user_home)
        .env("NO_COLOR", "1")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();

    let screen = Screen::read(master, PATIENCE);

    // First `require`: `rm notes.txt` (policy default). Look at the details, then allow.
    let shown = screen.wait_for("decide:", 1);
    assert!(shown.contains("rm notes.txt"), "{shown}");
    screen.press(b"?");
    screen.wait_for("input sha256   ", 1);
    screen.press(b"y");
    // Second `require`: `git push origin main` (the push rule). Deny.
    let shown = screen.wait_for("decide:", 3);
    assert!(shown.contains("git push origin main"), "{shown}");
    screen.press(b"n");

    let status = child.wait().unwrap();
    let shown = screen.wait_for("journal verified", 1);
    assert!(status.success(), "agp run failed ({status:?}):\n{shown}");
    assert!(shown.contains("allowed by tty:"), "{shown}");
    assert!(shown.contains("denied by tty:"), "{shown}");
    assert!(
        shown.contains("13 calls, 8 allowed (1 after approval), 5 denied"),
        "{shown}"
    );
    assert!(!w.repo.join("notes.txt").exists(), "the approved rm ran");

    // The journal names the person at the terminal for both decisions.
    let entries = journal(&w.home);
    for kind in ["approval.granted", "approval.denied"] {
        let e = entries
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"));
        let by = if kind == "approval.granted" {
            &e["body"]["by"][0]
        } else {
            &e["body"]["by"]
        };
        assert_eq!(by["via"], "terminal", "{e}");
        assert!(by["id"].as_str().unwrap().starts_with("tty:"), "{e}");
    }
}

/// `--auto-approve` is loud and is the approver of record: the banner, one line per grant, and
/// the journal naming `--auto-approve`. The demo's call meant to be denied by a person is then
/// approved too, and the self-check says so (exit 1).
#[test]
fn auto_approve_is_loud_and_journaled_as_the_approver() {
    let w = demo_world();
    let out = Command::new("setsid")
        .arg("--wait")
        .arg(AGP)
        .arg("--home")
        .arg(&w.home)
        .args([
            "run",
            "--intendant",
            "scripted",
            "--auto-approve",
            "--script",
        ])
        .arg(workspace().join("examples/demo.yaml"))
        .arg("--repo")
        .arg(&w.repo)
        .env("HOME", &w.user_home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("--auto-approve is ON"), "{stderr}");
    assert_eq!(stderr.matches("AUTO-APPROVED").count(), 2, "{stderr}");
    assert_eq!(
        stdout.matches("approved by auto-approve").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("✗ expected deny"), "{stdout}");
    assert!(stdout.contains("journal verified"), "{stdout}");

    let entries = journal(&w.home);
    let granted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "approval.granted")
        .collect();
    assert_eq!(granted.len(), 2);
    for e in granted {
        assert_eq!(
            e["body"]["by"],
            serde_json::json!([{"id": "auto-approve", "name": "--auto-approve", "via": "auto"}]),
            "{e}"
        );
    }
}
