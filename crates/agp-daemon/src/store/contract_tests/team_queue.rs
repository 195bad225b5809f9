//! PostgreSQL only: the team's approval queue (channel lease, fencing, relayed outcomes).

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest, Approver};
use agp_testkit::postgres::PgServer;

use super::super::contract::StateStore;
use super::super::*;
use super::pending_row;
use crate::team::TeamChannel;

/// A throwaway server and two members' stores on it.
async fn two_members() -> Option<(Arc<PgServer>, Arc<PgStore>, Arc<PgStore>)> {
    // On this thread, not the blocking pool's: the server is tied to the life of the thread
    // that started it (PR_SET_PDEATHSIG), and idle pool threads end after 10 s.
    let server = Arc::new(tokio::task::block_in_place(PgServer::start_new)?);
    let a = PgStore::connect(&server.url(), "host-a").await.unwrap();
    let b = PgStore::connect(&server.url(), "host-b").await.unwrap();
    Some((server, Arc::new(a), Arc::new(b)))
}

/// Waits (not a timed assert: only what the database's clock says) until `lease` expired.
async fn until_expired(store: &PgStore, name: &str) {
    while store.channel_lease(name).await.unwrap().unwrap().live {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_a_takeover_bumps_the_fencing_token() {
    let Some((_server, a, b)) = two_members().await else {
        return;
    };
    let mut la = a
        .acquire_channel_lease("slack", "host-a#1", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(la.fencing_token, 1);
    // Live and someone else's: refused, however often asked.
    for _ in 0..3 {
        assert_eq!(
            b.acquire_channel_lease("slack", "host-b#1", 60_000)
                .await
                .unwrap(),
            None
        );
    }
    assert!(a.renew_channel_lease(&mut la, 60_000).await.unwrap());
    let seen = b.channel_lease("slack").await.unwrap().unwrap();
    assert_eq!((seen.holder.as_str(), seen.live), ("host-a#1", true));

    // The holder stops renewing (dies): once expired, another takes it with a new token, and
    // the old holder's renewal is refused.
    let mut short = a
        .acquire_channel_lease("slack", "host-a#1", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(short.fencing_token, 2, "re-acquiring bumps the token too");
    until_expired(&b, "slack").await;
    let lb = b
        .acquire_channel_lease("slack", "host-b#1", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lb.fencing_token, 3);
    assert!(!a.renew_channel_lease(&mut short, 60_000).await.unwrap());
    assert!(!a.renew_channel_lease(&mut la, 60_000).await.unwrap());

    // Released on a clean stop: the next daemon takes it at once.
    b.release_channel_lease(&lb).await.unwrap();
    let again = a
        .acquire_channel_lease("slack", "host-a#2", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.fencing_token, 4);
    // A release by a holder that lost the lease changes nothing.
    b.release_channel_lease(&lb).await.unwrap();
    assert!(a.channel_lease("slack").await.unwrap().unwrap().live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_the_lease_writes_nothing() {
    let Some((_server, a, b)) = two_members().await else {
        return;
    };
    let row = pending_row("sa", "c1", "h1");
    a.insert_pending(&row, 1).await.unwrap();
    let stale = a
        .acquire_channel_lease("slack", "host-a#1", 1)
        .await
        .unwrap()
        .unwrap();
    until_expired(&b, "slack").await;
    // Expired, not yet taken over: already refused.
    assert!(a.claim_team_approvals(&stale, 10).await.unwrap().is_empty());
    let fresh = b
        .acquire_channel_lease("slack", "host-b#1", 60_000)
        .await
        .unwrap()
        .unwrap();

    // Every write of the stale holder is refused in the statement itself.
    let granted = r#"{"outcome":"granted","by":[{"id":"U1","name":"A","via":"slack"}]}"#;
    assert_eq!(
        a.relay_outcome(&stale, &row, granted).await.unwrap(),
        RelayWrite::Fenced
    );
    assert!(!a
        .save_channel_record(&stale, "n1", "sa", "c1", "h1", false, 10_000, "{}")
        .await
        .unwrap());
    assert!(!a.set_channel_root(&stale, "sa", "C1", "1.0").await.unwrap());
    assert!(a.claim_team_approvals(&stale, 10).await.unwrap().is_empty());
    assert_eq!(a.relayed_outcome("sa", "c1", "h1").await.unwrap(), None);

    // The holder relays: the row is claimed once, the outcome written once, and a settled
    // approval is not claimed again.
    assert!(b
        .save_channel_record(&fresh, "n1", "sa", "c1", "h1", false, 10_000, "{\"v\":1}")
        .await
        .unwrap());
    assert_eq!(
        a.channel_record("slack", "n1").await.unwrap().as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(
        a.channel_record_for_call("slack", "sa", "c1", "h1")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"v\":1}")
    );
    assert_eq!(a.undecided_channel_records("slack").await.unwrap().len(), 1);
    assert!(b.set_channel_root(&fresh, "sa", "C1", "1.0").await.unwrap());
    assert_eq!(
        a.channel_root("slack", "sa").await.unwrap().as_deref(),
        Some("1.0")
    );
    let claimed = b.claim_team_approvals(&fresh, 10).await.unwrap();
    assert_eq!(claimed, std::slice::from_ref(&row));
    assert_eq!(
        b.relay_outcome(&fresh, &row, granted).await.unwrap(),
        RelayWrite::Written
    );
    assert_eq!(
        b.relay_outcome(&fresh, &row, r#"{"outcome":"timeout"}"#)
            .await
            .unwrap(),
        RelayWrite::Settled,
        "an outcome is written once"
    );
    assert_eq!(
        a.relayed_outcome("sa", "c1", "h1")
            .await
            .unwrap()
            .as_deref(),
        Some(granted)
    );
    // Bound to the input: another hash has no outcome.
    assert_eq!(a.relayed_outcome("sa", "c1", "h2").await.unwrap(), None);
    assert!(b.claim_team_approvals(&fresh, 10).await.unwrap().is_empty());
}

fn request(session: &str, call: &str, hash: &str) -> ApprovalRequest {
    ApprovalRequest {
        session: session.into(),
        call_id: call.into(),
        tool: "Bash".into(),
        redacted_input: serde_json::json!({"command": "mkdir x"}),
        input_sha256: hash.into(),
        rule_id: None,
        reason: "r".into(),
        approvers: vec![],
        quorum: 1,
        expires_at_ms: u64::MAX / 4,
        remember_secs: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asking_daemon_gets_the_outcome_another_daemon_relayed() {
    let Some((_server, a, b)) = two_members().await else {
        return;
    };
    let row = pending_row("sa", "c1", "h1");
    a.insert_pending(&row, 1).await.unwrap();
    let channel = Arc::new(TeamChannel::new(a.clone(), "slack"));
    let waiting = {
        let channel = channel.clone();
        tokio::spawn(async move {
            channel
                .request_approval(&request("sa", "c1", "h1"))
                .await
                .unwrap()
        })
    };
    let lease = b
        .acquire_channel_lease("slack", "host-b#1", 60_000)
        .await
        .unwrap()
        .unwrap();
    let by = Approver {
        id: "UALICE".into(),
        name: "Alice".into(),
        via: "slack".into(),
    };
    let outcome = ApprovalOutcome::Denied { by, reason: None };
    let json = serde_json::to_string(&outcome).unwrap();
    assert_eq!(
        b.relay_outcome(&lease, &row, &json).await.unwrap(),
        RelayWrite::Written
    );
    assert_eq!(waiting.await.unwrap(), outcome);
    // Asked again (a restarted daemon re-attaching), the stored outcome is there at once.
    assert_eq!(
        channel
            .request_approval(&request("sa", "c1", "h1"))
            .await
            .unwrap(),
        outcome
    );
}
