//! Approvals through Slack with the real `agp run` binary: the fake Slack server (real HTTP Web
//! API and Socket Mode WebSocket) clicks Allow or Deny as a configured approver.
//!
//! The real Claude Code test skips LOUDLY when the pinned client is not installed (see
//! `agents_support`); the scripted-intendant test and the refusals run everywhere.

use super::support::agents as agents_support;
use super::support::daemon::ask_in_gate_session;
use super::support::looping::SLACK_VARS;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use agents_support::*;
use agp_slack::fake::{self, FakeSlack, PostedMessage};
use agp_testkit::{FakeModel, Turn};
use serde_json::Value;

/// `agp --home <home> run ...` wired to the fake Slack; Alice and Bob may approve.
pub(super) fn agp_run(world: &World, slack: &FakeSlack, args: &[&str]) -> Command {
    let mut cmd = Command::new(AGP);
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    cmd.arg("--home")
        .arg(&world.home)
        .arg("run")
        .args(args)
        .arg("--repo")
        .arg(&world.repo)
        .arg("--policy")
        .arg(&world.policy)
        .args(["--approval-channel", "slack", "--approval-timeout", "60"])
        .env("AGP_SLACK_BOT_TOKEN", fake::BOT_TOKEN)
        .env("AGP_SLACK_APP_TOKEN", fake::APP_TOKEN)
        .env("AGP_SLACK_CHANNEL", fake::CHANNEL)
        .env("AGP_SLACK_APPROVERS", "UALICE,UBOB")
        .env("AGP_SLACK_API_URL", slack.api_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub(super) async fn fake_slack() -> FakeSlack {
    let slack = FakeSlack::start().await.unwrap();
    slack.add_user("UALICE", "Alice");
    slack.add_user("UBOB", "Bob");
    slack
}

/// A fresh world, the fake Slack, and a script (`calls`, YAML) for the scripted intendant.
async fn scripted_world(calls: &str) -> (World, FakeSlack, PathBuf) {
    let world = World::new();
    let slack = fake_slack().await;
    let script = world.file("script.yaml", calls);
    (world, slack, script)
}

/// Waits for the pending approval of `command`, checks what it shows, and clicks as `user`.
async fn decide(slack: &FakeSlack, command: &str, user: &str, action: &str) {
    let msg = slack
        .wait_message(Duration::from_secs(120), |m: &PostedMessage| {
            m.thread_ts.is_some() && m.has_buttons() && m.all_text().contains(command)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "the approval of {command} never reached Slack: {:?}",
                slack.messages()
            )
        });
    assert!(msg.all_text().contains(command), "{}", msg.all_text());
    assert!(msg.all_text().contains("needs-human"), "the rule is shown");
    assert!(slack.wait_hellos(1, Duration::from_secs(30)).await);
    slack.click(user, &msg.ts, action).unwrap();
    // The message is updated with the outcome and its buttons are gone.
    let ts = msg.ts.clone();
    let updated = slack
        .wait_message(Duration::from_secs(30), |m: &PostedMessage| {
            m.ts == ts && !m.has_buttons()
        })
        .await;
    assert!(
        updated.is_some(),
        "the approval of {command} was not updated after the click"
    );
}

/// Waits for `agp run`, which must succeed; its stdout.
pub(super) async fn wait_success(child: std::process::Child) -> String {
    assert_ran(&wait_output(child).await)
}

/// The journal and Slack agree on the two decisions: Alice allowed the first `mkdir`, Bob denied
/// the second, each named by Slack user id and name; the session's root message says who
/// started it; the journal verifies.
fn assert_decided_in_slack(world: &World, slack: &FakeSlack, j: &[Value]) {
    assert!(
        world.repo.join("approved-dir").is_dir(),
        "the approved call did not run"
    );
    assert!(
        !world.repo.join("denied-dir").exists(),
        "the denied call ran"
    );
    let kind = |k: &str| -> Vec<&Value> { j.iter().filter(|e| e["kind"] == k).collect() };

    let granted = kind("approval.granted");
    assert_eq!(granted.len(), 1, "{j:#?}");
    assert_eq!(
        granted[0]["body"]["by"],
        serde_json::json!([{"id": "UALICE", "name": "Alice", "via": "slack"}]),
        "{:#}",
        granted[0]
    );
    let denied = kind("approval.denied");
    assert_eq!(denied.len(), 1, "{j:#?}");
    let by = denied[0]["body"].to_string();
    assert!(by.contains("UBOB") && by.contains("Bob"), "{by}");
    assert_ne!(granted[0]["body"]["call_id"], denied[0]["body"]["call_id"]);

    let started = kind("session.started");
    assert_eq!(started.len(), 1, "{j:#?}");
    assert_eq!(started[0]["body"]["approval_channel"], "slack");
    let who = started[0]["body"]["started_by"]
        .as_str()
        .expect("session.started names who started it");
    let me = Command::new("id").arg("-un").output().unwrap();
    assert_eq!(who, text(&me.stdout).trim(), "started_by is the OS user");
    let root = slack
        .messages()
        .into_iter()
        .find(|m| m.thread_ts.is_none())
        .expect("no session root message in Slack");
    assert!(
        root.all_text().contains(who),
        "the root message does not say who started the session ({who}): {}",
        root.all_text()
    );

    let raw = std::fs::read_to_string(world.home.join("journal/entries.jsonl")).unwrap();
    for secret in [fake::BOT_TOKEN, fake::APP_TOKEN] {
        assert!(!raw.contains(secret), "a Slack token is in the journal");
    }

    world.assert_verified();
}

/// The real Claude Code: its two `require` verdicts are decided by clicks in (the fake) Slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_require_is_decided_in_slack() {
    let Some(claude) = claude() else { return };
    let world = World::new();
    let slack = fake_slack().await;
    // The agent's programs see their own environment: Slack's tokens must not be in it.
    std::fs::write(
        world.repo.join("env.py"),
        "import os\nopen('env.txt', 'w').write(repr(dict(os.environ)))\n",
    )
    .unwrap();
    let model = FakeModel::anthropic(vec![
        Turn::Shell("python3 env.py".into()),
        Turn::Shell("mkdir approved-dir".into()),
        Turn::Shell("mkdir denied-dir".into()),
        Turn::Text("finished".into()),
    ])
    .unwrap();
    let child = agp_run(
        &world,
        &slack,
        &[
            "--intendant",
            "claude-code",
            "--task",
            "make two directories",
        ],
    )
    .env("AGP_CLAUDE_BIN", &claude)
    .env("ANTHROPIC_BASE_URL", model.base_url())
    .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
    .spawn()
    .unwrap();
    decide(&slack, "mkdir approved-dir", "UALICE", "agp_allow").await;
    decide(&slack, "mkdir denied-dir", "UBOB", "agp_deny").await;
    let stdout = wait_success(child).await;
    assert!(stdout.contains("approvals via slack"), "{stdout}");
    assert_eq!(model.remaining_turns(), 0, "the agent stopped early");

    let j = world.journal();
    let seen = std::fs::read_to_string(world.repo.join("env.txt")).expect("env.py ran");
    assert!(seen.contains("PATH"), "{seen}");
    for secret in [fake::BOT_TOKEN, fake::APP_TOKEN, "AGP_SLACK"] {
        assert!(!seen.contains(secret), "the agent sees {secret}: {seen}");
    }
    assert_eq!(of_call(&j, "approval.granted", &call_id(2)).len(), 1);
    assert_eq!(of_call(&j, "approval.denied", &call_id(3)).len(), 1);
    // The approved call ran in Claude Code and its result is journaled; the model was told
    // why the other was refused.
    assert_eq!(
        of_call(&j, "tool_call.result", &call_id(2)).len(),
        1,
        "{j:#?}"
    );
    let told = result_for(&model.tool_results(), "toolu_fake_3");
    assert!(told.contains("agp denied this call"), "{told}");
    assert_decided_in_slack(&world, &slack, &j);
}

