//! One approval queue for the team, with the real binary: daemons with separate homes share
//! one throwaway PostgreSQL (`[state] url`) and one fake Slack (real HTTP Web API and Socket
//! Mode WebSocket). Only the daemon holding the team's Slack lease connects to Slack; it
//! relays every daemon's approvals, and each click reaches the daemon that asked. Killing the
//! holder moves the lease; killing an asking daemon or restarting PostgreSQL mid-approval
//! loses no decision.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agp_daemon::store::PgStore;
use agp_slack::fake::{self, FakeSlack, PostedMessage};
use agp_testkit::postgres::PgServer;
use serde_json::Value;

use super::support::daemon::ask_in_gate_session;
use super::support::looping::{init_home, journal, AGP, SLACK_VARS};

const POLICY: &str = "version = 1\ndefault = \"deny\"\n\n[guards]\ndestructive = false\n\
\"protected-paths\" = false\nsecrets = false\n\"supply-chain\" = false\n\
\"network-egress\" = false\nprivilege = false\n\n[[rule]]\nid = \"write-project\"\n\
effect = \"allow\"\nmatch = [\"Edit(/**)\"]\n\n[[rule]]\nid = \"mkdir-needs-a-human\"\n\
effect = \"require\"\nmatch = [\"Bash(mkdir *)\"]\napprovers = [\"UALICE\", \"UBOB\"]\n\
reason = \"creating directories needs a human\"\n";

const WAIT: Duration = Duration::from_secs(60);

/// One member of the team: an agp home whose daemon keeps its state in the shared database.
struct Member {
    name: String,
    home: PathBuf,
    repo: PathBuf,
    daemon: Option<Child>,
    starts: u32,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Member {
    fn new(dir: &Path, name: &str, url: &str) -> Member {
        let home = dir.join(name).join("agp-home");
        let repo = dir.join(name).join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        init_home(&home, None);
        std::fs::write(home.join("policy.toml"), POLICY).unwrap();
        let config = home.join("config.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[state]\nurl = \"{url}\"\nmember = \"{name}\"\n"
        ));
        std::fs::write(&config, text).unwrap();
        Member {
            name: name.to_owned(),
            home,
            repo: std::fs::canonicalize(repo).unwrap(),
            daemon: None,
            starts: 0,
        }
    }

