//! The store contract suite: every test in `contract!` runs against SQLite and against a
//! throwaway PostgreSQL server (agp-testkit; skipped loudly without one, failed under CI).
//! Tests only PostgreSQL can have (many members, the server going away) follow.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agp_testkit::postgres::PgServer;

use super::contract::{wait_hint, StateStore, Topic};
use super::*;

/// A store under test, and what keeps it alive.
struct Backend {
    store: Arc<dyn StateStore>,
    server: Option<Arc<PgServer>>,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl Backend {
    async fn sqlite() -> Option<Backend> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        Some(Backend {
            store: Arc::new(SqliteStore::new(Arc::new(store), "host-a")),
            server: None,
            dir: Some(dir),
        })
    }

    async fn postgres() -> Option<Backend> {
        let server = Arc::new(
            tokio::task::spawn_blocking(PgServer::start_new)
                .await
                .unwrap()?,
        );
        let store = PgStore::connect(&server.url(), "host-a").await.unwrap();
        Some(Backend {
            store: Arc::new(store),
            server: Some(server),
            dir: None,
        })
    }

    /// Another handle on the same state (its own connections), as member `member`.
    async fn another(&self, member: &str) -> Arc<dyn StateStore> {
        match (&self.server, &self.dir) {
            (Some(server), _) => Arc::new(PgStore::connect(&server.url(), member).await.unwrap()),
            (None, Some(dir)) => {
                let store = Store::open(&dir.path().join("state.db")).unwrap();
                Arc::new(SqliteStore::new(Arc::new(store), member))
            }
            (None, None) => unreachable!("a backend has a server or a directory"),
        }
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::sqlite().await.unwrap();
                    super::$name(&b).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(b) = super::Backend::postgres().await else { return };
                    super::$name(&b).await;
                }
            )*
        }
    };
}

contract!(
    migrations_are_current,
    a_stale_fencing_token_is_refused,
    expired_leases_and_orphans_are_ended_once,
    replayed_call_ids_are_refused_per_session,
    a_pending_approval_resolves_once_and_only_for_its_binding,
    a_remembered_answer_matches_only_its_exact_key_until_it_expires,
    outbox_retries_dead_letters_and_prunes,
    two_claimers_get_each_outbox_row_once,
    a_pending_approval_is_relayed_by_one_relay_at_a_time,
    writes_wake_up_waiters,
    unconfined_sessions_are_listed,
);

async fn open_session(s: &dyn StateStore, id: &str, owner: &str, now: i64) {
    s.insert_session(
        id,
        "scripted",
        "/r",
        "",
        "gate",
        &format!("t-{id}"),
        owner,
        now,
    )
    .await
    .unwrap();
}

async fn migrations_are_current(b: &Backend) {
    let expected = match b.store.backend() {
        "sqlite" => SCHEMA_VERSION,
        _ => PG_MIGRATIONS.len() as i64,
    };
    assert_eq!(b.store.schema_version().await.unwrap(), expected);
    // A second opener finds it current and changes nothing.
    let again = b.another("host-a").await;
    assert_eq!(again.schema_version().await.unwrap(), expected);
}

async fn a_stale_fencing_token_is_refused(b: &Backend) {
    let s = &*b.store;
    open_session(s, "s1", "d1", 1000).await;
    assert_eq!(s.claim_lease("s1", "d2", 2000).await.unwrap(), Some(2));
    let row = s.session("s1").await.unwrap().unwrap();
    assert_eq!((row.lease_owner.as_str(), row.fencing_token), ("d2", 2));
    // The old owner (token 1) can no longer end it; the new one can, once.
    assert!(!s.end_session("s1", "completed", 1, 3000).await.unwrap());
    assert!(s.end_session("s1", "completed", 2, 3000).await.unwrap());
    assert!(!s.end_session("s1", "completed", 2, 3001).await.unwrap());
    assert_eq!(s.claim_lease("s1", "d3", 4000).await.unwrap(), None);
    assert_eq!(s.claim_lease("nope", "d3", 4000).await.unwrap(), None);
    let row = s.session("s1").await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.ended_at_ms),
        ("completed", Some(3000))
    );
    assert!(s.active_session_by_token("t-s1").await.unwrap().is_none());
}

