//! A daemon killed with SIGKILL while an approval is pending: after a restart the outcome is
//! journaled (expired → approval.timeout; still in time → re-asked and decided), nothing is
//! lost, and the journal verifies.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agp_gateway::{Client, ToolCallRequest};
use serde_json::Value;

use support_loop::{agp_ok, open_gate_session, policy_world, start_daemon, Daemon};

use super::support::daemon::{entries_so_far, mkfifo};
use super::support::looping as support_loop;

/// `agp daemon` with the test policy, approvals answered from `approver` within `timeout_secs`.
fn start(home: &Path, policy: &Path, approver: &Path, timeout_secs: u64) -> Daemon {
    let timeout = timeout_secs.to_string();
    start_daemon(
        home,
        [
            OsStr::new("--approval-timeout"),
            OsStr::new(&timeout),
            OsStr::new("--policy"),
            policy.as_os_str(),
            OsStr::new("--approver-script"),
            approver.as_os_str(),
        ],
    )
}

fn wait_for(home: &Path, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = entries_so_far(home).into_iter().find(|e| what(e)) {
            return e;
        }
        assert!(Instant::now() < deadline, "journal never got the entry");
        std::thread::sleep(Duration::from_millis(25));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    home: PathBuf,
    repo: PathBuf,
    policy: PathBuf,
    fifo: PathBuf,
}

fn setup() -> Setup {
    let w = policy_world(
        "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"push-asks\"\neffect = \"require\"\nmatch = [\"Bash(git push:*)\"]\n",
    );
    // A FIFO nobody writes to: the approver waits forever, so the approval stays pending.
    let fifo = w.dir.path().join("approver.fifo");
    mkfifo(&fifo);
    Setup {
        home: w.home,
        repo: w.repo,
        policy: w.policy,
        fifo,
        _dir: w.dir,
    }
}

/// Opens a gate session and sends a call that needs approval from a thread; returns when the
/// journal holds `approval.requested`.
fn pending_call(s: &Setup) -> std::thread::JoinHandle<bool> {
    let socket = s.home.join("run/gateway.sock");
    let token = open_gate_session(&s.home, &s.repo);
    let repo = s.repo.clone();
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(&socket, Duration::from_secs(60)).unwrap();
        c.hello(&token).unwrap();
        let reply = c.request(&ToolCallRequest {
            id: "push-1".into(),
            tool_use_id: None,
            tool: "Bash".into(),
            input: serde_json::json!({"command": "git push origin main"}),
            cwd: repo.display().to_string(),
        });
        // Allowed would be wrong: the daemon died before anyone decided.
        matches!(reply, Ok(v) if v.is_allow())
    });
    wait_for(&s.home, |e| e["kind"] == "approval.requested");
    waiter
}

fn sigkill(k: &mut Daemon) {
    k.0.kill().unwrap();
    k.0.wait().unwrap();
}

/// A daemon (approval timeout `approval_secs`) killed outright while a call waits for approval:
/// the waiting call is not allowed.
fn killed_with_a_pending_call(s: &Setup, approval_secs: u64) {
    let mut daemon = start(&s.home, &s.policy, &s.fifo, approval_secs);
    let waiter = pending_call(s);
    sigkill(&mut daemon);
    assert!(
        !waiter.join().unwrap(),
        "a dead daemon's call must not be allowed"
    );
}

#[test]
fn an_approval_that_expired_while_the_daemon_was_dead_is_journaled_as_timeout() {
    let s = setup();
    killed_with_a_pending_call(&s, 2);
    std::thread::sleep(Duration::from_millis(2500));

    let daemon = start(&s.home, &s.policy, &s.fifo, 2);
    let timeout = wait_for(&s.home, |e| e["kind"] == "approval.timeout");
    assert_eq!(timeout["body"]["call_id"], "push-1");
    assert_eq!(timeout["body"]["recovered"], true);
    drop(daemon);
    agp_ok(&s.home, None, &["verify"]);
}

#[test]
fn an_approval_still_in_time_is_reattached_and_decided_after_restart() {
    let s = setup();
    killed_with_a_pending_call(&s, 60);

    // The restarted daemon's approver answers: the re-attached request gets the decision.
    let answers = s.home.parent().unwrap().join("answers");
    std::fs::write(&answers, "deny too late, the agent already gave up\n").unwrap();
    let daemon = start(&s.home, &s.policy, &answers, 60);
    let denied = wait_for(&s.home, |e| e["kind"] == "approval.denied");
    assert_eq!(denied["body"]["call_id"], "push-1");
    assert_eq!(denied["body"]["by"]["via"], "terminal-script");
    drop(daemon);
    // Request, decision, approval request and outcome are all there, once.
    let kinds: Vec<String> = entries_so_far(&s.home)
        .iter()
        .filter(|e| e["body"]["call_id"] == "push-1")
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "tool_call.requested",
            "policy.decided",
            "approval.requested",
            "approval.denied"
        ]
    );
    agp_ok(&s.home, None, &["verify"]);
}
