//! "Allow for this session": remembered only when the approver chose it and the rule allows
//! it, for exactly the same call, session, rule and policy, until the rule's bound; kept in
//! state.db across a daemon crash; journaled when given and at each use.

use super::*;

/// Write requires approval under a rule whose id and the policy's sha256 a test can change,
/// with `remember = secs`; everything else is allowed.
struct SwitchPolicy {
    rule: Mutex<String>,
    sha: Mutex<String>,
    secs: u64,
}

impl SwitchPolicy {
    fn new(sha: &str, secs: u64) -> Arc<Self> {
        Arc::new(Self {
            rule: Mutex::new("writes".into()),
            sha: Mutex::new(sha.into()),
            secs,
        })
    }
}

impl PolicyEngine for SwitchPolicy {
    fn evaluate(&self, call: &ToolCall, _ctx: &EvalContext) -> Verdict {
        let (decision, approval) = match call.tool {
            agp_contracts::Tool::Write => (
                Decision::Require,
                Some(ApprovalSpec {
                    approvers: vec![],
                    quorum: 1,
                    remember_secs: Some(self.secs),
                }),
            ),
            _ => (Decision::Allow, None),
        };
        Verdict {
            decision,
            reason: "switch".into(),
            rule_id: Some(self.rule.lock().unwrap().clone()),
            deciding_part: None,
            policy_sha256: self.policy_sha256(),
            approval,
            parts: vec![],
        }
    }
    fn policy_sha256(&self) -> String {
        self.sha.lock().unwrap().clone()
    }
}

/// A daemon on `config` with `policy` and `channel`, serving on its own runtime.
fn start(
    config: &DaemonConfig,
    journal: &Arc<MemJournal>,
    channel: &Arc<QueueChannel>,
    policy: Arc<SwitchPolicy>,
) -> (tokio::runtime::Runtime, Arc<Daemon>) {
    let parts = Parts {
        policy,
        ..parts(journal, channel)
    };
    let rt = runtime();
    let daemon = rt.block_on(Daemon::start(config.clone(), parts)).unwrap();
    rt.spawn(daemon.clone().serve(std::future::pending()));
    (rt, daemon)
}

fn is_allow(c: &mut Client, id: &str, path: &str) -> bool {
    c.request(&write(id, path)).unwrap().is_allow()
}

#[test]
fn a_plain_grant_is_asked_again_and_only_a_rule_with_remember_offers_more() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.grant_by(&["alice"]);
    let mut c = f.connect(SessionMode::Gate);
    assert!(is_allow(&mut c, "c1", "remember.txt"));
    // Nobody answers the second time: asked again, timed out, denied.
    assert!(!is_allow(&mut c, "c2", "remember.txt"));
    // "For this session" on a rule without `remember` is a plain grant.
    f.channel.grant_for_session_by(&["alice"]);
    assert!(is_allow(&mut c, "c3", "plain.txt"));
    assert!(!is_allow(&mut c, "c4", "plain.txt"));
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 4);
    assert_eq!(
        *f.channel.offered.lock().unwrap(),
        [Some(60), Some(60), None, None]
    );
    assert!(f.journal.of("approval.remembered").is_empty());
}

#[test]
fn an_answer_for_the_session_is_journaled_when_given_and_at_each_use() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.grant_for_session_by(&["alice"]);
    let mut c = f.connect(SessionMode::Gate);
    for id in ["c1", "c2", "c3"] {
        assert!(is_allow(&mut c, id, "remember.txt"), "{id}");
    }
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 1);
    let given = f.journal.of("approval.remembered");
    assert_eq!(given.len(), 1, "{}", f.journal.dump());
    assert_eq!(given[0]["call_id"], "c1");
    assert_eq!(given[0]["rule_id"], "writes");
    assert_eq!(given[0]["policy_sha256"], "p0");
    assert_eq!(given[0]["by"][0]["id"], "alice");
    let grants = f.journal.of("approval.granted");
    assert_eq!(grants.len(), 3);
    assert!(grants[0].get("remembered").is_none());
    assert_eq!(grants[1]["remembered"], true);
    assert_eq!(grants[2]["remembered"], true);
    assert_eq!(grants[2]["call_id"], "c3");
}

#[test]
fn a_remembered_answer_is_not_applied_to_another_session() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.grant_for_session_by(&["alice"]);
    let mut first = f.connect(SessionMode::Gate);
    assert!(is_allow(&mut first, "c1", "remember.txt"));
    let mut second = f.connect(SessionMode::Gate);
    assert!(!is_allow(&mut second, "c1", "remember.txt"));
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 2);
    // The first session still has it.
    assert!(is_allow(&mut first, "c2", "remember.txt"));
}

