//! The kill switch on the real Claude Code under `agp run`: `agp sessions stop` while the agent
//! waits on an approval ends the agent and its sandbox (every process in the repository gone),
//! cancels the approval, ends the session as stopped; the call never runs.

use super::support::agents as agents_support;
use super::support::wait_exit;

use std::process::{Command, Stdio};
use std::time::Duration;

use agents_support::*;
use agp_testkit::{FakeModel, Turn};

#[test]
fn claude_code_under_agp_run_is_stopped_by_agp_sessions_stop() {
    let Some(claude) = claude() else { return };
    let world = World::new();
    let model = FakeModel::anthropic(vec![Turn::Shell("mkdir needs-approval".into())]).unwrap();
    // The approver script waits longer than the test: the approval stays pending.
    let run = claude_run_waiting_on_approval(&world, &claude, &model, "120", Stdio::piped);
    let j = world.journal();
    let session = of_kind(&j, "approval.requested")[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_repo = || processes_in(&world.repo);
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

    let out = wait_exit(
        run,
        Duration::from_secs(60),
        "agp run did not end after the stop",
    );
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
