//! Tokens never reach the logs or the journal, on the happy path or the error paths.
//! It installs the process-wide log subscriber, so the suite's other tests log into it too once
//! it is set: that only widens what is checked for tokens.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::{ApprovalChannel, ApprovalRequest};
use agp_slack::fake::{self, FakeSlack};
use agp_slack::{Secret, SlackChannel, SlackConfig, SqliteStore};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

use agp_testkit::MemJournal as Recorder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_logs_or_journal() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let fake = FakeSlack::start().await.unwrap();
    fake.add_user("UALICE", "Alice");
    fake.add_user("UMALLORY", "Mallory");
    let mut cfg = SlackConfig::new(
        Secret::new(fake::BOT_TOKEN),
        Secret::new(fake::APP_TOKEN),
        fake::CHANNEL,
    );
    cfg.api_url = fake.api_url();
    cfg.approvers = vec!["UALICE".into()];
    let cfg = cfg.validate().unwrap();
    tracing::info!(config = ?cfg, "starting");

    // A refused token.
    let mut bad = cfg.clone();
    bad.bot_token = Secret::new("xoxb-refused-token-value");
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    assert!(SlackChannel::builder(bad, store.clone())
        .start()
        .await
        .is_err());

    // Rate limits, a refused click, a garbage envelope, a reconnect, an approval.
    let journal = Arc::new(Recorder::default());
    fake.rate_limit("chat.postMessage", 1, 1);
    let ch = SlackChannel::builder(cfg, store)
        .journal(journal.clone())
        .start()
        .await
        .unwrap();
    assert!(ch.wait_connected(1, Duration::from_secs(20)).await);
    let ch = Arc::new(ch);
    let req = ApprovalRequest {
        session: "s".into(),
        call_id: "c".into(),
        tool: "Bash".into(),
        redacted_input: json!({"command": "ls"}),
        input_sha256: "ab".repeat(32),
        rule_id: None,
        reason: "r".into(),
        approvers: vec![],
        quorum: 1,
        expires_at_ms: 4_000_000_000_000,
        remember_secs: None,
    };
    let c2 = ch.clone();
    let h = tokio::spawn(async move { c2.request_approval(&req).await.unwrap() });
    let msg = fake
        .wait_approval(0, Duration::from_secs(20))
        .await
        .unwrap();
    fake.send_raw("{garbage").unwrap();
    fake.click("UMALLORY", &msg.ts, "agp_allow").unwrap();
    for _ in 0..400 {
        if !journal.events().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    fake.disconnect("refresh_requested").unwrap();
    assert!(fake.wait_hellos(2, Duration::from_secs(20)).await);
    fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    assert!(h.await.unwrap().is_granted());
    assert!(
        !journal.events().is_empty(),
        "the refused click was journaled"
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Slack rate limit"),
        "logs were not captured: {logs}"
    );
    let journal = format!("{:?}", journal.events());
    for secret in [
        fake::BOT_TOKEN,
        fake::APP_TOKEN,
        "xoxb-refused-token-value",
        "ticket-",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
        assert!(
            !journal.contains(secret),
            "{secret} in the journal:\n{journal}"
        );
    }
}
