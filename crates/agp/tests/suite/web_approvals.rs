//! Approvals from the web console with the real binary: an `agp daemon` whose configured channel
//! is an approver script (a FIFO), a proxy-exec session, and the console's side of the gateway
//! (`list_approvals` / `decide_approval`, as `agp console` speaks it). An allow from the console
//! runs the call and is journaled via web as the OS user; forged, replayed, late and
//! unauthorized decisions are refused and journaled; a view-only daemon refuses them all.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agp_gateway::{
    ApprovalList, Client, ClientError, DecisionApplied, ErrorCode, ExecReply, PendingApproval,
    SessionMode, ToolCallRequest, WebDecision,
};
use serde_json::{json, Value};

use super::support::daemon::{mkfifo, PATIENCE};
use super::support::looping::{journal, open_session, policy_world, start_daemon};

const POLICY: &str = r#"
version = 1
default = "allow"

[guards]
destructive = false
"protected-paths" = false
secrets = false
"supply-chain" = false
"network-egress" = false
privilege = false

[[rule]]
id = "touch-needs-a-human"
effect = "require"
match = ["Bash(touch *)"]
reason = "touching files needs a human"

[[rule]]
id = "mkdir-needs-two"
effect = "require"
match = ["Bash(mkdir *)"]
quorum = 2
reason = "making directories needs two people"
"#;

struct Console<'a> {
    home: &'a Path,
}

impl Console<'_> {
    fn token(&self) -> String {
        std::fs::read_to_string(self.home.join("run/admin.token")).unwrap()
    }

    fn client(&self) -> Client {
        Client::connect(&self.home.join("run/gateway.sock"), PATIENCE).unwrap()
    }

    fn list(&self) -> ApprovalList {
        self.client().list_approvals(&self.token()).unwrap()
    }

    /// The listing once it shows the call `id`; that call's entry.
    fn pending(&self, id: &str) -> PendingApproval {
        let start = Instant::now();
        loop {
            if let Some(p) = self.list().approvals.into_iter().find(|p| p.call_id == id) {
                return p;
            }
            assert!(start.elapsed() < PATIENCE, "{id} was never listed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn decide(&self, p: &PendingApproval, d: WebDecision) -> Result<DecisionApplied, ClientError> {
        self.client()
            .decide_approval(&self.token(), p, d, Some("checked in the console"))
    }

    /// The reason code of a refused decision.
    fn refused(&self, p: &PendingApproval, d: WebDecision) -> String {
        match self.decide(p, d) {
            Err(ClientError::Refused {
                code: ErrorCode::ApprovalRefused,
                message,
            }) => message.split(':').next().unwrap().to_owned(),
            other => panic!("not refused: {other:?}"),
        }
    }
}

fn os_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn bash(id: &str, command: &str, repo: &Path) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: json!({ "command": command }),
        cwd: repo.display().to_string(),
    }
}

/// An agent connection making `call` in its own thread; the connection comes back with the reply.
fn calling(
    mut agent: Client,
    call: ToolCallRequest,
) -> JoinHandle<(Client, Result<ExecReply, ClientError>)> {
    std::thread::spawn(move || {
        let reply = agent.request_exec(&call);
        (agent, reply)
    })
}

fn bodies<'a>(j: &'a [Value], kind: &str) -> Vec<&'a Value> {
    j.iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| &e["body"])
        .collect()
}

