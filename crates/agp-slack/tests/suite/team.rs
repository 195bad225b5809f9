//! Team mode in process: relays of two daemons on one throwaway PostgreSQL and the fake Slack.
//! A relay that is stopped hands the lease over at once; an approval its daemon settled
//! itself is withdrawn from Slack; a holder that lost the lease can write no Slack record.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::{ApprovalRequest, Approver};
use agp_daemon::store::{PendingRow, PgStore, StateStore};
use agp_slack::fake::FakeSlack;
use agp_slack::pending::{PendingRecord, PendingStore, StoreError};
use agp_slack::team::{PgPendingStore, RelayOptions, SlackRelay, CHANNEL};
use agp_testkit::postgres::PgServer;

use super::daemon_loop::{slack_config, WAIT};

fn request(call: &str) -> ApprovalRequest {
    ApprovalRequest {
        session: "s-team".into(),
        call_id: call.into(),
        tool: "Bash".into(),
        redacted_input: serde_json::json!({"command": format!("mkdir {call}")}),
        input_sha256: "ab".repeat(32),
        rule_id: Some("r".into()),
        reason: "needs a human".into(),
        approvers: vec![],
        quorum: 1,
        expires_at_ms: u64::MAX / 4,
        remember_secs: None,
    }
}

fn row(r: &ApprovalRequest) -> PendingRow {
    PendingRow {
        session: r.session.clone(),
        call_id: r.call_id.clone(),
        input_sha256: r.input_sha256.clone(),
        request_json: serde_json::to_string(r).unwrap(),
        expires_at_ms: i64::MAX / 4,
    }
}

async fn holder(store: &PgStore) -> Option<String> {
    let lease = store.channel_lease(CHANNEL).await.unwrap()?;
    lease.live.then_some(lease.holder)
}

async fn wait_holder(store: &PgStore, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while holder(store).await.as_deref() != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{want} never held the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_hands_over_and_a_settled_approval_is_withdrawn() {
    // On this thread: the server lives as long as the thread that started it.
    let Some(server) = tokio::task::block_in_place(PgServer::start_new) else {
        return;
    };
    let slack = FakeSlack::start().await.unwrap();
    slack.add_user("UALICE", "Alice");
    let a = Arc::new(PgStore::connect(&server.url(), "host-a").await.unwrap());
    let b = Arc::new(PgStore::connect(&server.url(), "host-b").await.unwrap());
    let options = RelayOptions::default();
    let first = SlackRelay::start(a.clone(), slack_config(&slack), None, "a#1".into(), options);
    wait_holder(&a, "a#1").await;
    let second = SlackRelay::start(b.clone(), slack_config(&slack), None, "b#1".into(), options);

    // Posted by the first holder.
    let asked = request("c1");
    b.insert_pending(&row(&asked), 1).await.unwrap();
    let msg = slack.wait_approval(0, WAIT).await.expect("posted");
    assert!(msg.has_buttons());
    // Handed over once the message is on record (a holder stopped between posting and
    // recording would leave its successor to post again: the window every Slack post has).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = a
            .channel_record_for_call(CHANNEL, "s-team", "c1", &asked.input_sha256)
            .await
            .unwrap()
            .map(|j| serde_json::from_str::<PendingRecord>(&j).unwrap());
        if stored.and_then(|r| r.message_ts).as_deref() == Some(msg.ts.as_str()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A clean stop releases the lease: the other daemon takes it without waiting for expiry.
    first.stop(Duration::from_secs(5)).await;
    wait_holder(&b, "b#1").await;
    assert!(slack.wait_hellos(2, WAIT).await);

    // The asking daemon settles the approval itself (its session stopped): the new holder
    // withdraws the prompt it adopted, and a click on it is refused.
    assert!(b
        .resolve_pending("s-team", "c1", &asked.input_sha256, "unavailable", 2)
        .await
        .unwrap());
    let withdrawn = slack
        .wait_message(WAIT, |m| m.ts == msg.ts && !m.has_buttons())
        .await;
    assert!(withdrawn.is_some(), "{:#?}", slack.messages());
    assert_eq!(
        slack
            .messages()
            .iter()
            .filter(|m| m.thread_ts.is_some())
            .count(),
        1,
        "adopted, never posted again"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_the_lease_writes_no_slack_record() {
    let Some(server) = tokio::task::block_in_place(PgServer::start_new) else {
        return;
    };
    let a = Arc::new(PgStore::connect(&server.url(), "host-a").await.unwrap());
    let stale = a
        .acquire_channel_lease(CHANNEL, "a#1", 1)
        .await
        .unwrap()
        .unwrap();
    while holder(&a).await.is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = a
        .acquire_channel_lease(CHANNEL, "b#1", 60_000)
        .await
        .unwrap()
        .unwrap();
    let record = PendingRecord {
        nonce: "n1".into(),
        request: request("c1"),
        channel: "C1".into(),
        thread_ts: None,
        message_ts: Some("1.1".into()),
        votes: vec![],
        for_session: vec![],
        outcome: None,
    };
    let old = PgPendingStore::new(a.clone(), stale);
    let new = PgPendingStore::new(a.clone(), fresh);
    // The blocking store, called off the runtime's workers as the channel does.
    let (old, new) = (Arc::new(old), Arc::new(new));
    let (o, n, r) = (old.clone(), new.clone(), record.clone());
    tokio::task::spawn_blocking(move || {
        assert!(matches!(o.save(&r), Err(StoreError::Fenced)));
        assert!(matches!(
            o.set_session_root("s-team", "C1", "1.0"),
            Err(StoreError::Fenced)
        ));
        assert_eq!(o.load("n1").unwrap(), None);
        n.save(&r).unwrap();
        // A vote the stale holder counted is not stored; the record stays as the holder left it.
        let mut voted = r.clone();
        voted.votes.push(Approver {
            id: "UALICE".into(),
            name: "Alice".into(),
            via: "slack".into(),
        });
        assert!(matches!(o.save(&voted), Err(StoreError::Fenced)));
        assert!(matches!(o.remove("n1"), Err(StoreError::Fenced)));
        assert_eq!(o.load("n1").unwrap(), Some(r.clone()));
        assert_eq!(o.undecided().unwrap(), [r]);
    })
    .await
    .unwrap();
}
