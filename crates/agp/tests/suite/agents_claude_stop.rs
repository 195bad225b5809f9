//! The kill switch on the real Claude Code under `agp run`: `agp sessions stop` while the agent
//! waits on an approval ends the agent and its sandbox (every process in the repository gone),
//! cancels the approval, ends the session as stopped; the call never runs.

use super::support::agents as agents_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agents_support::*;
use agp_testkit::{FakeModel, Turn};

#[test]
fn claude_code_under_agp_run_is_stopped_by_agp_sessions_stop() {
    let Some(claude) = claude() else { return };
    let world = World::new();
    let model = FakeModel::anthropic(vec![Turn::Shell("mkdir needs-approval".into())]).unwrap();
    // The approver script waits longer than the test: the approval stays pending.
    let approvals = world.file("approvals.txt", "timeout\n");
    let run = world
        .run_command("claude-code", "make a directory")
        .arg("--approver-script")
        .arg(&approvals)
        .args(["--approval-timeout", "120"])
        .env("AGP_CLAUDE_BIN", &claude)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_approval_request(&world.home);
    let j = world.journal();
    let session = of_kind(&j, "approval.requested")[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let repo = std::fs::canonicalize(&world.repo).unwrap();
    let in_repo = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(std::result::Result::ok)
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|e| std::fs::read_link(e.path().join("cwd")).ok().as_deref() == Some(&repo))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        !in_repo().is_empty(),
        "no sandboxed agent is waiting: the check would prove nothing"
    );

    let stop = Command::new(AGP)
        .arg("--home")
        .arg(&world.home)
        .args(["sessions", "stop", &session, "--reason", "test stop"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");

    let out = wait_with_bound(run);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("was stopped"),
        "{}",
        text(&out.stderr)
    );
    wait_until(10, "sandbox processes outlived the stop", || {
        in_repo().is_empty()
    });
    assert!(!world.repo.join("needs-approval").exists(), "the call ran");

    let j = world.journal();
    let stopped = of_kind(&j, "session.stopped");
    assert_eq!(stopped.len(), 1, "{j:#?}");
    assert_eq!(stopped[0]["body"]["reason"], "test stop");
    assert_eq!(stopped[0]["body"]["by"]["via"], "cli");
    assert!(
        stopped[0]["body"]["ended"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "agent"),
        "{}",
        stopped[0]
    );
    let denied = of_kind(&j, "approval.denied");
    assert_eq!(denied.len(), 1, "{j:#?}");
    assert_eq!(denied[0]["body"]["cancelled"], true);
    let ended = of_kind(&j, "session.ended");
    assert_eq!(ended[0]["body"]["status"], "stopped");
    world.assert_verified();
}

fn wait_with_bound(mut child: std::process::Child) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("agp run did not end after the stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