    /// `agp daemon --approval-channel slack` wired to the fake Slack; returns once its gateway
    /// socket takes connections. Output goes to `daemon-N.log` in the home.
    fn start(&mut self, slack_url: &str) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.home.join(format!("daemon-{}.log", self.starts))).unwrap();
        let socket = self.home.join("run/gateway.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new("setsid");
        for var in SLACK_VARS {
            cmd.env_remove(var);
        }
        cmd.arg("-w")
            .arg(AGP)
            .arg("--home")
            .arg(&self.home)
            .args(["daemon", "--sandbox", "none", "--approval-timeout", "120"])
            .arg("--policy")
            .arg(self.home.join("policy.toml"))
            .args(["--approval-channel", "slack"])
            .env("AGP_SLACK_BOT_TOKEN", fake::BOT_TOKEN)
            .env("AGP_SLACK_APP_TOKEN", fake::APP_TOKEN)
            .env("AGP_SLACK_CHANNEL", fake::CHANNEL)
            .env("AGP_SLACK_APPROVERS", "UALICE,UBOB")
            .env("AGP_SLACK_API_URL", slack_url)
            .env("RUST_LOG", "agp_daemon=info,agp_slack=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + WAIT;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "agp daemon of {} did not start: {}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean stop, no lease given up.
    fn kill(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.home.join(format!("daemon-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// A gate session's `mkdir DIR`, asked from a thread; true if it was allowed.
    fn ask(&self, dir: &str) -> std::thread::JoinHandle<bool> {
        ask_in_gate_session(&self.home, &self.repo, "team-1", &format!("mkdir {dir}"))
    }

    fn entries(&self, kind: &str) -> Vec<Value> {
        journal(&self.home)
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect()
    }
}

async fn fake_slack() -> FakeSlack {
    let slack = FakeSlack::start().await.unwrap();
    slack.add_user("UALICE", "Alice");
    slack.add_user("UBOB", "Bob");
    slack
}

/// The approval message showing `mkdir DIR`.
async fn approval_of(
    slack: &FakeSlack,
    dir: &str,
    team: &[Member],
    server: &PgServer,
) -> PostedMessage {
    let needle = format!("mkdir {dir}");
    slack
        .wait_message(WAIT, |m| {
            m.text.contains("approval needed") && m.all_text().contains(&needle)
        })
        .await
        .unwrap_or_else(|| {
            let logs: Vec<String> = team
                .iter()
                .map(|m| {
                    let entries: Vec<String> = journal(&m.home)
                        .iter()
                        .map(|e| format!("{} {}", e["kind"], e["body"]))
                        .collect();
                    format!("{}:\n{}\n{}", m.name, m.logs(), entries.join("\n"))
                })
                .collect();
            panic!(
                "no approval for {needle} in Slack: {:#?}\n{}\nPostgreSQL:\n{}",
                slack.messages(),
                logs.join("\n"),
                server.log()
            )
        })
}

/// Approval messages posted (in a session's thread), whatever they show by now.
fn approvals(slack: &FakeSlack) -> usize {
    slack
        .messages()
        .iter()
        .filter(|m| m.thread_ts.is_some())
        .count()
}

/// The member whose process holds the team's Slack lease, and its fencing token.
async fn lease_holder(store: &PgStore) -> Option<(String, i64)> {
    let lease = store.channel_lease("slack").await.ok()??;
    lease.live.then(|| {
        let member = lease.holder.rsplit_once('#').map_or("", |(m, _)| m);
        (member.to_owned(), lease.fencing_token)
    })
}

/// Waits until a live lease is held by someone other than `not` (any holder when `None`).
async fn wait_holder(store: &PgStore, not: Option<&str>) -> (String, i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((m, token)) = lease_holder(store).await {
            if Some(m.as_str()) != not {
                return (m, token);
            }
        }
        assert!(Instant::now() < deadline, "the Slack lease never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn join(ask: std::thread::JoinHandle<bool>) -> bool {
    tokio::task::spawn_blocking(move || ask.join().unwrap())
        .await
        .unwrap()
}

/// The value the `agp_allow` button of `msg` carries (its nonce binding).
fn allow_value(msg: &PostedMessage) -> String {
    fn find(v: &Value) -> Option<String> {
        match v {
            Value::Object(o) if o.get("action_id") == Some(&Value::from("agp_allow")) => {
                o.get("value").and_then(Value::as_str).map(str::to_owned)
            }
            Value::Object(o) => o.values().find_map(find),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    find(&msg.blocks).expect("an allow button")
}

/// Waits for the member's journal to hold an entry of `kind` satisfying `what`.
async fn wait_entry(m: &Member, kind: &str, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(e) = m.entries(kind).into_iter().find(|e| what(e)) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "{} never journaled {kind}: {}",
            m.name,
            m.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn granted_by(entry: &Value) -> (String, String) {
    (
        entry["body"]["by"][0]["id"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        entry["body"]["channel"].as_str().unwrap_or("").to_owned(),
    )
}

fn members(dir: &Path, url: &str, names: &[&str]) -> Vec<Member> {
    names.iter().map(|n| Member::new(dir, n, url)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_one_slack_connection_and_the_lease_survives_a_kill() {
    let Some(server) = tokio::task::block_in_place(PgServer::start_new) else {
        return;
    };
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let mut team = members(dir.path(), &server.url(), &["laptop-1", "ci-2", "build-3"]);
    let url = slack.api_url();
    tokio::task::block_in_place(|| {
        for m in &mut team {
            m.start(&url);
        }
    });
    let watcher = PgStore::connect(&server.url(), "test-watcher")
        .await
        .unwrap();
    let (holder, token) = wait_holder(&watcher, None).await;
    assert!(slack.wait_hellos(1, WAIT).await);

    // Every daemon asks; every approval reaches Slack, each in its session's thread, through
    // the one Socket Mode connection of the lease holder.
    let mut asks: Vec<_> = team
        .iter()
        .map(|m| Some(m.ask(&format!("from-{}", m.name))))
        .collect();
    let mut msgs = Vec::new();
    for m in &team {
        msgs.push(approval_of(&slack, &format!("from-{}", m.name), &team, &server).await);
    }
    assert_eq!(approvals(&slack), 3);
    assert_eq!(slack.roots().len(), 3, "one root message per session");
    assert_eq!(
        (slack.connection_opens(), slack.hellos()),
        (1, 1),
        "one Socket Mode connection for the team"
    );
    let idx = |team: &[Member], name: &str| team.iter().position(|m| m.name == name).unwrap();
    let h = idx(&team, &holder);
    let (x, y) = match h {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };

    // A click on another member's approval is relayed to the daemon that asked, and only to it.
    let decided_value = allow_value(&msgs[x]);
    slack.click("UALICE", &msgs[x].ts, "agp_allow").unwrap();
    assert!(join(asks[x].take().unwrap()).await, "{}", team[x].logs());
    let granted = wait_entry(&team[x], "approval.granted", |_| true).await;
    assert_eq!(granted_by(&granted), ("UALICE".into(), "slack".into()));
    for other in [h, y] {
        assert!(team[other].entries("approval.granted").is_empty());
    }

    // The holder dies mid-approval: another daemon takes the lease over (new fencing token),
    // connects to Slack, and adopts the messages already posted.
    tokio::task::block_in_place(|| team[h].kill());
    assert!(
        !join(asks[h].take().unwrap()).await,
        "its agent lost the daemon"
    );
    let (successor, new_token) = wait_holder(&watcher, Some(&holder)).await;
    assert!(new_token > token, "{new_token} after {token}");
    assert!(slack.wait_hellos(2, WAIT).await);
    let s = idx(&team, &successor);

    // The click on a message the dead holder posted is honoured, journaled by the daemon that
    // asked; nothing was posted twice.
    slack.click("UBOB", &msgs[y].ts, "agp_allow").unwrap();
    assert!(join(asks[y].take().unwrap()).await, "{}", team[y].logs());
    let granted = wait_entry(&team[y], "approval.granted", |_| true).await;
    assert_eq!(granted_by(&granted), ("UBOB".into(), "slack".into()));
    assert_eq!(approvals(&slack), 3, "{:#?}", slack.messages());

    // A replay of the decided button (captured before the decision) is still refused, and the
    // refusal is journaled by the new holder.
    slack
        .click_value("UALICE", &msgs[x].ts, "agp_allow", &decided_value)
        .unwrap();
    assert!(slack
        .wait_ephemeral("UALICE", "already decided", WAIT)
        .await
        .is_some());
    let rejected = wait_entry(&team[s], "approval.rejected", |_| true).await;
    assert_eq!(rejected["body"]["reason"], "replayed");
    assert_eq!(team[x].entries("approval.granted").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_asker_and_a_postgres_restart_lose_no_decision() {
    let Some(server) = tokio::task::block_in_place(PgServer::start_new) else {
        return;
    };
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let mut team = members(dir.path(), &server.url(), &["relay-1", "asker-2"]);
    let url = slack.api_url();
    let watcher = PgStore::connect(&server.url(), "test-watcher")
        .await
        .unwrap();
    // The relay first, so that it holds the lease and the asker is only an asker.
    tokio::task::block_in_place(|| team[0].start(&url));
    assert_eq!(wait_holder(&watcher, None).await.0, "relay-1");
    tokio::task::block_in_place(|| team[1].start(&url));

    // The asking daemon is killed while its approval waits in Slack; the relay still records
    // the click, and the restarted daemon re-attaches and journals the decision.
    let ask = team[1].ask("while-down");
    let msg = approval_of(&slack, "while-down", &team, &server).await;
    tokio::task::block_in_place(|| team[1].kill());
    assert!(!join(ask).await);
    slack.click("UALICE", &msg.ts, "agp_allow").unwrap();
    assert!(
        slack
            .wait_message(WAIT, |m| m.ts == msg.ts && !m.has_buttons())
            .await
            .is_some(),
        "the relay did not record the click: {}",
        team[0].logs()
    );
    tokio::task::block_in_place(|| team[1].start(&url));
    let granted = wait_entry(&team[1], "approval.granted", |_| true).await;
    assert_eq!(granted_by(&granted), ("UALICE".into(), "slack".into()));
    assert_eq!(approvals(&slack), 1, "re-attached, not posted again");

    // PostgreSQL restarts while an approval waits: the click afterwards reaches the asker.
    let ask = team[1].ask("across-a-restart");
    approval_of(&slack, "across-a-restart", &team, &server).await;
    tokio::task::block_in_place(|| server.restart()).unwrap();
    wait_holder(&watcher, None).await;
    let deadline = Instant::now() + WAIT;
    // A click that arrives while the relay reconnects is refused with "try again", as a
    // person would be told; they click again.
    // The message to click is the one with live buttons (the relay posts again when the
    // restart cut it off before the message was on record).
    while !ask.is_finished() {
        assert!(Instant::now() < deadline, "{}", team[0].logs());
        let live = slack
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.has_buttons() && m.all_text().contains("mkdir across-a-restart"));
        if let Some(m) = live {
            let _ = slack.click("UBOB", &m.ts, "agp_allow");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(join(ask).await, "{}\n{}", team[0].logs(), team[1].logs());
    let granted = wait_entry(&team[1], "approval.granted", |e| {
        e["body"]["by"][0]["id"] == "UBOB"
    })
    .await;
    assert_eq!(granted_by(&granted).1, "slack");
}

/// Relay latency, click to the waiting daemon's answer (the agent's verdict), over N
/// approvals spread across three daemons. A measurement, not a test of speed: it asserts only
/// that every approval was decided, and prints p50/p99 (run with `--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run explicitly"]
async fn relay_latency_click_to_waiting_daemon() {
    let Some(server) = tokio::task::block_in_place(PgServer::start_new) else {
        return;
    };
    let n: usize = std::env::var("AGP_RELAY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let slack = fake_slack().await;
    let dir = tempfile::tempdir().unwrap();
    let mut team = members(dir.path(), &server.url(), &["m-1", "m-2", "m-3"]);
    let url = slack.api_url();
    tokio::task::block_in_place(|| {
        for m in &mut team {
            m.start(&url);
        }
    });
    let watcher = PgStore::connect(&server.url(), "test-watcher")
        .await
        .unwrap();
    wait_holder(&watcher, None).await;
    assert!(slack.wait_hellos(1, WAIT).await);
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let m = &team[i % 3];
        let target = format!("bench-{i}");
        let ask = m.ask(&target);
        let msg = approval_of(&slack, &target, &team, &server).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let waiter = std::thread::spawn(move || {
            let allowed = ask.join().unwrap();
            let _ = tx.send((allowed, Instant::now()));
        });
        let clicked = Instant::now();
        slack.click("UALICE", &msg.ts, "agp_allow").unwrap();
        let (allowed, at) = rx.await.unwrap();
        waiter.join().unwrap();
        assert!(allowed, "{}", m.logs());
        took.push(at - clicked);
    }
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1];
    println!(
        "relay latency click -> waiting daemon's verdict, {n} approvals over 3 daemons: \
         p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        took[took.len() - 1]
    );
}
