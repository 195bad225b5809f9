use super::*;

fn store_with_session() -> Store {
    let s = Store::open_in_memory().unwrap();
    s.insert_session("s1", "scripted", "/r", "", "proxy_exec", "th", "d1", 1000)
        .unwrap();
    s
}

#[test]
fn migrations_are_versioned_and_idempotent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.quick_check().unwrap(), "ok");
    drop(s);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    assert!(matches!(Store::open(&path), Err(StoreError::TooNew { .. })));
}

#[test]
fn replayed_call_ids_are_detected_per_session() {
    let s = store_with_session();
    assert!(s.record_call("s1", "c1", 1).unwrap());
    assert!(!s.record_call("s1", "c1", 2).unwrap());
    assert!(s.record_call("s2", "c1", 2).unwrap());
}

#[test]
fn fencing_token_guards_session_end() {
    let s = store_with_session();
    assert_eq!(s.claim_lease("s1", "d2", 2000).unwrap(), Some(2));
    // The old owner (token 1) can no longer end it.
    assert!(!s.end_session("s1", "ended", 1, 3000).unwrap());
    assert!(s.end_session("s1", "ended", 2, 3000).unwrap());
    assert_eq!(s.claim_lease("s1", "d3", 4000).unwrap(), None);
}

#[test]
fn expired_leases_are_reaped_once() {
    let s = store_with_session();
    s.insert_session("s2", "scripted", "/r", "", "gate", "th2", "d1", 5000)
        .unwrap();
    let reaped = s.reap_expired(3000, 6000).unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].id, "s1");
    assert_eq!(s.session("s1").unwrap().unwrap().status, "reaped");
    assert!(s.reap_expired(3000, 6000).unwrap().is_empty());
    assert!(s.active_session_by_token("th2").unwrap().is_some());
    assert!(s.active_session_by_token("th").unwrap().is_none());
}

#[test]
fn pending_approval_resolves_once_and_only_for_its_binding() {
    let s = store_with_session();
    let row = PendingRow {
        session: "s1".into(),
        call_id: "c1".into(),
        input_sha256: "aa".into(),
        request_json: "{}".into(),
        expires_at_ms: 10,
    };
    s.insert_pending(&row, 1).unwrap();
    assert_eq!(s.pending().unwrap(), vec![row]);
    assert!(!s.resolve_pending("s1", "c1", "bb", "granted", 2).unwrap());
    assert!(s.resolve_pending("s1", "c1", "aa", "granted", 2).unwrap());
    assert!(!s.resolve_pending("s1", "c1", "aa", "denied", 3).unwrap());
    assert!(s.pending().unwrap().is_empty());
}

#[test]
fn prune_keeps_live_sessions_pending_approvals_and_dead_letters() {
    let s = store_with_session();
    s.insert_session("old", "scripted", "/r", "", "gate", "t-old", "d1", 10)
        .unwrap();
    s.record_call("s1", "c1", 10).unwrap();
    s.record_call("old", "c1", 10).unwrap();
    assert!(s.end_session("old", "completed", 1, 20).unwrap());
    let row = |call: &str| PendingRow {
        session: "s1".into(),
        call_id: call.into(),
        input_sha256: "h".into(),
        request_json: "{}".into(),
        expires_at_ms: 100,
    };
    s.insert_pending(&row("p1"), 10).unwrap();
    s.insert_pending(&row("p2"), 10).unwrap();
    s.resolve_pending("s1", "p1", "h", "granted", 20).unwrap();
    let delivered = s.enqueue_outbox("k", None, "{}", 10).unwrap();
    s.outbox_delivered(delivered).unwrap();
    let dead = s.enqueue_outbox("k", None, "{}", 10).unwrap();
    s.outbox_failed(dead, "x", 0, true).unwrap();

    assert_eq!(s.prune(1000).unwrap(), 3);
    assert!(s.call_seen("s1", "c1").unwrap());
    assert!(!s.call_seen("old", "c1").unwrap());
    assert_eq!(s.pending().unwrap().len(), 1);
    assert_eq!(s.outbox_counts().unwrap(), (0, 0, 1));
    assert_eq!(s.sessions().unwrap().len(), 2);
}

#[test]
fn outbox_retries_then_dead_letters() {
    let s = Store::open_in_memory().unwrap();
    let id = s
        .enqueue_outbox("session.started", Some("s1"), "{}", 100)
        .unwrap();
    assert_eq!(s.due_outbox(100, 10).unwrap().len(), 1);
    s.outbox_failed(id, "down", 200, false).unwrap();
    assert!(s.due_outbox(150, 10).unwrap().is_empty());
    let due = s.due_outbox(200, 10).unwrap();
    assert_eq!(due[0].attempts, 1);
    s.outbox_failed(id, "down", 400, true).unwrap();
    assert!(s.due_outbox(1000, 10).unwrap().is_empty());
    assert_eq!(s.outbox_counts().unwrap(), (0, 0, 1));
}

#[test]
fn a_remembered_answer_matches_only_its_exact_key_until_it_expires() {
    let s = store_with_session();
    let key = RememberedKey {
        session: "s1".into(),
        rule_id: "r1".into(),
        tool: "Bash".into(),
        cwd: "/r".into(),
        input_sha256: "ab".into(),
        policy_sha256: "p1".into(),
    };
    s.remember_approval(&key, "[1]", "c1", 1000, 2000).unwrap();
    assert_eq!(
        s.remembered_approval(&key, 1999).unwrap().as_deref(),
        Some("[1]")
    );
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
            s.remembered_approval(&other, 1500).unwrap(),
            None,
            "{other:?}"
        );
    }
    // At its expiry it is gone, and stays gone.
    assert_eq!(s.remembered_approval(&key, 2000).unwrap(), None);
    assert_eq!(s.remembered_approval(&key, 1500).unwrap(), None);
    assert_eq!(s.count_remembered().unwrap(), 0);

    s.remember_approval(&key, "[1]", "c1", 1000, 5000).unwrap();
    let mut other = key.clone();
    other.input_sha256 = "cd".into();
    s.remember_approval(&other, "[2]", "c2", 1000, 5000)
        .unwrap();
    assert_eq!(s.forget_remembered_key(&key).unwrap(), 1);
    assert_eq!(s.remembered_approval(&key, 1500).unwrap(), None);
    assert!(s.remembered_approval(&other, 1500).unwrap().is_some());
    assert_eq!(s.forget_remembered("s1").unwrap(), 1);
}