/// The same decisions for the scripted intendant (proxy-exec in bubblewrap): the Slack wiring
/// of `agp run` is tested even where the real clients are not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_require_is_decided_in_slack() {
    let (world, slack, script) = scripted_world(
        "calls:\n\
         \x20 - tool: Bash\n    input: { command: \"mkdir approved-dir\" }\n\
         \x20 - tool: Bash\n    input: { command: \"mkdir denied-dir\" }\n",
    )
    .await;
    let script = script.to_str().unwrap();
    let child = agp_run(
        &world,
        &slack,
        &["--intendant", "scripted", "--script", script],
    )
    .spawn()
    .unwrap();
    decide(&slack, "mkdir approved-dir", "UALICE", "agp_allow").await;
    decide(&slack, "mkdir denied-dir", "UBOB", "agp_deny").await;
    wait_success(child).await;
    let j = world.journal();
    let results = of_kind(&j, "tool_call.result");
    assert_eq!(results.len(), 1, "only the approved call ran: {j:#?}");
    assert_decided_in_slack(&world, &slack, &j);
}

fn nothing_journaled(home: &Path) {
    let j = journal(home);
    assert!(
        !j.iter().any(|e| e["kind"] == "session.started"),
        "a session started anyway: {j:#?}"
    );
}

/// Slack was asked for but cannot be used: agp refuses to start, with one clear line, and
/// never falls back to another channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misconfigured_slack_refuses_to_start() {
    let (world, slack, script) =
        scripted_world("calls:\n  - tool: Bash\n    input: { command: \"mkdir x\" }\n").await;
    let run = |cmd: &mut Command| {
        let child = cmd.spawn().unwrap();
        async move { wait_output(child).await }
    };
    let scripted = |extra: &[&str]| {
        let mut cmd = agp_run(
            &world,
            &slack,
            &[
                "--intendant",
                "scripted",
                "--script",
                script.to_str().unwrap(),
            ],
        );
        cmd.args(extra);
        cmd
    };

    // No Slack settings at all.
    let mut cmd = scripted(&[]);
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let line = one_error_line(&out);
    assert!(line.contains("Slack is not configured"), "{line}");
    nothing_journaled(&world.home);

    // A bot token Slack refuses (auth.test): refused, and the token is not printed.
    let mut cmd = scripted(&[]);
    cmd.env("AGP_SLACK_BOT_TOKEN", "xoxb-not-the-right-secret");
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let line = one_error_line(&out);
    assert!(line.contains("Slack"), "{line}");
    assert!(!text(&out.stderr).contains("not-the-right-secret"));
    nothing_journaled(&world.home);

    // A slack.toml others can read.
    let settings = world.home.join("slack.toml");
    std::fs::write(
        &settings,
        format!(
            "bot_token = \"{}\"\napp_token = \"{}\"\nchannel = \"{}\"\napprovers = [\"UALICE\"]\n",
            fake::BOT_TOKEN,
            fake::APP_TOKEN,
            fake::CHANNEL
        ),
    )
    .unwrap();
    let mut cmd = scripted(&[]);
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        one_error_line(&out).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_file(&settings).unwrap();

    // Slack together with an automatic approver: which one decides is ambiguous, so refuse.
    for extra in [
        &["--auto-approve"][..],
        &["--approver-script", "/dev/null"][..],
    ] {
        let out = run(&mut scripted(extra)).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        assert!(one_error_line(&out).contains("cannot be combined"));
    }
    // The environment variable selects Slack just like the flag.
    let mut cmd = Command::new(AGP);
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    cmd.arg("--home")
        .arg(&world.home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(&script)
        .arg("--repo")
        .arg(&world.repo)
        .env("AGP_APPROVAL_CHANNEL", "slack")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_error_line(&out).contains("Slack is not configured"));
    nothing_journaled(&world.home);

    // So does config.toml's [approvals] channel.
    let config = world.home.join("config.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let slack_config =
        original.replacen("\n[approvals]\n", "\n[approvals]\nchannel = \"slack\"\n", 1);
    assert_ne!(
        original, slack_config,
        "agp init writes an [approvals] section"
    );
    std::fs::write(&config, slack_config).unwrap();
    cmd.env_remove("AGP_APPROVAL_CHANNEL");
    let out = run(&mut cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(one_error_line(&out).contains("Slack is not configured"));
    nothing_journaled(&world.home);
    assert!(slack.messages().is_empty(), "{:?}", slack.messages());
}

/// `agp daemon --approval-channel slack`, killed with SIGKILL on drop.
struct SlackDaemon(std::process::Child);

impl Drop for SlackDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_slack_daemon(world: &World, slack_url: &str, log: &str) -> SlackDaemon {
    let mut cmd = Command::new("setsid");
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    let log = std::fs::File::create(world.dir.path().join(log)).unwrap();
    cmd.arg("-w")
        .arg(AGP)
        .arg("--home")
        .arg(&world.home)
        .args(["daemon", "--sandbox", "none", "--approval-timeout", "120"])
        .arg("--policy")
        .arg(&world.policy)
        .args(["--approval-channel", "slack"])
        .env("AGP_SLACK_BOT_TOKEN", fake::BOT_TOKEN)
        .env("AGP_SLACK_APP_TOKEN", fake::APP_TOKEN)
        .env("AGP_SLACK_CHANNEL", fake::CHANNEL)
        .env("AGP_SLACK_APPROVERS", "UALICE,UBOB")
        .env("AGP_SLACK_API_URL", slack_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let daemon = SlackDaemon(cmd.spawn().unwrap());
    let socket = world.home.join("run/gateway.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "agp daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// A gate session's call that needs approval, sent from a thread; true if it was allowed.
fn ask(world: &World, command: &str) -> std::thread::JoinHandle<bool> {
    ask_in_gate_session(&world.home, &world.repo, "slack-1", command)
}

async fn wait_journal(world: &World, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = world.journal().into_iter().find(|e| what(e)) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the journal never got the entry: {:#?}",
            world.journal()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The daemon journals clicks its Slack channel refuses, and a daemon killed while an approval
/// is pending re-attaches to the message it posted: the click after the restart decides it,
/// and nothing is posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_journals_refused_clicks_and_reattaches_after_a_restart() {
    let world = World::new();
    let slack = fake_slack().await;
    slack.add_user("UMALLORY", "Mallory");
    let url = slack.api_url();
    let mut first = {
        let (w, u) = (&world, url.clone());
        tokio::task::block_in_place(|| start_slack_daemon(w, &u, "daemon-1.log"))
    };
    let waiter = ask(&world, "mkdir after-restart");
    let msg = slack
        .wait_message(Duration::from_secs(60), |m: &PostedMessage| {
            m.thread_ts.is_some() && m.has_buttons() && m.all_text().contains("after-restart")
        })
        .await
        .unwrap_or_else(|| panic!("no approval in Slack: {:?}", slack.messages()));
    assert!(slack.wait_hellos(1, Duration::from_secs(30)).await);

    // Someone who is not an approver clicks Allow: refused and journaled, still pending.
    slack.click("UMALLORY", &msg.ts, "agp_allow").unwrap();
    let rejected = wait_journal(&world, |e| e["kind"] == "approval.rejected").await;
    assert_eq!(
        rejected["body"]["reason"], "not_an_approver",
        "{rejected:#}"
    );
    assert_eq!(rejected["body"]["user"]["id"], "UMALLORY");
    assert_eq!(rejected["body"]["call_id"], "slack-1");

    // SIGKILL: the waiting call is not allowed by a dead daemon.
    tokio::task::block_in_place(|| {
        first.0.kill().unwrap();
        first.0.wait().unwrap();
    });
    assert!(!tokio::task::spawn_blocking(move || waiter.join().unwrap())
        .await
        .unwrap());

    let second = tokio::task::block_in_place(|| start_slack_daemon(&world, &url, "daemon-2.log"));
    assert!(slack.wait_hellos(2, Duration::from_secs(30)).await);
    slack.click("UALICE", &msg.ts, "agp_allow").unwrap();
    let granted = wait_journal(&world, |e| e["kind"] == "approval.granted").await;
    assert_eq!(granted["body"]["call_id"], "slack-1");
    assert_eq!(
        granted["body"]["by"],
        serde_json::json!([{"id": "UALICE", "name": "Alice", "via": "slack"}]),
        "{granted:#}"
    );
    let posted = slack
        .messages()
        .into_iter()
        .filter(|m| m.thread_ts.is_some() && m.all_text().contains("mkdir after-restart"))
        .count();
    assert_eq!(
        posted,
        1,
        "the approval was posted again: {:?}",
        slack.messages()
    );
    drop(second);
    world.assert_verified();
}
