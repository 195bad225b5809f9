//! The Slack channel's session controls inside the real daemon: the Stop button on the session
//! message (approvers only; anyone else refused and journaled), "Allow for this session"
//! (only where the rule has `remember`, then remembered by the daemon), and each vote of a
//! quorum journaled as it arrives; forged and replayed votes refused.

use std::path::Path;
use std::sync::Arc;

use agp_gateway::{Client, ClientError, ToolCallRequest, VerdictMessage};
use agp_slack::fake::{FakeSlack, PostedMessage};
use serde_json::{json, Value};

use super::daemon_loop::{
    daemon_dirs, daemon_with_slack, expect_ephemeral, session_params, slack_config, Recorder, WAIT,
};

/// The hook asks to run `command` as call `id` in the session of `token` and waits.
fn hook_asks(
    config: &agp_daemon::DaemonConfig,
    token: &str,
    repo: &Path,
    id: &str,
    command: &str,
) -> tokio::task::JoinHandle<Result<VerdictMessage, ClientError>> {
    let socket = config.socket_path();
    let request = ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: json!({ "command": command }),
        cwd: repo.display().to_string(),
    };
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&socket, std::time::Duration::from_secs(90)).unwrap();
        c.hello(&token).unwrap();
        c.request(&request)
    })
}