async fn expired_leases_and_orphans_are_ended_once(b: &Backend) {
    let s = &*b.store;
    open_session(s, "old", "daemon-1", 1000).await;
    open_session(s, "fresh", "daemon-1", 5000).await;
    open_session(s, "run", "run-7", 5000).await;
    assert_eq!(s.heartbeat("daemon-1", 5500).await.unwrap(), 2);
    let reaped = s.reap_expired(5200, 6000).await.unwrap();
    assert_eq!(
        reaped.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run"]
    );
    // Returned as they were before.
    assert_eq!(reaped[0].status, "active");
    assert!(s.reap_expired(5200, 6000).await.unwrap().is_empty());
    open_session(s, "run2", "run-8", 7000).await;
    let orphans = s.end_orphans("run-", 8000).await.unwrap();
    assert_eq!(
        orphans.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["run2"]
    );
    assert_eq!(
        s.session("run2").await.unwrap().unwrap().status,
        "interrupted"
    );
    assert_eq!(s.session("run").await.unwrap().unwrap().status, "reaped");
    let active: Vec<_> = s
        .sessions()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "active")
        .map(|r| r.id)
        .collect();
    assert_eq!(active, ["old", "fresh"]);
    assert!(s
        .active_session_by_token("t-fresh")
        .await
        .unwrap()
        .is_some());
}

async fn replayed_call_ids_are_refused_per_session(b: &Backend) {
    let s = &*b.store;
    assert!(s.record_call("s1", "c1", 1).await.unwrap());
    assert!(!s.record_call("s1", "c1", 2).await.unwrap());
    assert!(s.record_call("s2", "c1", 2).await.unwrap());
    assert!(s.call_seen("s1", "c1").await.unwrap());
    assert!(!s.call_seen("s1", "c2").await.unwrap());
    // Another daemon on the same state sees the replay too.
    let other = b.another("host-a").await;
    assert!(!other.record_call("s1", "c1", 3).await.unwrap());
}

fn pending_row(session: &str, call: &str, hash: &str) -> PendingRow {
    PendingRow {
        session: session.into(),
        call_id: call.into(),
        input_sha256: hash.into(),
        request_json: format!("{{\"call\":\"{call}\"}}"),
        expires_at_ms: 10_000,
    }
}

async fn a_pending_approval_resolves_once_and_only_for_its_binding(b: &Backend) {
    let s = &*b.store;
    let row = pending_row("s1", "c1", "aa");
    s.insert_pending(&row, 1).await.unwrap();
    assert!(s.insert_pending(&row, 2).await.is_err(), "one per call id");
    assert_eq!(s.pending().await.unwrap(), vec![row]);
    assert!(!s
        .resolve_pending("s1", "c1", "bb", "granted", 2)
        .await
        .unwrap());
    assert!(!s
        .resolve_pending("s2", "c1", "aa", "granted", 2)
        .await
        .unwrap());
    assert!(s
        .resolve_pending("s1", "c1", "aa", "granted", 2)
        .await
        .unwrap());
    assert!(!s
        .resolve_pending("s1", "c1", "aa", "denied", 3)
        .await
        .unwrap());
    assert!(s.pending().await.unwrap().is_empty());
}

