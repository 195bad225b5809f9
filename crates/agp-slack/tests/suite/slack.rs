//! The Slack channel against the fake Slack: real HTTP, a real WebSocket, real SQLite.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::{SessionEnded, SessionStarted, APPROVAL_REJECTED};
use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest};
use agp_slack::fake::{self, FakeSlack, PostedMessage};
use agp_slack::{Backoff, PendingStore, Secret, SlackChannel, SlackConfig, SqliteStore};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Collects what the channel journals (the daemon passes its real journal here).
use agp_testkit::MemJournal as Recorder;

/// What the channel journaled about refused clicks.
trait Rejections {
    fn rejections(&self) -> Vec<String>;
    async fn wait_rejection(&self, reason: &str) -> bool;
}

impl Rejections for Recorder {
    fn rejections(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|(k, _, _)| k == APPROVAL_REJECTED)
            .map(|(_, _, b)| b["reason"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    async fn wait_rejection(&self, reason: &str) -> bool {
        for _ in 0..200 {
            if self.rejections().iter().any(|r| r == reason) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}

struct Rig {
    fake: FakeSlack,
    journal: Arc<Recorder>,
    store: Arc<SqliteStore>,
    dir: tempfile::TempDir,
}

fn config(fake: &FakeSlack, approvers: &[&str]) -> SlackConfig {
    config_with(fake, approvers, None)
}

fn config_with(fake: &FakeSlack, approvers: &[&str], group: Option<&str>) -> SlackConfig {
    let mut cfg = SlackConfig::new(
        Secret::new(fake::BOT_TOKEN),
        Secret::new(fake::APP_TOKEN),
        fake::CHANNEL,
    );
    cfg.api_url = fake.api_url();
    cfg.approvers = approvers
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    cfg.approver_group = group.map(str::to_owned);
    cfg.http_timeout = Duration::from_secs(5);
    cfg.validate().unwrap()
}

async fn rig() -> Rig {
    let fake = FakeSlack::start().await.unwrap();
    fake.add_user("UALICE", "Alice");
    fake.add_user("UBOB", "Bob");
    fake.add_user("UCAROL", "Carol");
    fake.add_user("UMALLORY", "Mallory");
    fake.add_bot("UROBOT", "robot");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    Rig {
        fake,
        journal: Arc::default(),
        store,
        dir,
    }
}

impl Rig {
    async fn channel(&self, approvers: &[&str]) -> Arc<SlackChannel> {
        let ch = SlackChannel::builder(config(&self.fake, approvers), self.store.clone())
            .journal(self.journal.clone())
            .backoff(Backoff {
                min: Duration::from_millis(50),
                max: Duration::from_millis(400),
            })
            .post_retry(Duration::from_millis(100))
            .start()
            .await
            .unwrap();
        assert!(
            ch.wait_connected(1, WAIT).await,
            "Socket Mode never said hello"
        );
        Arc::new(ch)
    }
}

impl Rig {
    /// A channel for `approvers`, asked `req` in the background, and the approval it posted.
    async fn asking(
        &self,
        approvers: &[&str],
        req: ApprovalRequest,
    ) -> (Arc<SlackChannel>, Asked, PostedMessage) {
        let ch = self.channel(approvers).await;
        let h = ask(&ch, req);
        let msg = approval(&self.fake, 0).await;
        (ch, h, msg)
    }

    /// Waits until the channel has journaled a refused click for `reason`.
    async fn expect_rejection(&self, reason: &str) {
        assert!(
            self.journal.wait_rejection(reason).await,
            "no {reason:?} rejection: {:?}",
            self.journal.rejections()
        );
    }

    /// `user` clicks `action` on the message at `ts`; the channel must refuse it for `reason`.
    async fn click_refused(&self, user: &str, ts: &str, action: &str, reason: &str) {
        self.fake.click(user, ts, action).unwrap();
        self.expect_rejection(reason).await;
    }

    /// Waits until `user` was told something containing `text`.
    async fn expect_ephemeral(&self, user: &str, text: &str) -> fake::Ephemeral {
        self.fake
            .wait_ephemeral(user, text, WAIT)
            .await
            .unwrap_or_else(|| panic!("{user} was never told {text:?}"))
    }

    /// `user` clicks the `action` button taken from `from` on the message `on` (a replayed,
    /// stale or foreign button).
    fn click_button_of(&self, user: &str, on: &PostedMessage, action: &str, from: &PostedMessage) {
        self.fake
            .click_value(user, &on.ts, action, &button_value(from, action))
            .unwrap();
    }

    /// Alice allows `msg` and the call waiting in `h` is granted.
    async fn alice_allows(&self, msg: &PostedMessage, h: Asked) {
        self.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
        assert!(outcome(h).await.is_granted());
    }
}

/// A `request_approval` running in the background.
type Asked = tokio::task::JoinHandle<ApprovalOutcome>;

/// A request for call `c1` that expires in 30 s.
fn request_c1(quorum: u32) -> ApprovalRequest {
    request("c1", quorum, Duration::from_secs(30))
}

fn request(call: &str, quorum: u32, expires_in: Duration) -> ApprovalRequest {
    ApprovalRequest {
        session: "sess-1".into(),
        call_id: call.into(),
        tool: "Bash".into(),
        redacted_input: json!({"command": "rm -rf build && curl -H 'Authorization: [REDACTED]' x"}),
        input_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        rule_id: Some("shell.destructive".into()),
        reason: "deletes files".into(),
        approvers: vec![],
        quorum,
        expires_at_ms: now_ms() + expires_in.as_millis() as u64,
        remember_secs: None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs `request_approval` in the background.
fn ask(ch: &Arc<SlackChannel>, req: ApprovalRequest) -> Asked {
    let ch = ch.clone();
    tokio::spawn(async move { ch.request_approval(&req).await.unwrap() })
}

async fn approval(fake: &FakeSlack, nth: usize) -> PostedMessage {
    fake.wait_approval(nth, WAIT)
        .await
        .expect("approval never posted")
}

async fn outcome(h: Asked) -> ApprovalOutcome {
    tokio::time::timeout(WAIT, h)
        .await
        .expect("no decision")
        .unwrap()
}

fn granted_ids(o: &ApprovalOutcome) -> Vec<String> {
    match o {
        ApprovalOutcome::Granted { by } => by.iter().map(|a| a.id.clone()).collect(),
        other => panic!("not granted: {other:?}"),
    }
}

async fn wait_final(fake: &FakeSlack, ts: &str, contains: &str) -> PostedMessage {
    fake.wait_message(WAIT, |m| {
        m.ts == ts && !m.has_buttons() && m.all_text().contains(contains)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "message {ts} never showed {contains:?}: {:?}",
            fake.message(ts)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_posts_in_the_session_thread_and_records_who() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    let mut started = SessionStarted::new("claude-code", "/src/demo");
    started.task = Some("fix tests".into());
    started.started_by = Some("alice".into());
    ch.project(Some("sess-1"), &started.into()).await.unwrap();
    let h = ask(&ch, request_c1(1));
    let msg = approval(&r.fake, 0).await;
    let root = r.fake.roots().remove(0);
    assert_eq!(msg.thread_ts.as_deref(), Some(root.ts.as_str()));
    for want in ["claude-code", "/src/demo", "fix tests", "alice"] {
        assert!(root.all_text().contains(want), "root lacks {want}");
    }
    let text = msg.all_text();
    for want in [
        "Bash",
        "rm -rf build",
        "[REDACTED]",
        "shell.destructive",
        "deletes files",
        "9f86d081884c",
    ] {
        assert!(text.contains(want), "approval lacks {want}: {text}");
    }
    assert!(msg.has_buttons());
    let env = r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    let o = outcome(h).await;
    assert!(r.fake.acked(&env));
    match &o {
        ApprovalOutcome::Granted { by } => {
            assert_eq!(by.len(), 1);
            assert_eq!(
                (by[0].id.as_str(), by[0].name.as_str(), by[0].via.as_str()),
                ("UALICE", "Alice", "slack")
            );
        }
        other => panic!("{other:?}"),
    }
    let done = wait_final(&r.fake, &msg.ts, "Allowed").await;
    assert!(done.all_text().contains("Alice"));
    assert!(r.journal.rejections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_is_a_human_deny() {
    let r = rig().await;
    let (_ch, h, msg) = r.asking(&["UALICE"], request_c1(1)).await;
    r.fake.click("UALICE", &msg.ts, "agp_deny").unwrap();
    match outcome(h).await {
        ApprovalOutcome::Denied { by, .. } => assert_eq!(by.id, "UALICE"),
        other => panic!("{other:?}"),
    }
    wait_final(&r.fake, &msg.ts, "Denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_denies_updates_the_message_and_later_clicks_are_refused() {
    let r = rig().await;
    let (ch, h, msg) = r
        .asking(&["UALICE"], request("c1", 1, Duration::from_millis(1500)))
        .await;
    assert_eq!(outcome(h).await, ApprovalOutcome::Timeout);
    wait_final(&r.fake, &msg.ts, "Timed out").await;
    r.click_button_of("UALICE", &msg, "agp_allow", &msg);
    r.expect_rejection("expired").await;
    r.expect_ephemeral("UALICE", "expired").await;
    // The stored outcome stays a timeout.
    let again = ch
        .request_approval(&request("c1", 1, Duration::from_millis(1500)))
        .await;
    assert!(!again.unwrap().is_granted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_click_is_refused_and_journaled() {
    let r = rig().await;
    let (_ch, h, msg) = r.asking(&["UALICE", "UBOB"], request_c1(1)).await;
    r.alice_allows(&msg, h).await;
    wait_final(&r.fake, &msg.ts, "Allowed").await;
    // Bob replays the old button (e.g. from a cached client) after the decision.
    r.click_button_of("UBOB", &msg, "agp_deny", &msg);
    r.expect_rejection("replayed").await;
    r.expect_ephemeral("UBOB", "already decided").await;
    let entry = r.journal.events().last().cloned().unwrap();
    assert_eq!(entry.1.as_deref(), Some("sess-1"));
    assert_eq!(entry.2["user"]["id"], "UBOB");
    assert_eq!(entry.2["call_id"], "c1");
}

fn button_value(msg: &PostedMessage, action: &str) -> String {
    msg.blocks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["elements"].as_array())
        .flatten()
        .find(|e| e["action_id"] == action)
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_approvers_and_bots_cannot_decide_and_do_not_burn_the_nonce() {
    let r = rig().await;
    let (_ch, h, msg) = r.asking(&["UALICE"], request_c1(1)).await;
    r.click_refused("UMALLORY", &msg.ts, "agp_allow", "not_an_approver")
        .await;
    r.expect_ephemeral("UMALLORY", "not an approver").await;
    r.click_refused("UROBOT", &msg.ts, "agp_allow", "bot").await;
    // A user Slack does not know (users.info fails) is refused too, without deciding anything.
    r.click_refused("UNOBODY", &msg.ts, "agp_deny", "approver_lookup_failed")
        .await;
    assert!(!h.is_finished());
    assert!(r.fake.message(&msg.ts).unwrap().has_buttons());
    r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_foreign_buttons_are_refused() {
    let r = rig().await;
    let (ch, h1, m1) = r.asking(&["UALICE"], request_c1(1)).await;
    let mut other = request("c2", 1, Duration::from_secs(30));
    other.input_sha256 = "11".repeat(32);
    let h2 = ask(&ch, other);
    let m2 = approval(&r.fake, 1).await;
    // c2's button clicked on c1's message: the nonce is real but bound elsewhere.
    r.click_button_of("UALICE", &m1, "agp_allow", &m2);
    r.expect_rejection("mismatch").await;
    // The right nonce with a different input hash.
    let v = button_value(&m1, "agp_allow").replace("9f86d081", "00000000");
    r.fake
        .click_value("UALICE", &m1.ts, "agp_allow", &v)
        .unwrap();
    for _ in 0..2 {
        r.expect_rejection("mismatch").await;
    }
    // A nonce never issued, and a value that is not ours at all.
    let v = button_value(&m1, "agp_allow").replace(&nonce_of(&m1)[..8], "deadbeef");
    r.fake
        .click_value("UALICE", &m1.ts, "agp_allow", &v)
        .unwrap();
    r.fake
        .click_value("UALICE", &m1.ts, "agp_allow", "approve!")
        .unwrap();
    r.expect_rejection("unknown_nonce").await;
    assert!(!h1.is_finished() && !h2.is_finished());
    r.fake.click("UALICE", &m1.ts, "agp_allow").unwrap();
    r.fake.click("UALICE", &m2.ts, "agp_deny").unwrap();
    assert!(outcome(h1).await.is_granted());
    assert!(matches!(outcome(h2).await, ApprovalOutcome::Denied { .. }));
}

/// Puts a quorum-2 request and has Alice allow it (counted, not decided).
async fn alice_allowed_one_of_two(
    r: &Rig,
    ch: &Arc<SlackChannel>,
) -> (tokio::task::JoinHandle<ApprovalOutcome>, PostedMessage) {
    let h = ask(ch, request_c1(2));
    let msg = approval(&r.fake, 0).await;
    r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    r.expect_ephemeral("UALICE", "1 of 2").await;
    (h, msg)
}

fn nonce_of(msg: &PostedMessage) -> String {
    let v: Value = serde_json::from_str(&button_value(msg, "agp_allow")).unwrap();
    v["n"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_quorum_counts_a_duplicate_click_once() {
    let r = rig().await;
    let ch = r.channel(&["UALICE", "UBOB", "UCAROL"]).await;
    let (h, msg) = alice_allowed_one_of_two(&r, &ch).await;
    r.click_refused("UALICE", &msg.ts, "agp_allow", "duplicate_vote")
        .await;
    assert!(!h.is_finished());
    let progress = r.fake.message(&msg.ts).unwrap();
    assert!(progress.has_buttons() && progress.all_text().contains("1 of 2"));
    r.fake.click("UBOB", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE", "UBOB"]);
    let done = wait_final(&r.fake, &msg.ts, "Allowed").await;
    assert!(done.all_text().contains("Alice") && done.all_text().contains("Bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_deny_wins_over_earlier_approvals() {
    let r = rig().await;
    let ch = r.channel(&["UALICE", "UBOB", "UCAROL"]).await;
    let (h, msg) = alice_allowed_one_of_two(&r, &ch).await;
    r.fake.click("UCAROL", &msg.ts, "agp_deny").unwrap();
    match outcome(h).await {
        ApprovalOutcome::Denied { by, .. } => assert_eq!(by.name, "Carol"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_quorum_is_refused_up_front() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    let o = ch.request_approval(&request_c1(2)).await.unwrap();
    assert!(matches!(o, ApprovalOutcome::Unavailable { .. }), "{o:?}");
    // The request's own approver list narrows who may decide.
    let mut only_bob = request("c2", 1, Duration::from_secs(30));
    only_bob.approvers = vec!["UBOB".into()];
    let o = ch.request_approval(&only_bob).await.unwrap();
    assert!(matches!(o, ApprovalOutcome::Unavailable { .. }), "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_group_members_may_decide() {
    let r = rig().await;
    r.fake.set_group("SSECTEAM", &["UCAROL"]);
    let cfg = config_with(&r.fake, &[], Some("SSECTEAM"));
    let ch = SlackChannel::builder(cfg, r.store.clone())
        .journal(r.journal.clone())
        .start()
        .await
        .unwrap();
    assert!(ch.wait_connected(1, WAIT).await);
    let ch = Arc::new(ch);
    let h = ask(&ch, request_c1(1));
    let msg = approval(&r.fake, 0).await;
    r.click_refused("UBOB", &msg.ts, "agp_allow", "not_an_approver")
        .await;
    r.fake.click("UCAROL", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UCAROL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_shows_the_whole_input_to_the_clicker_only() {
    let r = rig().await;
    let mut req = request_c1(1);
    req.redacted_input =
        json!({"file_path": "/src/x", "content": format!("{}TAIL-MARKER", "a".repeat(3000))});
    let (_ch, h, msg) = r.asking(&["UALICE"], req).await;
    assert!(!msg.all_text().contains("TAIL-MARKER"));
    r.fake.click("UBOB", &msg.ts, "agp_details").unwrap();
    let e = r.expect_ephemeral("UBOB", "TAIL-MARKER").await;
    assert_eq!(e.thread_ts, msg.thread_ts);
    assert!(!h.is_finished(), "Details must not decide");
    r.alice_allows(&msg, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_mid_approval_reconnect_through_a_fresh_url() {
    let r = rig().await;
    let ch = r.channel(&["UALICE", "UBOB"]).await;
    let (h, msg) = alice_allowed_one_of_two(&r, &ch).await;
    // Slack asks for a refresh: a new apps.connections.open and a new socket.
    r.fake.disconnect("refresh_requested").unwrap();
    assert!(r.fake.wait_hellos(2, WAIT).await);
    // The connection dies without a close frame: reconnect with backoff.
    r.fake.drop_connection().unwrap();
    assert!(r.fake.wait_hellos(3, WAIT).await);
    assert!(ch.wait_connected(3, WAIT).await);
    assert_eq!(
        r.fake.connection_opens(),
        3,
        "each connection needs a fresh single-use URL"
    );
    assert!(!h.is_finished());
    let env = r.fake.click("UBOB", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE", "UBOB"]);
    assert!(r.fake.acked(&env));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_reattaches_to_the_posted_approval() {
    let r = rig().await;
    let req = request_c1(2);
    let msg = {
        let first = r.channel(&["UALICE", "UBOB"]).await;
        let h = ask(&first, req.clone());
        let msg = approval(&r.fake, 0).await;
        r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
        r.expect_ephemeral("UALICE", "1 of 2").await;
        // The daemon dies: the waiting future and the socket go away.
        h.abort();
        drop(first);
        msg
    };
    let posted_before = r.fake.messages().len();
    // A new process opens the same state.db.
    let dir_db = SqliteStore::open(&r.dir.path().join("state.db")).unwrap();
    assert_eq!(dir_db.undecided().unwrap().len(), 1);
    let second = Arc::new(
        SlackChannel::builder(config(&r.fake, &["UALICE", "UBOB"]), Arc::new(dir_db))
            .journal(r.journal.clone())
            .start()
            .await
            .unwrap(),
    );
    assert!(second.wait_connected(1, WAIT).await);
    let h = ask(&second, req);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        r.fake.messages().len(),
        posted_before,
        "the approval was posted again"
    );
    r.fake.click("UBOB", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE", "UBOB"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out() {
    let r = rig().await;
    r.fake.rate_limit("auth.test", 1, 1);
    r.fake.rate_limit("chat.postMessage", 2, 1);
    let ch = r.channel(&["UALICE"]).await;
    let auth = r.fake.calls("auth.test");
    assert_eq!(auth.len(), 2);
    assert!(
        auth[1] - auth[0] >= Duration::from_secs(1),
        "Retry-After was not respected"
    );
    let h = ask(&ch, request_c1(1));
    let msg = approval(&r.fake, 0).await;
    let posts = r.fake.calls("chat.postMessage");
    assert!(posts.len() >= 3);
    assert!(posts[1] - posts[0] >= Duration::from_secs(1));
    r.alice_allows(&msg, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_fails_closed_after_the_timeout() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    r.fake.fail("chat.postMessage", 1000, "service_unavailable");
    let o = ch
        .request_approval(&request("c1", 1, Duration::from_millis(800)))
        .await
        .unwrap();
    assert!(
        matches!(&o, ApprovalOutcome::Unavailable { reason } if reason.contains("service_unavailable")),
        "{o:?}"
    );
    let e = ch.project(Some("sess-2"), &ended("sess-2").into()).await;
    assert!(
        e.is_err(),
        "a failed projection must be reported for the outbox to retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_are_ignored_and_the_channel_keeps_working() {
    let r = rig().await;
    let (_ch, h, msg) = r.asking(&["UALICE"], request_c1(1)).await;
    for junk in [
        "not json at all",
        "[1,2,3]",
        r#"{"type":"interactive"}"#,
        r#"{"envelope_id":"junk-1","type":"interactive","payload":"nope"}"#,
        r#"{"envelope_id":"junk-2","type":"interactive","payload":{"type":"block_actions","actions":[]}}"#,
        r#"{"envelope_id":"junk-3","type":"interactive","payload":{"type":"block_actions","user":{"id":"UALICE"},"actions":[{"action_id":"agp_allow"}]}}"#,
        r#"{"envelope_id":"junk-4","type":"events_api","payload":{"event":{"type":"message"}}}"#,
        r#"{"envelope_id":"junk-5","type":"something_new"}"#,
    ] {
        r.fake.send_raw(junk).unwrap();
    }
    for id in ["junk-1", "junk-2", "junk-3", "junk-4", "junk-5"] {
        assert!(r.fake.wait_ack(id, WAIT).await, "{id} not acknowledged");
    }
    assert_eq!(r.fake.hellos(), 1, "garbage must not cost the connection");
    assert!(!h.is_finished());
    r.alice_allows(&msg, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_at_start_without_leaking_them() {
    let fake = FakeSlack::start().await.unwrap();
    let mut cfg = config(&fake, &["UALICE"]);
    cfg.bot_token = Secret::new("xoxb-wrong-secret-value");
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let err = SlackChannel::builder(cfg, store).start().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid_auth"), "{text}");
    assert!(!text.contains("wrong-secret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_approval_still_loses_its_buttons_at_expiry() {
    let r = rig().await;
    let (_ch, h, msg) = r
        .asking(&["UALICE"], request("c1", 1, Duration::from_millis(1200)))
        .await;
    // The daemon gives up on the call (its own timeout, a cancelled session).
    h.abort();
    wait_final(&r.fake, &msg.ts, "Timed out").await;
    r.fake.click("UALICE", &msg.ts, "agp_allow").ok();
    let stored = r.store.undecided().unwrap();
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_that_expired_while_the_daemon_was_down_are_closed_on_start() {
    let r = rig().await;
    // The first daemon runs on a runtime of its own, killed (shut down with every task and
    // timer) after posting: as close to SIGKILL as a test in one process gets.
    let cfg = config(&r.fake, &["UALICE"]);
    let store = r.store.clone();
    let req = request("c1", 1, Duration::from_millis(1500));
    std::thread::spawn(move || {
        let rt = super::killable_runtime();
        rt.block_on(async {
            let ch = SlackChannel::builder(cfg, store.clone())
                .start()
                .await
                .unwrap();
            let ch = Arc::new(ch);
            let _h = ask(&ch, req);
            for _ in 0..400 {
                if store
                    .undecided()
                    .unwrap()
                    .iter()
                    .any(|r| r.message_ts.is_some())
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("approval never posted");
        });
        rt.shutdown_background();
    })
    .join()
    .unwrap();
    let msg = approval(&r.fake, 0).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        r.store.undecided().unwrap().len(),
        1,
        "the killed daemon decided nothing"
    );
    assert!(r.fake.message(&msg.ts).unwrap().has_buttons());
    let _second = r.channel(&["UALICE"]).await;
    wait_final(&r.fake, &msg.ts, "Timed out").await;
    assert!(r.store.undecided().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_disabled_backs_off_then_reconnects_and_bad_urls_are_retried() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    assert!(r.fake.wait_hellos(1, WAIT).await);
    r.fake.disconnect("link_disabled").unwrap();
    assert!(r.fake.wait_hellos(2, WAIT).await);
    // apps.connections.open failing (e.g. Socket Mode off) is retried with backoff.
    r.fake.fail("apps.connections.open", 2, "invalid_auth");
    r.fake.drop_connection().unwrap();
    assert!(r.fake.wait_hellos(3, WAIT).await);
    assert!(r.fake.calls("apps.connections.open").len() >= 5);
    let h = ask(&ch, request_c1(1));
    let msg = approval(&r.fake, 0).await;
    r.alice_allows(&msg, h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_do_not_cross() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let mut req = request(&format!("c{i}"), 1, Duration::from_secs(30));
        req.input_sha256 = format!("{i:02}").repeat(32);
        handles.push(ask(&ch, req));
    }
    let mut msgs = Vec::new();
    for i in 0..8 {
        msgs.push(approval(&r.fake, i).await);
    }
    // Even calls allowed, odd denied, clicked in reverse order.
    for m in msgs.iter().rev() {
        let call = serde_json::from_str::<Value>(&button_value(m, "agp_allow")).unwrap()["h"]
            .as_str()
            .unwrap()[..2]
            .parse::<usize>()
            .unwrap();
        let action = if call % 2 == 0 {
            "agp_allow"
        } else {
            "agp_deny"
        };
        r.fake.click("UALICE", &m.ts, action).unwrap();
    }
    for (i, h) in handles.into_iter().enumerate() {
        let o = outcome(h).await;
        assert_eq!(o.is_granted(), i % 2 == 0, "call c{i}: {o:?}");
    }
    // All in the same session thread, one root.
    assert_eq!(r.fake.roots().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_racing_the_post_reply_waits_for_it_instead_of_being_refused() {
    let r = rig().await;
    let ch = r.channel(&["UALICE"]).await;
    // The message exists in Slack (people can click) before agp learns its ts.
    r.fake.delay("chat.postMessage", Duration::from_millis(700));
    let h = ask(&ch, request_c1(1));
    let msg = approval(&r.fake, 0).await;
    r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE"]);
    assert!(
        r.journal.rejections().is_empty(),
        "{:?}",
        r.journal.rejections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_a_connection_being_refreshed_is_still_acknowledged_and_counted() {
    let r = rig().await;
    let (_ch, h, msg) = r.asking(&["UALICE"], request_c1(1)).await;
    // Slack announces the refresh but still delivers on the old connection for a while.
    r.fake.disconnect_soft("refresh_requested").unwrap();
    let env = r.fake.click("UALICE", &msg.ts, "agp_allow").unwrap();
    assert!(
        r.fake.wait_ack(&env, WAIT).await,
        "the click on the old connection was dropped"
    );
    assert_eq!(granted_ids(&outcome(h).await), ["UALICE"]);
    assert!(
        r.fake.wait_hellos(2, WAIT).await,
        "no replacement connection"
    );
}

fn ended(session: &str) -> SessionEnded {
    SessionEnded {
        session: session.into(),
        status: "completed".into(),
        lease_held: true,
    }
}
