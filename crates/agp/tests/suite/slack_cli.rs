//! `agp slack` with the real binary against the fake Slack (real HTTP and WebSocket).

use std::process::Stdio;
use std::time::Duration;

use agp_slack::fake::{self, FakeSlack};

use super::support::stdout_ok;
use std::process::{Command, Output};

fn agp(fake: &FakeSlack, home: &std::path::Path, bot_token: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agp"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AGP_HOME", home)
        .env("USER", "tester")
        .env("AGP_SLACK_BOT_TOKEN", bot_token)
        .env("AGP_SLACK_APP_TOKEN", fake::APP_TOKEN)
        .env("AGP_SLACK_CHANNEL", fake::CHANNEL)
        .env("AGP_SLACK_APPROVERS", "UALICE")
        .env("AGP_SLACK_API_URL", fake.api_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_test_posts_an_approval_and_reports_the_click() {
    let fake = FakeSlack::start().await.unwrap();
    fake.add_user("UALICE", "Alice");
    let home = tempfile::tempdir().unwrap();
    let child = agp(&fake, home.path(), fake::BOT_TOKEN)
        .args(["slack", "test", "--timeout", "60"])
        .spawn()
        .unwrap();
    let msg = fake
        .wait_approval(0, Duration::from_secs(30))
        .await
        .expect("agp slack test posted no approval");
    assert!(msg.all_text().contains("agp slack test"));
    assert!(fake.wait_hellos(1, Duration::from_secs(10)).await);
    fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("agp slack test did not finish")
    .unwrap()
    .unwrap();
    let stdout = stdout_ok(&out, "agp slack test");
    assert!(stdout.contains("allowed by Alice (UALICE)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_test_without_a_click_exits_1() {
    let fake = FakeSlack::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = agp(&fake, home.path(), fake::BOT_TOKEN)
        .args(["slack", "test", "--timeout", "1"])
        .output_async()
        .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("nobody decided"), "{stdout}");
    let updated = fake
        .wait_message(Duration::from_secs(5), |m| {
            m.thread_ts.is_some() && !m.has_buttons() && m.all_text().contains("Timed out")
        })
        .await;
    assert!(updated.is_some(), "{:?}", fake.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_check_reports_a_bad_token_without_printing_it() {
    let fake = FakeSlack::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let ok = agp(&fake, home.path(), fake::BOT_TOKEN)
        .args(["slack", "check"])
        .output_async()
        .await;
    stdout_ok(&ok, "agp slack check");
    let bad = agp(&fake, home.path(), "xoxb-not-the-right-secret")
        .args(["slack", "check"])
        .output_async()
        .await;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(bad.status.code(), Some(1), "{all}");
    assert!(all.contains("invalid_auth"), "{all}");
    assert!(!all.contains("not-the-right-secret"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_without_settings_cannot_run() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agp"))
        .env_clear()
        .env("AGP_HOME", home.path())
        .args(["slack", "test"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("agp: error:") && stderr.contains("AGP_SLACK_BOT_TOKEN"),
        "{stderr}"
    );
}

/// `agp ARGS` with `bot_token`, which must exit with `code`: its stdout, parsed as JSON and as
/// it was printed.
async fn agp_json(
    fake: &FakeSlack,
    home: &std::path::Path,
    bot_token: &str,
    args: &[&str],
    code: i32,
) -> (serde_json::Value, String) {
    let out = agp(fake, home, bot_token).args(args).output_async().await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stdout}");
    (serde_json::from_str(&stdout).unwrap(), stdout)
}

/// Runs the command off the async threads (the fake Slack must keep serving meanwhile).
trait OutputAsync {
    async fn output_async(self) -> Output;
}

impl OutputAsync for &mut Command {
    async fn output_async(self) -> Output {
        let child = self.spawn().unwrap();
        tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_check_and_test_report_as_json() {
    let fake = FakeSlack::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (v, _) = agp_json(
        &fake,
        home.path(),
        fake::BOT_TOKEN,
        &["slack", "check", "--json"],
        0,
    )
    .await;
    assert_eq!(v["ok"], true);
    assert_eq!(v["bot"]["ok"], true);
    assert_eq!(v["app"]["ok"], true);

    let bad_token = "xoxb-not-the-right-secret";
    let (v, stdout) = agp_json(
        &fake,
        home.path(),
        bad_token,
        &["slack", "check", "--json"],
        1,
    )
    .await;
    assert_eq!(v["ok"], false);
    assert!(v["bot"]["error"].as_str().unwrap().contains("invalid_auth"));
    assert!(!stdout.contains("not-the-right-secret"));

    let test = ["slack", "test", "--timeout", "1", "--json"];
    let (v, _) = agp_json(&fake, home.path(), fake::BOT_TOKEN, &test, 1).await;
    assert_eq!(v["outcome"], "timeout");
    assert_eq!(v["ok"], false);
    assert_eq!(v["channel"], fake::CHANNEL);
}