#[test]
fn the_console_approves_and_denies_through_the_same_binding_as_every_channel() {
    let w = policy_world(POLICY);
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    let policy = w.policy.clone();
    let _daemon = start_daemon(
        &w.home,
        [
            "--policy",
            policy.to_str().unwrap(),
            "--approver-script",
            fifo.to_str().unwrap(),
        ],
    );
    let console = Console { home: &w.home };
    let token = open_session(&w.home, &w.repo, SessionMode::ProxyExec, PATIENCE);
    let mut agent = Client::connect(&w.home.join("run/gateway.sock"), PATIENCE).unwrap();
    agent.hello(&token).unwrap();
    let session = agent.session().unwrap().to_owned();

    // 1. The configured channel decides first: the console's later decision changes nothing.
    let a = calling(agent, bash("a", "touch a", &w.repo));
    let pa = console.pending("a");
    let mut script = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    script.write_all(b"deny not today\n").unwrap();
    let (agent, reply) = a.join().unwrap();
    assert!(!reply.unwrap().verdict.is_allow());
    assert_eq!(console.refused(&pa, WebDecision::Allow), "already_decided");

    // 2. Forged and replayed decisions are refused; the call stays pending; an allow runs it.
    let b = calling(agent, bash("b", "touch b", &w.repo));
    let pb = console.pending("b");
    assert_eq!(pb.session, session);
    assert_eq!(pb.channel, "terminal-script");
    assert!(pb.web_can_approve, "{pb:?}");
    let mut wrong = pb.clone();
    wrong.input_sha256 = "0".repeat(64);
    assert_eq!(
        console.refused(&wrong, WebDecision::Allow),
        "input_hash_mismatch"
    );
    assert_eq!(console.refused(&pb, WebDecision::Allow), "replayed");
    let mut other = console.pending("b");
    other.nonce = pa.nonce.clone();
    // The nonce of another call, already named once: a replay.
    assert_eq!(console.refused(&other, WebDecision::Allow), "replayed");
    let bad =
        console
            .client()
            .decide_approval("0123", &console.pending("b"), WebDecision::Allow, None);
    assert!(
        matches!(
            bad,
            Err(ClientError::Refused {
                code: ErrorCode::BadToken,
                ..
            })
        ),
        "{bad:?}"
    );
    assert!(!w.repo.join("b").exists());
    let applied = console
        .decide(&console.pending("b"), WebDecision::Allow)
        .unwrap();
    assert!(applied.granted, "{applied:?}");
    let (agent, reply) = b.join().unwrap();
    let reply = reply.unwrap();
    assert!(reply.verdict.is_allow());
    assert_eq!(
        reply.verdict.approved_by.as_deref(),
        Some(format!("tty:{}", os_user()).as_str())
    );
    assert!(reply.result.unwrap().ok);
    assert!(w.repo.join("b").exists(), "the approved call ran");

    // 3. A quorum of two: the console's one person may only deny.
    let c = calling(agent, bash("c", "mkdir c", &w.repo));
    let pc = console.pending("c");
    assert_eq!(pc.quorum, 2);
    assert!(!pc.web_can_approve && pc.web_can_deny, "{pc:?}");
    assert_eq!(
        console.refused(&pc, WebDecision::Allow),
        "quorum_needs_other_approvers"
    );
    let denied = console
        .decide(&console.pending("c"), WebDecision::Deny)
        .unwrap();
    assert!(!denied.granted);
    let (mut agent, reply) = c.join().unwrap();
    let verdict = reply.unwrap().verdict;
    assert!(!verdict.is_allow());
    assert!(
        verdict.reason.contains("checked in the console"),
        "{verdict:?}"
    );
    assert!(!w.repo.join("c").exists());

    // 4. A stopped session's approval cannot be decided any more.
    let repo = w.repo.clone();
    let d = std::thread::spawn(move || agent.request_exec(&bash("d", "touch d", &repo)));
    let pd = console.pending("d");
    let stopped = console
        .client()
        .stop_session(&console.token(), &session, "test", None)
        .unwrap();
    assert!(stopped.stopped);
    let _ = d.join().unwrap();
    assert_eq!(console.refused(&pd, WebDecision::Allow), "session_ended");
    drop(script);

    let j = journal(&w.home);
    let user = os_user();
    let granted = bodies(&j, "approval.granted");
    assert_eq!(granted.len(), 1, "{j:#?}");
    assert_eq!(granted[0]["call_id"], "b");
    assert_eq!(granted[0]["channel"], "web");
    assert_eq!(granted[0]["by"][0]["id"], format!("tty:{user}"));
    assert_eq!(granted[0]["by"][0]["name"], user.as_str());
    assert_eq!(granted[0]["by"][0]["via"], "web");
    let denied = bodies(&j, "approval.denied");
    let by_web: Vec<_> = denied.iter().filter(|d| d["channel"] == "web").collect();
    assert_eq!(by_web.len(), 1, "{denied:#?}");
    assert_eq!(by_web[0]["call_id"], "c");
    assert_eq!(by_web[0]["by"]["via"], "web");
    let votes = bodies(&j, "approval.vote");
    let voted: Vec<(&str, &str)> = votes
        .iter()
        .map(|v| (v["call_id"].as_str().unwrap(), v["vote"].as_str().unwrap()))
        .collect();
    assert_eq!(voted, [("b", "allow"), ("c", "deny")]);
    let rejected: Vec<&str> = bodies(&j, "approval.rejected")
        .iter()
        .map(|r| {
            assert_eq!(r["channel"], "web");
            assert_eq!(r["user"]["id"], format!("tty:{user}"));
            r["reason"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        rejected,
        [
            "already_decided",
            "input_hash_mismatch",
            "replayed",
            "replayed",
            "quorum_needs_other_approvers",
            "session_ended"
        ]
    );
    let verify = Command::new(super::support::looping::AGP)
        .arg("--home")
        .arg(&w.home)
        .arg("verify")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
}

#[test]
fn a_view_only_daemon_lists_approvals_but_refuses_every_decision() {
    let w = policy_world(POLICY);
    let config = w.home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\n[approvals]\n"), "{text}");
    std::fs::write(
        &config,
        text.replace("\n[approvals]\n", "\n[approvals]\nweb = false\n"),
    )
    .unwrap();
    let fifo = w.dir.path().join("answers.fifo");
    mkfifo(&fifo);
    let policy = w.policy.clone();
    let _daemon = start_daemon(
        &w.home,
        [
            "--policy",
            policy.to_str().unwrap(),
            "--approver-script",
            fifo.to_str().unwrap(),
        ],
    );
    let console = Console { home: &w.home };
    let token = open_session(&w.home, &w.repo, SessionMode::ProxyExec, PATIENCE);
    let mut agent = Client::connect(&w.home.join("run/gateway.sock"), PATIENCE).unwrap();
    agent.hello(&token).unwrap();
    let session = agent.session().unwrap().to_owned();
    let a = calling(agent, bash("a", "touch a", &w.repo));
    let pa = console.pending("a");
    assert!(console.list().view_only);
    assert!(!pa.web_can_approve && !pa.web_can_deny);
    assert_eq!(console.refused(&pa, WebDecision::Allow), "view_only");
    assert_eq!(console.refused(&pa, WebDecision::Deny), "view_only");
    assert_eq!(console.pending("a").call_id, "a", "still pending");
    console
        .client()
        .stop_session(&console.token(), &session, "test", None)
        .unwrap();
    let _ = a.join().unwrap();
    assert!(!w.repo.join("a").exists());
    let j = journal(&w.home);
    assert!(bodies(&j, "approval.granted").is_empty());
    let rejected: Vec<&str> = bodies(&j, "approval.rejected")
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(rejected, ["view_only", "view_only"]);
}