async fn a_remembered_answer_matches_only_its_exact_key_until_it_expires(b: &Backend) {
    let s = &*b.store;
    let key = RememberedKey {
        session: "s1".into(),
        rule_id: "r1".into(),
        tool: "Bash".into(),
        cwd: "/r".into(),
        input_sha256: "ab".into(),
        policy_sha256: "p1".into(),
    };
    s.remember_approval(&key, "[1]", "c1", 1000, 2000)
        .await
        .unwrap();
    let got = s.remembered_approval(&key, 1999).await.unwrap();
    assert_eq!(got.as_deref(), Some("[1]"));
    let differs: [fn(&mut RememberedKey); 6] = [
        |k| k.session = "s2".into(),
        |k| k.rule_id = "r2".into(),
        |k| k.tool = "Write".into(),
        |k| k.cwd = "/r/sub".into(),
        |k| k.input_sha256 = "cd".into(),
        |k| k.policy_sha256 = "p2".into(),
    ];
    for change in differs {
        let mut other = key.clone();
        change(&mut other);
        assert_eq!(
            s.remembered_approval(&other, 1500).await.unwrap(),
            None,
            "{other:?}"
        );
    }
    // Renewed in place, not duplicated.
    s.remember_approval(&key, "[1,2]", "c2", 1100, 2500)
        .await
        .unwrap();
    assert_eq!(s.count_remembered().await.unwrap(), 1);
    let got = s.remembered_approval(&key, 2200).await.unwrap();
    assert_eq!(got.as_deref(), Some("[1,2]"));
    // At its expiry it is gone, and stays gone.
    assert_eq!(s.remembered_approval(&key, 2500).await.unwrap(), None);
    assert_eq!(s.remembered_approval(&key, 1500).await.unwrap(), None);
    assert_eq!(s.count_remembered().await.unwrap(), 0);

    s.remember_approval(&key, "[1]", "c1", 1000, 5000)
        .await
        .unwrap();
    let mut other = key.clone();
    other.input_sha256 = "cd".into();
    s.remember_approval(&other, "[2]", "c2", 1000, 5000)
        .await
        .unwrap();
    assert_eq!(s.forget_remembered_key(&key).await.unwrap(), 1);
    assert_eq!(s.remembered_approval(&key, 1500).await.unwrap(), None);
    assert!(s.remembered_approval(&other, 1500).await.unwrap().is_some());
    assert_eq!(s.forget_remembered("s1").await.unwrap(), 1);
    assert_eq!(s.count_remembered().await.unwrap(), 0);
}

async fn outbox_retries_dead_letters_and_prunes(b: &Backend) {
    let s = &*b.store;
    let id = s
        .enqueue_outbox("session.started", Some("s1"), "{}", 100)
        .await
        .unwrap();
    let due = s.due_outbox(100, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (
            due[0].kind.as_str(),
            due[0].session.as_deref(),
            due[0].attempts
        ),
        ("session.started", Some("s1"), 0)
    );
    s.outbox_failed(id, "down", 200, false).await.unwrap();
    assert!(s.due_outbox(150, 10).await.unwrap().is_empty());
    assert_eq!(s.due_outbox(200, 10).await.unwrap()[0].attempts, 1);
    s.outbox_failed(id, "down", 400, true).await.unwrap();
    assert!(s.due_outbox(1000, 10).await.unwrap().is_empty());
    let delivered = s.enqueue_outbox("k", None, "{}", 10).await.unwrap();
    s.outbox_delivered(delivered).await.unwrap();
    assert_eq!(s.outbox_counts().await.unwrap(), (0, 1, 1));

    open_session(s, "old", "d1", 10).await;
    open_session(s, "live", "d1", 10).await;
    s.record_call("old", "c1", 10).await.unwrap();
    s.record_call("live", "c1", 10).await.unwrap();
    assert!(s.end_session("old", "completed", 1, 20).await.unwrap());
    s.insert_pending(&pending_row("live", "p1", "h"), 10)
        .await
        .unwrap();
    s.insert_pending(&pending_row("live", "p2", "h"), 10)
        .await
        .unwrap();
    s.resolve_pending("live", "p1", "h", "granted", 20)
        .await
        .unwrap();
    // The old session's call id, the delivered projection, the settled approval.
    assert_eq!(s.prune(1000).await.unwrap(), 3);
    assert!(s.call_seen("live", "c1").await.unwrap());
    assert!(!s.call_seen("old", "c1").await.unwrap());
    assert_eq!(s.pending().await.unwrap().len(), 1);
    assert_eq!(s.outbox_counts().await.unwrap(), (0, 0, 1));
    assert_eq!(s.sessions().await.unwrap().len(), 2);
}

