//! `agp doctor` on a real home: every check passes on a healthy home, and each problem is a ✗
//! with a fix and exit 1.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::support::looping::{AGP, SLACK_VARS};

fn agp(home: &Path, args: &[&str]) -> Output {
    agp_env(home, args, &[])
}

fn agp_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home").arg(home).args(args).stdin(Stdio::null());
    for var in SLACK_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn doctor(home: &Path) -> (i32, Value) {
    doctor_env(home, &[])
}

fn doctor_env(home: &Path, env: &[(&str, &str)]) -> (i32, Value) {
    let out = agp_env(home, &["doctor", "--json"], env);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    (out.status.code().unwrap(), report)
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix: {c}"
            );
            c["check"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn doctor_passes_on_a_healthy_home_and_names_each_problem_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), ["home"]);

    assert!(agp(&home, &["init"]).status.success());
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert!(failed(&report).contains(&"key".to_owned()), "{report}");

    assert!(agp(&home, &["keygen"]).status.success());
    let (code, report) = doctor(&home);
    assert_eq!(code, 0, "{report}");
    assert!(failed(&report).is_empty());
    let human = agp(&home, &["doctor"]);
    assert!(human.status.success());
    assert_eq!(
        String::from_utf8_lossy(&human.stdout).matches('✓').count(),
        7
    );
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("slack    not configured (optional)"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    // A key readable by others, a broken policy, a tampered journal: each is a ✗.
    let key = home.join("keys/journal.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        home.join("policy.toml"),
        "version = 1\ndefault = \"sometimes\"\n",
    )
    .unwrap();
    let entries = home.join("journal/entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    std::fs::write(
        &entries,
        text.replacen("journal.created", "journal.crEated", 1),
    )
    .unwrap();
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    let bad = failed(&report);
    for check in ["key", "policy", "journal"] {
        assert!(
            bad.contains(&check.to_owned()),
            "{check} not flagged: {report}"
        );
    }
}

#[test]
fn doctor_flags_a_home_configured_without_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    assert!(agp(&home, &["init"]).status.success());
    assert!(agp(&home, &["keygen"]).status.success());
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[sandbox]\nprovider = \"none\"\n");
    std::fs::write(&config, text).unwrap();
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), ["sandbox"]);
}

fn slack_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "slack")
        .unwrap_or_else(|| panic!("no slack check: {report}"))
        .clone()
}

/// Runs `agp doctor` off the async workers: the fake Slack must keep answering meanwhile.
async fn doctor_async(home: &Path, env: Vec<(String, String)>) -> (i32, Value) {
    let home = home.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        doctor_env(&home, &env)
    })
    .await
    .unwrap()
}

/// Slack is optional; once configured, doctor asks the (fake) Slack whether both tokens work,
/// and a bad token, an unsafe settings file or a config that needs Slack without it is a ✗.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_slack_tokens_against_slack() {
    use agp_slack::fake::{self, FakeSlack};
    let slack = FakeSlack::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    assert!(agp(&home, &["init"]).status.success());
    assert!(agp(&home, &["keygen"]).status.success());

    let env = |bot: &str| -> Vec<(String, String)> {
        [
            ("AGP_SLACK_BOT_TOKEN", bot),
            ("AGP_SLACK_APP_TOKEN", fake::APP_TOKEN),
            ("AGP_SLACK_CHANNEL", fake::CHANNEL),
            ("AGP_SLACK_APPROVERS", "UALICE"),
            ("AGP_SLACK_API_URL", slack.api_url().as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };

    // Configured from the environment, both tokens accepted by auth.test / connections.open.
    let before = slack.calls("auth.test").len();
    let (code, report) = doctor_async(&home, env(fake::BOT_TOKEN)).await;
    assert_eq!(code, 0, "{report}");
    let check = slack_check(&report);
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains(fake::BOT_USER),
        "{check}"
    );
    assert_eq!(
        slack.calls("auth.test").len(),
        before + 1,
        "doctor never asked Slack"
    );

    // A token Slack refuses: ✗ with the fix, and the token itself is never printed.
    let (code, report) = doctor_async(&home, env("xoxb-not-the-right-secret")).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(failed(&report), ["slack"]);
    let check = slack_check(&report);
    assert!(
        check["detail"].as_str().unwrap().contains("invalid_auth"),
        "{check}"
    );
    assert!(
        check["fix"].as_str().unwrap().contains("agp slack check"),
        "{check}"
    );
    assert!(
        !report.to_string().contains("not-the-right-secret"),
        "{report}"
    );

    // A settings file others can read is refused, even with good tokens in it.
    let settings = home.join("slack.toml");
    std::fs::write(
        &settings,
        format!(
            "bot_token = \"{}\"\napp_token = \"{}\"\nchannel = \"{}\"\napprovers = [\"UALICE\"]\napi_url = \"{}\"\n",
            fake::BOT_TOKEN,
            fake::APP_TOKEN,
            fake::CHANNEL,
            slack.api_url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = doctor_async(&home, Vec::new()).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(failed(&report), ["slack"]);
    assert!(!report.to_string().contains(fake::BOT_TOKEN), "{report}");

    // The same file at 0600 is a working configuration.
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, report) = doctor_async(&home, Vec::new()).await;
    assert_eq!(code, 0, "{report}");

    // config.toml sends approvals to Slack, but Slack is not configured: ✗.
    std::fs::remove_file(&settings).unwrap();
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = if text.contains("\n[approvals]\n") {
        text.replacen("\n[approvals]\n", "\n[approvals]\nchannel = \"slack\"\n", 1)
    } else {
        text + "\n[approvals]\nchannel = \"slack\"\n"
    };
    std::fs::write(&config, text).unwrap();
    let (code, report) = doctor_async(&home, Vec::new()).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(failed(&report), ["slack"]);
}
