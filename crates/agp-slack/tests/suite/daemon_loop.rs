//! The Slack channel inside the real daemon: a tool call from the gateway client (as a hook
//! sends it) hits a `require` rule of the real policy engine, the approval is posted to the
//! fake Slack in the session's thread, two people the policy names approve it, and the
//! agent gets `allow`; the journal names both Slack approvers. The state database is shared
//! between the daemon's tables and the channel's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agp_daemon::{Daemon, DaemonConfig, Parts, Redactor, SessionParams};
use agp_gateway::{Client, ClientError, SessionMode, ToolCallRequest, VerdictMessage};
use agp_slack::fake::{self, FakeSlack};
use agp_slack::{Secret, SlackChannel, SlackConfig, SqliteStore};
use serde_json::{json, Value};

const POLICY: &str = r#"
version = 1
default = "deny"

[[rule]]
id = "write-project"
effect = "allow"
match = ["Edit(/**)"]
reason = "writing inside the project"

[[rule]]
id = "needs-two-humans"
effect = "require"
match = ["Bash(mkdir *)"]
approvers = ["UALICE", "UBOB"]
quorum = 2
reason = "creating directories needs two humans"

[[rule]]
id = "touch-remembered"
effect = "require"
match = ["Bash(touch *)"]
approvers = ["UALICE", "UBOB"]
remember = "30m"
reason = "touching files needs a human, who may allow it for the session"
"#;

pub(super) const WAIT: Duration = Duration::from_secs(20);

/// Keeps what the daemon journals; refuses non-canonical bodies as the real journal does.
pub(super) use agp_testkit::MemJournal as Recorder;

/// agp's redaction, as the daemon binary wires it.
struct PolicyRedactor;

