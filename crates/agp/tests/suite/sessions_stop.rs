//! The kill switch with the real binary: `agp sessions stop` on a scripted `agp run` waiting
//! on an approval and on one in the middle of a long command (real bubblewrap). The session
//! ends as stopped, its approval is cancelled, its command killed, all journaled with the OS
//! user who stopped it; stopping it again says so (exit 1) and changes nothing.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::daemon::mkfifo;
use super::support::looping::{
    bash_calls_yaml, demo_world, git_world, journal, write_allow_everything, AGP,
};
use super::support::wait_exit;

/// Longest any step may take before the test gives up (a hang, not a measurement).
const WAIT: Duration = Duration::from_secs(120);

fn agp(home: &Path, args: &[&str]) -> Output {
    Command::new(AGP)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The journal's whole lines so far (the run may be mid-append).
fn whole_lines(home: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(home.join("journal/entries.jsonl")).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for the first entry `pick` finds; returns its session.
fn wait_for(home: &Path, what: &str, pick: impl Fn(&Value) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Some(e) = whole_lines(home).into_iter().find(|e| pick(e)) {
            return e["session"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < WAIT, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn os_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn of_session<'a>(entries: &'a [Value], session: &str, kind: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["session"] == session && e["kind"] == kind)
        .collect()
}

/// Stopping it again: exit 1, "already ended", and the journal is not touched.
fn assert_second_stop_changes_nothing(home: &Path, session: &str) {
    let before = journal(home).len();
    let again = agp(home, &["sessions", "stop", session]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    let said = String::from_utf8_lossy(&again.stdout).into_owned()
        + &String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already ended"), "{said}");
    assert_eq!(journal(home).len(), before);
    let verify = agp(home, &["verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn stopping_a_scripted_run_waiting_on_an_approval() {
    let w = demo_world();
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    // Nobody writes to the FIFO: the first approval stays pending.
    let run = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["run", "--approver-script"])
        .arg(&fifo)
        .env("HOME", &w.user_home)
        .env("TMPDIR", w.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = wait_for(&w.home, "no approval was requested", |e| {
        e["kind"] == "approval.requested"
    });

    let stop = agp(
        &w.home,
        &[
            "sessions",
            "stop",
            &session,
            "--reason",
            "runaway loop",
            "--json",
        ],
    );
    assert!(stop.status.success(), "{stop:?}");
    let reply: Value = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(reply["stopped"], true);
    assert_eq!(reply["cancelled_approvals"], serde_json::json!(["call-8"]));

    let out = wait_exit(run, WAIT, "the stopped run did not end");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let j = journal(&w.home);
    let stopped = of_session(&j, &session, "session.stopped");
    assert_eq!(stopped.len(), 1, "{j:#?}");
    let body = &stopped[0]["body"];
    assert_eq!(body["by"]["name"], os_user());
    assert_eq!(body["by"]["via"], "cli");
    assert_eq!(body["reason"], "runaway loop");
    assert_eq!(body["cancelled_approvals"], serde_json::json!(["call-8"]));
    let denied = of_session(&j, &session, "approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["body"]["cancelled"], true);
    let ended = of_session(&j, &session, "session.ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["body"]["status"], "stopped");
    assert!(of_session(&j, &session, "approval.granted").is_empty());
    // The stop, then the cancelled approval, then the end.
    let at = |kind: &str| j.iter().position(|e| e["kind"] == kind).unwrap();
    assert!(at("session.stopped") < at("approval.denied"));
    assert!(at("approval.denied") < at("session.ended"));

    // The run's daemon is gone: the stop is answered from state.db.
    assert_second_stop_changes_nothing(&w.home, &session);
}

#[test]
fn stopping_a_scripted_run_in_the_middle_of_a_command_kills_the_command() {
    let w = git_world();
    let policy = write_allow_everything(w.dir.path());
    let script = w.dir.path().join("long.yaml");
    // The marker shows the command is running; nothing after the sleep may happen.
    std::fs::write(
        &script,
        bash_calls_yaml(&[
            "touch started && sleep 300 && touch finished",
            "touch next-call",
        ]),
    )
    .unwrap();
    let run = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(&script)
        .arg("--repo")
        .arg(&w.repo)
        .arg("--policy")
        .arg(&policy)
        .arg("--auto-approve")
        .env("HOME", &w.user_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !w.repo.join("started").exists() {
        assert!(start.elapsed() < WAIT, "the command never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let session = wait_for(&w.home, "no session started", |e| {
        e["kind"] == "session.started"
    });

    let stop = agp(&w.home, &["sessions", "stop", &session]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains("stopped by"),
        "{stop:?}"
    );
    let out = wait_exit(run, WAIT, "the stopped run did not end");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        !w.repo.join("finished").exists(),
        "the command ran to its end"
    );
    assert!(!w.repo.join("next-call").exists(), "a later call ran");

    let j = journal(&w.home);
    let stopped = of_session(&j, &session, "session.stopped");
    assert_eq!(stopped.len(), 1, "{j:#?}");
    let ended_what = &stopped[0]["body"]["ended"];
    assert!(
        ended_what
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "sandboxed command"),
        "{ended_what}"
    );
    assert!(stopped[0]["body"].get("reason").is_none());
    let ended = of_session(&j, &session, "session.ended");
    assert_eq!(ended[0]["body"]["status"], "stopped");
    // The killed command's result is on record as failed.
    for r in of_session(&j, &session, "tool_call.result") {
        assert_eq!(r["body"]["ok"], false, "{r}");
    }
    assert_second_stop_changes_nothing(&w.home, &session);
}

#[test]
fn stopping_an_unknown_session_is_refused() {
    let w = git_world();
    let out = agp(&w.home, &["sessions", "stop", "s-doesnotexist"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no session s-doesnotexist"),
        "{out:?}"
    );
}