async fn verdict(
    h: tokio::task::JoinHandle<Result<VerdictMessage, ClientError>>,
) -> VerdictMessage {
    tokio::time::timeout(WAIT, h)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// A daemon serving with the Slack channel (its people added), a journal recorder, and one
/// session open.
struct Running {
    _dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    config: agp_daemon::DaemonConfig,
    slack: FakeSlack,
    journal: Arc<Recorder>,
    session: agp_daemon::SessionInfo,
}

impl Running {
    /// [`hook_asks`] in the open session.
    fn ask(
        &self,
        id: &str,
        command: &str,
    ) -> tokio::task::JoinHandle<Result<VerdictMessage, ClientError>> {
        hook_asks(&self.config, &self.session.token, &self.repo, id, command)
    }
}

async fn running() -> Running {
    let (dir, repo, config) = daemon_dirs();
    let slack = FakeSlack::start().await.unwrap();
    people(&slack);
    let journal = Arc::new(Recorder::default());
    let daemon = daemon_with_slack(&config, slack_config(&slack), journal.clone()).await;
    tokio::spawn(daemon.clone().serve(std::future::pending()));
    let session = daemon
        .open_session(session_params(repo.clone()))
        .await
        .unwrap();
    Running {
        _dir: dir,
        repo,
        config,
        slack,
        journal,
        session,
    }
}

fn people(slack: &FakeSlack) {
    for (id, name) in [
        ("UALICE", "Alice"),
        ("UBOB", "Bob"),
        ("UCAROL", "Carol"),
        ("UMALLORY", "Mallory"),
    ] {
        slack.add_user(id, name);
    }
}

fn button_value(msg: &PostedMessage, action: &str) -> Option<String> {
    msg.blocks
        .as_array()?
        .iter()
        .filter_map(|b| b["elements"].as_array())
        .flatten()
        .find(|e| e["action_id"] == action)
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}

/// Waits for an approval message not among `seen` (decided ones change their text, so the
/// fake's n-th approval shifts).
async fn new_approval(slack: &FakeSlack, seen: &[&PostedMessage]) -> PostedMessage {
    slack
        .wait_message(WAIT, |m| {
            m.thread_ts.is_some()
                && m.text.contains("approval needed")
                && !seen.iter().any(|s| s.ts == m.ts)
        })
        .await
        .expect("no new approval was posted")
}

/// Waits until the journal holds `n` entries of `kind`.
async fn wait_kind(journal: &Recorder, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let got = journal.of(kind);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} {kind}: {:?}", journal.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_button_stops_the_session_for_an_approver_only() {
    let r = running().await;
    let (slack, journal) = (&r.slack, &r.journal);
    let asked = r.ask("call-1", "mkdir build");
    let msg = slack.wait_approval(0, WAIT).await.expect("no approval");
    let root = slack.roots().remove(0);
    assert_eq!(
        button_value(&root, "agp_stop").as_deref(),
        Some(r.session.id.as_str())
    );

    // Mallory is no approver: refused, journaled, nothing stopped.
    slack.click("UMALLORY", &root.ts, "agp_stop").unwrap();
    expect_ephemeral(slack, "UMALLORY", "not an approver").await;
    let rejected = journal.of("approval.rejected");
    assert_eq!(rejected.len(), 1, "{:?}", journal.events());
    assert_eq!(rejected[0]["action"], "agp_stop");
    assert_eq!(rejected[0]["user"]["id"], "UMALLORY");
    assert_eq!(rejected[0]["reason"], "not_an_approver");
    assert!(!asked.is_finished());
    assert!(journal.of("session.stopped").is_empty());
    // A Stop button naming another session, clicked on this root: refused as a mismatch.
    slack
        .click_value("UALICE", &root.ts, "agp_stop", "s-someoneelse")
        .unwrap();
    wait_kind(journal, "approval.rejected", 2).await;
    assert!(journal.of("session.stopped").is_empty());

    // Alice is: the session stops, the waiting call is denied, the approval withdrawn.
    slack.click("UALICE", &root.ts, "agp_stop").unwrap();
    expect_ephemeral(slack, "UALICE", "stopped").await;
    let v = verdict(asked).await;
    assert_eq!(v.decision, agp_contracts::Decision::Deny, "{v:?}");
    let stopped = journal.of("session.stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["by"]["id"], "UALICE");
    assert_eq!(stopped[0]["by"]["via"], "slack");
    assert_eq!(stopped[0]["cancelled_approvals"], json!(["call-1"]));
    let denied = journal.of("approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["cancelled"], true);
    assert_eq!(journal.of("session.ended")[0]["status"], "stopped");
    let withdrawn = slack
        .wait_message(WAIT, |m| {
            m.ts == msg.ts
                && !m.has_buttons()
                && m.all_text().contains("cancelled: session stopped")
        })
        .await;
    assert!(withdrawn.is_some(), "{:?}", slack.message(&msg.ts));
    // A click on the withdrawn approval decides nothing.
    slack
        .click_value(
            "UBOB",
            &msg.ts,
            "agp_allow",
            &button_value(&msg, "agp_allow").unwrap(),
        )
        .unwrap();
    wait_kind(journal, "approval.rejected", 3).await;
    assert!(journal.of("approval.granted").is_empty());

    // Idempotent: pressing Stop again says so and changes nothing.
    slack.click("UBOB", &root.ts, "agp_stop").unwrap();
    expect_ephemeral(slack, "UBOB", "already ended").await;
    assert_eq!(journal.of("session.stopped").len(), 1);
    assert_eq!(journal.of("session.ended").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_for_this_session_and_each_vote_are_journaled_and_forged_votes_refused() {
    let r = running().await;
    let (slack, journal) = (&r.slack, &r.journal);

    // A rule with `remember`: the button is offered; Alice allows for the session.
    let asked = r.ask("t1", "touch notes.txt");
    let first = slack.wait_approval(0, WAIT).await.expect("no approval");
    assert!(
        first.all_text().contains("at most 30m"),
        "{}",
        first.all_text()
    );
    slack
        .click("UALICE", &first.ts, "agp_allow_session")
        .unwrap();
    let v = verdict(asked).await;
    assert!(v.is_allow(), "{v:?}");
    let votes = journal.of("approval.vote");
    assert_eq!(votes.len(), 1);
    assert_eq!(votes[0]["vote"], "allow_for_session");
    assert_eq!(votes[0]["by"]["id"], "UALICE");
    let remembered = journal.of("approval.remembered");
    assert_eq!(remembered.len(), 1, "{:?}", journal.events());
    assert_eq!(remembered[0]["rule_id"], "touch-remembered");
    wait_kind(journal, "approval.granted", 1).await;
    // The same call again: not asked, granted as remembered.
    let again = verdict(r.ask("t2", "touch notes.txt")).await;
    assert!(again.is_allow());
    assert_eq!(again.approved_by.as_deref(), Some("remembered:UALICE"));
    // Another file is another call: asked.
    let other = r.ask("t3", "touch other.txt");
    let third = new_approval(slack, &[&first]).await;
    slack.click("UBOB", &third.ts, "agp_deny").unwrap();
    assert!(!verdict(other).await.is_allow());

    // A quorum of two on a rule without `remember`: no session button, and a forged one
    // (the Allow button's value under the session action) is refused.
    let asked = r.ask("m1", "mkdir build");
    let quorum = new_approval(slack, &[&first, &third]).await;
    assert!(button_value(&quorum, "agp_allow_session").is_none());
    let allow_value = button_value(&quorum, "agp_allow").unwrap();
    slack
        .click_value("UALICE", &quorum.ts, "agp_allow_session", &allow_value)
        .unwrap();
    expect_ephemeral(slack, "UALICE", "cannot be allowed for the whole session").await;
    assert_eq!(
        journal.of("approval.rejected").last().unwrap()["reason"],
        "not_offered"
    );
    // Each vote is journaled as it arrives, before the outcome.
    slack.click("UALICE", &quorum.ts, "agp_allow").unwrap();
    let votes = wait_kind(journal, "approval.vote", 3).await;
    let alice = votes.last().unwrap();
    assert_eq!(
        (alice["have"].as_u64(), alice["need"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        journal.of("approval.granted").len(),
        2,
        "decided on one vote of two"
    );
    // A forged vote (a nonce agp never issued) and Alice again count for nothing.
    let forged = allow_value.replace(&allow_value[10..18], "deadbeef");
    slack
        .click_value("UBOB", &quorum.ts, "agp_allow", &forged)
        .unwrap();
    slack.click("UALICE", &quorum.ts, "agp_allow").unwrap();
    expect_ephemeral(slack, "UALICE", "already counted").await;
    assert!(!asked.is_finished());
    slack.click("UBOB", &quorum.ts, "agp_allow").unwrap();
    assert!(verdict(asked).await.is_allow());
    let votes = journal.of("approval.vote");
    assert_eq!(votes.len(), 4, "{votes:?}");
    assert_eq!(votes[3]["by"]["id"], "UBOB");
    assert_eq!(votes[3]["have"], 2);
    // Replayed after the decision: refused, no vote.
    slack
        .click_value("UBOB", &quorum.ts, "agp_allow", &allow_value)
        .unwrap();
    for _ in 0..400 {
        if journal
            .of("approval.rejected")
            .iter()
            .any(|r| r["reason"] == "replayed")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let reasons: Vec<Value> = journal
        .of("approval.rejected")
        .iter()
        .map(|r| r["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("replayed")), "{reasons:?}");
    assert!(reasons.contains(&json!("unknown_nonce")), "{reasons:?}");
    assert_eq!(journal.of("approval.vote").len(), 4);
    // Nothing granted for the session where the rule does not remember.
    assert_eq!(journal.of("approval.remembered").len(), 1);
}
