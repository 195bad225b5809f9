//! What a daemon finds from an earlier one: pending approvals, expired leases, live sessions.

use super::*;

/// A home for daemons that follow one another: its repository, the config `edit` makes, and
/// the journal they all write.
fn home(
    edit: impl FnOnce(&mut DaemonConfig),
) -> (tempfile::TempDir, PathBuf, DaemonConfig, Arc<MemJournal>) {
    let (dir, repo, mut config) = world();
    edit(&mut config);
    (dir, repo, config, Arc::new(MemJournal::default()))
}

#[test]
fn pending_approvals_survive_a_restart_and_are_settled() {
    let (dir, repo, config, journal) = home(|c| c.approval_timeout = Duration::from_millis(400));
    die_with_a_pending_approval(&config, &repo, &journal);
    std::thread::sleep(Duration::from_millis(500));

    // Second daemon: the approval expired while it was down → approval.timeout, recovered.
    let f = Fixture::after(dir, repo, config, &journal);
    let timeouts = journal.of("approval.timeout");
    assert_eq!(timeouts.len(), 1, "{}", journal.dump());
    assert_eq!(timeouts[0]["call_id"], "p1");
    assert_eq!(timeouts[0]["recovered"], true);
    drop(f);
}

#[test]
fn a_pending_approval_within_its_time_is_reattached_after_restart() {
    let (dir, repo, config, journal) = home(|c| c.approval_timeout = Duration::from_secs(30));
    die_with_a_pending_approval(&config, &repo, &journal);

    let channel = QueueChannel::answering(ApprovalOutcome::Denied {
        by: human("carol"),
        reason: None,
    });
    let f = Fixture::with(dir, repo, config, journal.clone(), channel.clone());
    f.rt.block_on(f.daemon.settle_recovered());
    assert_eq!(channel.asked.load(Ordering::SeqCst), 1);
    let denied = journal.of("approval.denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["by"]["id"], "carol");
}

#[test]
fn expired_leases_are_reaped_on_start() {
    let (dir, repo, config, journal) = home(|c| c.lease_ttl = Duration::from_millis(200));
    let id = a_session_of_a_stopped_daemon(&config, &repo, &journal).id;
    std::thread::sleep(Duration::from_millis(300));
    let _f = Fixture::after(dir, repo, config, &journal);
    let reaped = journal.of("session.reaped");
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0]["session"], id.as_str());
}

/// A session whose daemon died is still checked when it is reaped, against the snapshot the
/// dead daemon stored when the session opened.
#[test]
fn a_reaped_session_is_checked_against_the_snapshot_taken_when_it_opened() {
    let mkfifo = |p: &Path| {
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    let (dir, repo, config, journal) = home(|c| c.lease_ttl = Duration::from_millis(200));
    mkfifo(&repo.join("before"));
    let id = a_session_of_a_stopped_daemon(&config, &repo, &journal).id;
    mkfifo(&repo.join("planted"));
    std::thread::sleep(Duration::from_millis(300));
    let _f = Fixture::after(dir, repo.clone(), config.clone(), &journal);
    let checked = journal.of("session.integrity");
    assert_eq!(checked.len(), 1, "{}", journal.dump());
    assert_eq!(checked[0]["session"], id.as_str());
    let findings = checked[0]["report"]["findings"].as_array().unwrap();
    let of = |p: &str| findings.iter().find(|f| f["path"] == p).unwrap();
    assert_eq!(of("before")["origin"], "pre_existing");
    assert_eq!(of("planted")["origin"], "new");
    assert_eq!(of("planted")["action"], "quarantined");
    assert!(repo.join("before").symlink_metadata().is_ok());
    assert!(repo.join("planted").symlink_metadata().is_err());
    assert!(config
        .agp_home
        .join("quarantine")
        .join(&id)
        .join("planted")
        .symlink_metadata()
        .is_ok());
}

#[test]
fn a_live_session_of_a_dead_daemon_is_taken_over_with_a_new_fencing_token() {
    let (dir, repo, config, journal) = home(|_| {});
    let opened = a_session_of_a_stopped_daemon(&config, &repo, &journal);

    // Within the lease: not reaped; the token still works and the new daemon takes the lease.
    let f = Fixture::after(dir, repo, config, &journal);
    assert!(journal.of("session.reaped").is_empty());
    let mut c = f.client(&opened.token);
    assert!(c.request(&bash("t1", "ls")).unwrap().is_allow());
    let resumed: Vec<Value> = journal
        .of("session.started")
        .into_iter()
        .filter(|b| b["resumed"] == true)
        .collect();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["fencing_token"], 2);
    let row = f.daemon_store_session(&opened.id);
    assert_eq!(row.fencing_token, 2);
    assert_ne!(row.lease_owner, "");
}

#[test]
fn a_later_daemon_ends_an_ephemeral_daemons_session_without_asking_again() {
    let (dir, repo, config, journal) = home(|c| {
        c.approval_timeout = Duration::from_secs(30);
        c.ephemeral = true;
    });
    die_with_a_pending_approval(&config, &repo, &journal);

    // A channel that would grant at once: it must never be asked for the dead session.
    let channel = QueueChannel::answering(ApprovalOutcome::Granted {
        by: vec![human("carol")],
    });
    let f = Fixture::with(dir, repo, config, journal.clone(), channel.clone());
    f.rt.block_on(f.daemon.settle_recovered());
    assert_eq!(channel.asked.load(Ordering::SeqCst), 0);
    let reaped = journal.of("session.reaped");
    assert_eq!(reaped.len(), 1, "{}", journal.dump());
    assert_eq!(reaped[0]["status"], "interrupted");
    let settled = journal.of("approval.timeout");
    assert_eq!(settled.len(), 1, "{}", journal.dump());
    assert_eq!(settled[0]["call_id"], "p1");
    assert!(journal.of("approval.granted").is_empty());
}