async fn two_claimers_get_each_outbox_row_once(b: &Backend) {
    const ROWS: i64 = 120;
    let mut queued = BTreeSet::new();
    for i in 0..ROWS {
        let id = b
            .store
            .enqueue_outbox("k", None, &format!("{{\"i\":{i}}}"), 100)
            .await
            .unwrap();
        queued.insert(id);
    }
    let claimers = [b.another("host-a").await, b.another("host-b").await];
    let tasks: Vec<_> = claimers
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let rows = s.claim_outbox(1000, 60_000, 7).await.unwrap();
                    if rows.is_empty() {
                        return got;
                    }
                    got.extend(rows.into_iter().map(|r| r.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for task in tasks {
        let got = task.await.unwrap();
        total += got.len();
        seen.extend(got);
    }
    assert_eq!(total, ROWS as usize, "no row was claimed twice");
    assert_eq!(seen, queued, "every row was claimed");
    // Claimed rows are leased: not due again until the lease ends, then claimable again.
    assert!(b
        .store
        .claim_outbox(59_999, 120_000, 500)
        .await
        .unwrap()
        .is_empty());
    let again = b.store.claim_outbox(60_000, 120_000, 500).await.unwrap();
    assert_eq!(again.len(), ROWS as usize);
}

async fn a_pending_approval_is_relayed_by_one_relay_at_a_time(b: &Backend) {
    let s = &*b.store;
    for call in ["c1", "c2", "c3"] {
        s.insert_pending(&pending_row("s1", call, "h"), 10)
            .await
            .unwrap();
    }
    let calls = |rows: Vec<PendingRow>| rows.into_iter().map(|r| r.call_id).collect::<Vec<_>>();
    assert_eq!(
        calls(s.claim_pending_relay("r1", 100, 1000, 2).await.unwrap()),
        ["c1", "c2"]
    );
    assert_eq!(
        calls(s.claim_pending_relay("r2", 100, 1000, 10).await.unwrap()),
        ["c3"]
    );
    assert!(
        s.claim_pending_relay("r2", 999, 1000, 10)
            .await
            .unwrap()
            .len()
            == 1
    );
    // A relay renews its own claims; settled approvals are never handed out.
    assert!(s
        .resolve_pending("s1", "c1", "h", "granted", 200)
        .await
        .unwrap());
    assert_eq!(
        calls(s.claim_pending_relay("r1", 300, 2000, 10).await.unwrap()),
        ["c2"]
    );
    // r1 died: once its lease ran out, r2 takes its approvals over.
    assert_eq!(
        calls(s.claim_pending_relay("r2", 2000, 3000, 10).await.unwrap()),
        ["c2", "c3"]
    );
}

async fn writes_wake_up_waiters(b: &Backend) {
    let mut outbox = b.store.wakeups(Topic::Outbox);
    let mut approvals = b.store.wakeups(Topic::Approvals);
    outbox.mark_unchanged();
    approvals.mark_unchanged();
    b.store.enqueue_outbox("k", None, "{}", 1).await.unwrap();
    // Bounded only as a guard against hanging: the hint is expected at once.
    tokio::time::timeout(Duration::from_secs(30), outbox.changed())
        .await
        .expect("an outbox write wakes the outbox waiters")
        .unwrap();
    b.store
        .insert_pending(&pending_row("s1", "c1", "h"), 1)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), approvals.changed())
        .await
        .expect("a pending approval wakes the approval waiters")
        .unwrap();
    // A waiter with nothing new returns after its poll.
    let mut idle = b.store.wakeups(Topic::Outbox);
    idle.mark_unchanged();
    wait_hint(&mut idle, Duration::from_millis(20)).await;
}

async fn unconfined_sessions_are_listed(b: &Backend) {
    let s = &*b.store;
    let ids = |v: Vec<UnconfinedSession>| {
        v.into_iter()
            .map(|u| (u.id, u.agent_confined))
            .collect::<Vec<_>>()
    };
    open_session(s, "s-hook", "o", 1).await;
    s.set_agent_confined("s-hook", false).await.unwrap();
    open_session(s, "s-sandboxed", "o", 1).await;
    s.set_agent_confined("s-sandboxed", true).await.unwrap();
    open_session(s, "s-old", "o", 1).await;
    let both = [("s-hook".to_string(), Some(false)), ("s-old".into(), None)];
    assert_eq!(ids(s.unconfined_sessions(None).await.unwrap()), both);
    assert!(s.end_session("s-hook", "completed", 1, 20).await.unwrap());
    assert!(s.end_session("s-old", "completed", 1, 30).await.unwrap());
    assert!(ids(s.unconfined_sessions(None).await.unwrap()).is_empty());
    assert_eq!(ids(s.unconfined_sessions(Some(20)).await.unwrap()), both);
    assert_eq!(
        ids(s.unconfined_sessions(Some(25)).await.unwrap()),
        [("s-old".to_string(), None)]
    );
}

// PostgreSQL only: several members on one database, and the server going away.

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
