//! PostgreSQL only: several members on one database, and the server going away.

use std::time::Duration;

use agp_testkit::postgres::PgServer;

use super::super::contract::{StateStore, Topic};
use super::super::*;
use super::{open_session, pending_row, Backend};

async fn pg() -> Option<Backend> {
    Backend::postgres().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_the_team_but_settle_only_their_own() {
    let Some(b) = pg().await else { return };
    let (a, other) = (&*b.store, b.another("host-b").await);
    open_session(a, "sa", "run-1", 10).await;
    open_session(&*other, "sb", "run-1", 20).await;
    let team: Vec<_> = a
        .team_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.host, h.session.id))
        .collect();
    assert_eq!(
        team,
        [
            ("host-a".into(), "sa".into()),
            ("host-b".into(), "sb".into())
        ]
    );
    let mine = |v: Vec<SessionRow>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(mine(a.sessions().await.unwrap()), ["sa"]);
    // A session is served by its own host's daemon only.
    assert!(a.active_session_by_token("t-sb").await.unwrap().is_none());
    assert!(other
        .active_session_by_token("t-sb")
        .await
        .unwrap()
        .is_some());
    // Nor taken over from another host.
    assert_eq!(a.claim_lease("sb", "daemon-x", 25).await.unwrap(), None);
    assert_eq!(other.session("sb").await.unwrap().unwrap().fencing_token, 1);
    // A restarting daemon ends its own orphans, never a colleague's.
    assert_eq!(mine(a.end_orphans("run-", 30).await.unwrap()), ["sa"]);
    assert_eq!(other.session("sb").await.unwrap().unwrap().status, "active");
    assert!(a.reap_expired(i64::MAX, 40).await.unwrap().is_empty());
    // Pending approvals: each daemon re-attaches its own; any relay may claim any.
    a.insert_pending(&pending_row("sa", "c1", "h"), 1)
        .await
        .unwrap();
    other
        .insert_pending(&pending_row("sb", "c1", "h"), 2)
        .await
        .unwrap();
    assert_eq!(a.pending().await.unwrap().len(), 1);
    assert_eq!(other.pending().await.unwrap()[0].session, "sb");
    assert_eq!(
        a.claim_pending_relay("relay", 3, 100, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A PostgreSQL store whose LISTEN connection is up (its first hints are behind it).
async fn listening(
    server: &PgServer,
    member: &str,
) -> (PgStore, tokio::sync::watch::Receiver<u64>) {
    let store = PgStore::connect(&server.url(), member).await.unwrap();
    let mut listens = store.listens();
    wait_for(&mut listens, 1).await;
    (store, listens)
}

/// Waits until `rx` reaches `n`; bounded only as a guard against hanging.
async fn wait_for(rx: &mut tokio::sync::watch::Receiver<u64>, n: u64) {
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|v| *v >= n))
        .await
        .expect("reached in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_from_another_daemon_wakes_this_one() {
    let Some(b) = pg().await else { return };
    let (store, _) = listening(b.server.as_ref().unwrap(), "host-a").await;
    let mut rx = store.wakeups(Topic::Approvals);
    let other = b.another("host-b").await;
    other
        .insert_pending(&pending_row("sb", "c1", "h"), 1)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("NOTIFY from another member reaches this one")
        .unwrap();
    assert_eq!(
        store
            .claim_pending_relay("r", 2, 10, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_a_typed_error_and_a_restart_is_reconnected() {
    let Some(b) = pg().await else { return };
    let server = b.server.clone().unwrap();
    let (s, mut listens) = listening(&server, "host-a").await;
    open_session(&s, "s1", "d1", 10).await;
    assert!(s.record_call("s1", "c1", 11).await.unwrap());
    let hints = s.wakeups(Topic::Outbox);

    server.stop();
    for result in [
        s.record_call("s1", "c2", 12).await.map(|_| ()),
        s.session("s1").await.map(|_| ()),
        s.enqueue_outbox("k", None, "{}", 12).await.map(|_| ()),
    ] {
        let err = result.expect_err("no shared state: the call fails closed");
        assert!(err.is_unavailable(), "{err:?}");
        assert!(
            err.to_string().starts_with("shared state unavailable: "),
            "{err}"
        );
    }

    server.start().unwrap();
    // Reconnected on the next use: nothing was lost, nothing was half-written.
    assert!(
        !s.record_call("s1", "c1", 13).await.unwrap(),
        "still a replay"
    );
    assert!(s.record_call("s1", "c2", 13).await.unwrap());
    assert_eq!(s.session("s1").await.unwrap().unwrap().status, "active");
    // The listener reconnects and hints every topic: what was notified meanwhile is lost.
    wait_for(&mut listens, 2).await;
    assert!(
        hints.has_changed().unwrap(),
        "a reconnected listener hints a re-read"
    );
    // A restart while the pool holds connections is reconnected too.
    server.restart().unwrap();
    assert!(s.call_seen("s1", "c2").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(b) = pg().await else { return };
    let server = b.server.clone().unwrap();
    drop(b.store);
    let url = server.url();
    let opens: Vec<_> = (0..4)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, &format!("h{i}")).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            PG_MIGRATIONS.len() as i64
        );
    }
    let store = PgStore::connect(&url, "h").await.unwrap();
    store
        .execute(
            "INSERT INTO agp_schema_migrations (version) VALUES (1000)",
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        PgStore::connect(&url, "h").await,
        Err(StoreError::TooNew { found: 1000, .. })
    ));
}
