//! The kill switch over the admin channel: a session waiting on an approval is stopped, its
//! approval cancelled, all of it journaled with who stopped it; a second stop changes nothing.

use super::*;

fn admin(f: &Fixture) -> (Client, String) {
    let token = std::fs::read_to_string(f.config.admin_token_path()).unwrap();
    let c = Client::connect(&f.config.socket_path(), Duration::from_secs(20)).unwrap();
    (c, token)
}

#[test]
fn stopping_a_session_waiting_on_an_approval_cancels_it_and_ends_the_session() {
    let f = Fixture::new(Duration::from_secs(60));
    let token = f.session(SessionMode::Gate);
    let mut agent = f.client(&token);
    let id = agent.session().unwrap().to_owned();
    let waiter = std::thread::spawn(move || agent.request(&write("p1", "x")));
    eventually(
        || f.journal.dump(),
        || !f.journal.of("approval.requested").is_empty(),
    );

    let (mut c, admin_token) = admin(&f);
    let reply = c
        .stop_session(&admin_token, &id, "alice", Some("runaway loop"))
        .unwrap();
    assert!(reply.stopped);
    assert_eq!(reply.cancelled_approvals, ["p1"]);
    // The waiting agent is told no.
    let verdict = waiter.join().unwrap().unwrap();
    assert_eq!(verdict.decision, agp_contracts::Decision::Deny);

    let stopped = f.journal.of("session.stopped");
    assert_eq!(stopped.len(), 1, "{}", f.journal.dump());
    assert_eq!(stopped[0]["by"]["id"], "cli:alice");
    assert_eq!(stopped[0]["reason"], "runaway loop");
    assert_eq!(stopped[0]["cancelled_approvals"], json!(["p1"]));
    assert!(stopped[0]["peer"]["uid"].is_u64(), "{}", stopped[0]);
    let denied = f.journal.of("approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["cancelled"], true);
    assert!(denied[0]["reason"].as_str().unwrap().contains("stopped"));
    let ended = f.journal.of("session.ended");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["status"], "stopped");
    assert_eq!(f.daemon_store_session(&id).status, "stopped");
    // The session's token is dead.
    let mut again = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    assert!(again.hello(&token).is_err());

    // Idempotent: a second stop says so and journals nothing.
    let entries = f.journal.dump().lines().count();
    let (mut c, _) = admin(&f);
    let reply = c.stop_session(&admin_token, &id, "bob", None).unwrap();
    assert!(!reply.stopped);
    assert_eq!(f.journal.dump().lines().count(), entries);
    assert_eq!(f.journal.of("session.stopped").len(), 1);
}

#[test]
fn a_stop_needs_the_admin_token_and_a_known_session() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::Gate);
    let id = f.client(&token).session().unwrap().to_owned();
    let (mut c, admin_token) = admin(&f);
    let refused = c.stop_session("not-the-token", &id, "mallory", None);
    assert!(
        matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::BadToken,
                ..
            })
        ),
        "{refused:?}"
    );
    let (mut c, _) = admin(&f);
    let unknown = c.stop_session(&admin_token, "s-nope", "alice", None);
    assert!(
        matches!(
            unknown,
            Err(ClientError::Refused {
                code: ErrorCode::UnknownSession,
                ..
            })
        ),
        "{unknown:?}"
    );
    // A session token is no admin token.
    let (mut c, _) = admin(&f);
    assert!(c.stop_session(&token, &id, "agent", None).is_err());
    assert!(f.journal.of("session.stopped").is_empty());
    assert_eq!(f.daemon_store_session(&id).status, "active");
}

#[test]
fn a_session_leased_by_a_dead_daemon_is_stopped_too() {
    let (dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let opened = a_session_of_a_stopped_daemon(&config, &repo, &journal);
    let f = Fixture::after(dir, repo, config, &journal);
    let (mut c, admin_token) = admin(&f);
    let reply = c
        .stop_session(&admin_token, &opened.id, "alice", None)
        .unwrap();
    assert!(reply.stopped);
    assert_eq!(f.daemon_store_session(&opened.id).status, "stopped");
    let mut agent = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    assert!(
        agent.hello(&opened.token).is_err(),
        "no agent can resume it"
    );
    assert_eq!(journal.of("session.stopped").len(), 1);
}