impl Redactor for PolicyRedactor {
    fn redact_value(&self, value: &Value) -> Value {
        agp_policy::redact::redact_value(value)
    }
    fn redact_text(&self, text: &str) -> String {
        agp_policy::redact::redact_str(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_require_verdict_is_approved_in_slack_by_the_people_the_policy_names() {
    let (_dir, repo, config) = daemon_dirs();

    let slack = FakeSlack::start().await.unwrap();
    for (id, name) in [("UALICE", "Alice"), ("UBOB", "Bob"), ("UCAROL", "Carol")] {
        slack.add_user(id, name);
    }
    let journal = Arc::new(Recorder::default());
    let daemon = daemon_with_slack(&config, slack_config(&slack), journal.clone()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(daemon.clone().serve(async move {
        let _ = stopped.await;
    }));
    let session = daemon
        .open_session(session_params(repo.clone()))
        .await
        .unwrap();

    // The agent's hook asks, and waits (blocking client, as the hook binary uses).
    let asked = hook_asks_mkdir(&config, session.token.clone(), &repo, Some("toolu_1"));

    let Some(msg) = slack.wait_approval(0, WAIT).await else {
        panic!(
            "no approval in Slack; journal: {:?}; slack: {:?}",
            journal.events(),
            slack.messages()
        );
    };
    let text = msg.all_text();
    assert!(text.contains("mkdir build"), "{text}");
    let root = slack.roots().remove(0);
    assert_eq!(msg.thread_ts.as_deref(), Some(root.ts.as_str()));
    assert!(
        root.all_text().contains("claude-code") && root.all_text().contains("make a build dir")
    );
    assert!(
        text.contains("needs-two-humans") && text.contains("two humans"),
        "{text}"
    );

    // Carol is a configured approver, but this rule names only Alice and Bob.
    slack.click("UCAROL", &msg.ts, "agp_allow").unwrap();
    expect_ephemeral(&slack, "UCAROL", "not an approver").await;
    slack.click("UALICE", &msg.ts, "agp_allow").unwrap();
    expect_ephemeral(&slack, "UALICE", "1 of 2").await;
    assert!(
        !asked.is_finished(),
        "one approval of two must not release the call"
    );
    slack.click("UBOB", &msg.ts, "agp_allow").unwrap();

    let verdict = tokio::time::timeout(WAIT, asked)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        verdict.decision,
        agp_contracts::Decision::Allow,
        "{verdict:?}"
    );

    let granted = journal.of("approval.granted");
    assert_eq!(granted.len(), 1, "{:?}", journal.events());
    let g = granted[0].to_string();
    for want in ["UALICE", "Alice", "UBOB", "Bob", "slack"] {
        assert!(g.contains(want), "{want} missing from {g}");
    }
    let rejected = journal.of("approval.rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "not_an_approver");
    assert_eq!(rejected[0]["user"]["id"], "UCAROL");
    let all = format!("{:?}", journal.events());
    assert!(!all.contains(fake::BOT_TOKEN) && !all.contains(fake::APP_TOKEN));

    let _ = stop.send(());
    let _ = served.await;
}

/// The session both tests open: Claude Code making a build directory in `repo`.
pub(super) fn session_params(repo: PathBuf) -> SessionParams {
    SessionParams {
        intendant: "claude-code".into(),
        repo,
        task: "make a build dir".into(),
        mode: SessionMode::Gate,
    }
}

/// The agent's hook asks to run `mkdir build` in the session of `token` and waits for the
/// verdict (a blocking client, as the hook binary uses).
fn hook_asks_mkdir(
    config: &DaemonConfig,
    token: String,
    repo: &Path,
    tool_use_id: Option<&str>,
) -> tokio::task::JoinHandle<Result<VerdictMessage, ClientError>> {
    let socket = config.socket_path();
    let request = ToolCallRequest {
        id: "call-1".into(),
        tool_use_id: tool_use_id.map(str::to_owned),
        tool: "Bash".into(),
        input: json!({"command": "mkdir build"}),
        cwd: repo.display().to_string(),
    };
    tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(&socket, Duration::from_secs(90)).unwrap();
        c.hello(&token).unwrap();
        c.request(&request)
    })
}

/// Waits until `user` was told something containing `text`.
pub(super) async fn expect_ephemeral(slack: &FakeSlack, user: &str, text: &str) {
    assert!(
        slack.wait_ephemeral(user, text, WAIT).await.is_some(),
        "{user} was never told {text:?}"
    );
}

/// A repository and a daemon configuration in a fresh tempdir (kept alive by the caller).
pub(super) fn daemon_dirs() -> (tempfile::TempDir, PathBuf, DaemonConfig) {
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let mut config = DaemonConfig::new(dir.path().join("home"), dir.path().to_path_buf());
    config.approval_timeout = Duration::from_secs(60);
    std::fs::create_dir_all(config.state_db.parent().unwrap()).unwrap();
    (dir, repo, config)
}

pub(super) fn slack_config(slack: &FakeSlack) -> SlackConfig {
    let mut cfg = SlackConfig::new(
        Secret::new(fake::BOT_TOKEN),
        Secret::new(fake::APP_TOKEN),
        fake::CHANNEL,
    );
    cfg.api_url = slack.api_url();
    cfg.approvers = vec!["UALICE".into(), "UBOB".into(), "UCAROL".into()];
    cfg.validate().unwrap()
}

/// A daemon with the Slack channel, sharing one state.db; must run inside a tokio runtime.
pub(super) async fn daemon_with_slack(
    config: &DaemonConfig,
    slack: SlackConfig,
    journal: Arc<Recorder>,
) -> Arc<Daemon> {
    let store = Arc::new(SqliteStore::open(&config.state_db).unwrap());
    let channel = SlackChannel::builder(slack, store)
        .journal(journal.clone())
        .start()
        .await
        .unwrap();
    assert!(channel.wait_connected(1, WAIT).await);
    let parts = Parts {
        journal,
        policy: Arc::new(agp_policy::Policy::from_str(POLICY, "test policy").unwrap()),
        channel: Arc::new(channel),
        sandbox: None,
        redactor: Arc::new(PolicyRedactor),
    };
    Daemon::start(config.clone(), parts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_approval_reattaches_to_the_slack_message_and_keeps_the_votes() {
    let (_dir, repo, config) = daemon_dirs();
    let slack = FakeSlack::start().await.unwrap();
    for (id, name) in [("UALICE", "Alice"), ("UBOB", "Bob")] {
        slack.add_user(id, name);
    }
    let journal = Arc::new(Recorder::default());

    // The first daemon runs on a runtime of its own so that it can be killed: shutting the
    // runtime down drops every task, timer and socket, as SIGKILL would.
    let (token_tx, token_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let first = {
        let (config, cfg, journal, repo) = (
            config.clone(),
            slack_config(&slack),
            journal.clone(),
            repo.clone(),
        );
        std::thread::spawn(move || {
            let rt = super::killable_runtime();
            rt.block_on(async {
                let daemon = daemon_with_slack(&config, cfg, journal).await;
                let session = daemon.open_session(session_params(repo)).await.unwrap();
                tokio::spawn(daemon.serve(std::future::pending()));
                token_tx.send(session.token).unwrap();
            });
            kill_rx.recv().unwrap();
            rt.shutdown_background();
        })
    };
    let token = token_rx.recv().unwrap();
    let asked = hook_asks_mkdir(&config, token, &repo, None);
    let msg = slack
        .wait_approval(0, WAIT)
        .await
        .expect("no approval in Slack");
    slack.click("UALICE", &msg.ts, "agp_allow").unwrap();
    expect_ephemeral(&slack, "UALICE", "1 of 2").await;

    kill_tx.send(()).unwrap();
    first.join().unwrap();
    // The agent that asked lost its daemon: it was not allowed (the hook denies on that).
    let lost = tokio::time::timeout(WAIT, asked).await.unwrap().unwrap();
    assert!(lost.is_err(), "{lost:?}");

    let posted = slack.messages().len();
    let second = daemon_with_slack(&config, slack_config(&slack), journal.clone()).await;
    let settle = {
        let d = second.clone();
        tokio::spawn(async move { d.settle_recovered().await })
    };
    slack.click("UBOB", &msg.ts, "agp_allow").unwrap();
    tokio::time::timeout(WAIT, settle).await.unwrap().unwrap();
    assert_eq!(
        slack.messages().len(),
        posted,
        "the restarted daemon asked again instead of re-attaching"
    );
    let granted = journal.of("approval.granted");
    assert_eq!(granted.len(), 1, "{:?}", journal.events());
    let g = granted[0].to_string();
    assert!(g.contains("UALICE") && g.contains("UBOB"), "{g}");
    let done = slack
        .wait_message(WAIT, |m| {
            m.ts == msg.ts && !m.has_buttons() && m.all_text().contains("Allowed")
        })
        .await;
    assert!(done.is_some(), "{:?}", slack.message(&msg.ts));
}