#[test]
fn a_remembered_answer_is_not_applied_when_another_rule_or_policy_decides() {
    let (_dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_millis(300);
    let journal = Arc::new(MemJournal::default());
    let channel = Arc::new(QueueChannel::default());
    let policy = SwitchPolicy::new("p1", 60);
    let (rt, daemon) = start(&config, &journal, &channel, policy.clone());
    let token = open_session(&rt, &daemon, &repo, SessionMode::Gate).token;
    let mut c = connect(&config.socket_path(), &token);
    channel.grant_for_session_by(&["alice"]);
    assert!(is_allow(&mut c, "c1", "x"));
    assert!(is_allow(&mut c, "c2", "x"));
    // The same call, now matched by another rule: asked again.
    *policy.rule.lock().unwrap() = "other-writes".into();
    assert!(!is_allow(&mut c, "c3", "x"));
    // The same rule under another policy (a reload): asked again.
    *policy.rule.lock().unwrap() = "writes".into();
    *policy.sha.lock().unwrap() = "p2".into();
    assert!(!is_allow(&mut c, "c4", "x"));
    // Back to the very policy and rule: the answer applies again.
    *policy.sha.lock().unwrap() = "p1".into();
    assert!(is_allow(&mut c, "c5", "x"));
    assert_eq!(channel.asked.load(Ordering::SeqCst), 3);
}

#[test]
fn a_remembered_answer_ends_with_its_bound() {
    let (_dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_millis(300);
    let journal = Arc::new(MemJournal::default());
    let channel = Arc::new(QueueChannel::default());
    let (rt, daemon) = start(&config, &journal, &channel, SwitchPolicy::new("p1", 1));
    let token = open_session(&rt, &daemon, &repo, SessionMode::Gate).token;
    let mut c = connect(&config.socket_path(), &token);
    channel.grant_for_session_by(&["alice"]);
    assert!(is_allow(&mut c, "c1", "x"));
    let expires = journal.of("approval.remembered")[0]["expires_at_ms"]
        .as_i64()
        .unwrap();
    while crate::util::now_ms() <= expires {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_allow(&mut c, "c2", "x"));
    assert_eq!(channel.asked.load(Ordering::SeqCst), 2);
}

/// A daemon that dies (its runtime dropped without an orderly stop) after an answer for the
/// session was given; its session's token.
fn die_after_an_answer_for_the_session(
    config: &DaemonConfig,
    repo: &Path,
    journal: &Arc<MemJournal>,
) -> String {
    let channel = Arc::new(QueueChannel::default());
    let (rt, daemon) = start(config, journal, &channel, SwitchPolicy::new("p1", 600));
    let token = open_session(&rt, &daemon, repo, SessionMode::Gate).token;
    let mut c = connect(&config.socket_path(), &token);
    channel.grant_for_session_by(&["alice"]);
    assert!(is_allow(&mut c, "c1", "x"));
    drop(c);
    rt.shutdown_background();
    drop(daemon);
    let sock = config.socket_path();
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&sock).is_err() {
            return token;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the dead daemon still accepts on {}", sock.display());
}

#[test]
fn a_daemon_restart_keeps_the_answer_under_the_same_policy_only() {
    let (_dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_millis(300);
    let journal = Arc::new(MemJournal::default());
    let token = die_after_an_answer_for_the_session(&config, &repo, &journal);

    // The same policy: the resumed session still has the answer; nobody is asked.
    let channel = Arc::new(QueueChannel::default());
    let (rt, daemon) = start(&config, &journal, &channel, SwitchPolicy::new("p1", 600));
    let mut c = connect(&config.socket_path(), &token);
    assert!(is_allow(&mut c, "c2", "x"));
    assert_eq!(channel.asked.load(Ordering::SeqCst), 0);
    drop(c);
    rt.shutdown_background();
    drop(daemon);
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(config.socket_path()).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // Another policy after the restart: asked again.
    let channel = Arc::new(QueueChannel::default());
    let (_rt, _daemon) = start(&config, &journal, &channel, SwitchPolicy::new("p2", 600));
    let mut c = connect(&config.socket_path(), &token);
    assert!(!is_allow(&mut c, "c3", "x"));
    assert_eq!(channel.asked.load(Ordering::SeqCst), 1);
}

#[test]
fn an_ended_session_forgets_its_answers() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel.grant_for_session_by(&["alice"]);
    let mut c = f.connect(SessionMode::Gate);
    assert!(is_allow(&mut c, "c1", "remember.txt"));
    c.end_session(None).unwrap();
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    let left: i64 = store.count_remembered().unwrap();
    assert_eq!(left, 0);
}
