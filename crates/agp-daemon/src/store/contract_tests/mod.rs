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

mod postgres_only;
mod postgres_tls;
mod team_queue;
