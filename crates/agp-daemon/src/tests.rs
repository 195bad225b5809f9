//! Tests of the loop through the real socket with the real blocking client. The journal, policy,
//! channel and sandbox here are small in-test implementations of the contracts (the integration
//! tests under crates/agp/tests use the real ones).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::sandbox::{PreflightCheck, PreflightReport};
use agp_contracts::{
    AppendReceipt, ApprovalChannel, ApprovalOutcome, ApprovalRequest, ApprovalSpec, Approver,
    BoxFuture, ChannelError, Decision, EvalContext, ExecOutput, ExecRequest, Isolation, Journal,
    JournalError, PolicyEngine, SandboxError, SandboxProvider, SandboxSpec, ToolCall, Verdict,
};
use agp_gateway::{Client, ClientError, ErrorCode, SessionMode, ToolCallRequest, ToolCallResult};
use serde_json::{json, Value};

use crate::exec::Provider;
use crate::{Daemon, DaemonConfig, Parts, Redactor, SessionInfo, SessionParams};

#[derive(Default)]
struct MemJournal {
    events: Mutex<Vec<(String, Option<String>, Value)>>,
    broken: AtomicBool,
    /// Bodies that are not exactly their kind's typed body; every reader of this journal
    /// asserts there are none.
    untyped: Mutex<Vec<String>>,
}

impl Journal for MemJournal {
    fn append(
        &self,
        kind: &str,
        session: Option<&str>,
        body: Value,
    ) -> Result<AppendReceipt, JournalError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(JournalError::Unavailable("disk on fire".into()));
        }
        // The real journal refuses non-canonical bodies; so does this one.
        agp_contracts::canonical::to_canonical_string(&body)
            .map_err(|e| JournalError::Refused(e.to_string()))?;
        if let Err(e) = agp_contracts::events::check_body(kind, &body) {
            self.untyped.lock().unwrap().push(e);
        }
        let mut ev = self.events.lock().unwrap();
        ev.push((kind.to_owned(), session.map(str::to_owned), body));
        Ok(AppendReceipt {
            seq: ev.len() as u64 - 1,
            leaf_hash: [0; 32],
        })
    }
}

impl MemJournal {
    /// Every body the daemon wrote is exactly its kind's typed body.
    fn assert_typed(&self) {
        let untyped = self.untyped.lock().unwrap();
        assert!(
            untyped.is_empty(),
            "bodies unlike their types: {untyped:#?}"
        );
    }
    fn kinds(&self) -> Vec<String> {
        self.assert_typed();
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect()
    }
    fn of(&self, kind: &str) -> Vec<Value> {
        self.assert_typed();
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == kind)
            .map(|e| e.2.clone())
            .collect()
    }
    fn dump(&self) -> String {
        serde_json::to_string(
            &*self
                .events
                .lock()
                .unwrap()
                .iter()
                .map(|e| (&e.0, &e.2))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }
}

/// Bash containing "rm" → deny; Write → require (remembered 60 s when the path says so); Edit →
/// require with quorum 2; everything else allow.
struct RulePolicy;

impl PolicyEngine for RulePolicy {
    fn evaluate(&self, call: &ToolCall, _ctx: &EvalContext) -> Verdict {
        let cmd = call
            .input
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("");
        let path = call
            .input
            .get("file_path")
            .and_then(Value::as_str)
            .unwrap_or("");
        let (decision, rule, approval) = match call.tool.as_str() {
            "Bash" if cmd.contains("rm ") => (Decision::Deny, "no-rm", None),
            "Write" => (
                Decision::Require,
                "writes",
                Some(ApprovalSpec {
                    approvers: vec![],
                    quorum: 1,
                    remember_secs: path.contains("remember").then_some(60),
                }),
            ),
            "Edit" => (
                Decision::Require,
                "edits",
                Some(ApprovalSpec {
                    approvers: vec![],
                    quorum: 2,
                    remember_secs: None,
                }),
            ),
            _ => (Decision::Allow, "default-allow", None),
        };
        Verdict {
            decision,
            reason: format!("rule {rule}"),
            rule_id: Some(rule.into()),
            deciding_part: None,
            policy_sha256: "p0".into(),
            approval,
            parts: vec![],
        }
    }
    fn policy_sha256(&self) -> String {
        "p0".into()
    }
}

/// Answers from a queue; an empty queue never answers (a human who walked away).
#[derive(Default)]
struct QueueChannel {
    answers: Mutex<VecDeque<ApprovalOutcome>>,
    asked: AtomicUsize,
    projected: Mutex<Vec<String>>,
}

impl ApprovalChannel for QueueChannel {
    fn name(&self) -> &str {
        "queue"
    }
    fn request_approval<'a>(
        &'a self,
        _r: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let next = self.answers.lock().unwrap().pop_front();
        Box::pin(async move {
            match next {
                Some(o) => Ok(o),
                None => std::future::pending().await,
            }
        })
    }
    fn project<'a>(
        &'a self,
        kind: &'a str,
        _s: Option<&'a str>,
        b: &'a Value,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        // The channel's tests read `projected`: a body unlike its type shows up there.
        let kind = match agp_contracts::events::check_body(kind, b) {
            Ok(()) => kind.to_owned(),
            Err(e) => format!("untyped {kind}: {e}"),
        };
        self.projected.lock().unwrap().push(kind);
        Box::pin(async { Ok(()) })
    }
}

/// Runs commands on the host (isolates nothing): enough for the loop's tests.
struct HostProvider;

impl SandboxProvider for HostProvider {
    type Session = PathBuf;
    fn spawn(&self, spec: &SandboxSpec) -> Result<PathBuf, SandboxError> {
        Ok(spec.repo.clone())
    }
    fn exec(&self, _s: &PathBuf, r: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        let out = std::process::Command::new(&r.argv[0])
            .args(&r.argv[1..])
            .current_dir(&r.cwd)
            .output()?;
        Ok(ExecOutput {
            exit_code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
            timed_out: false,
            duration_ms: 0,
            truncated: false,
            ..Default::default()
        })
    }
    fn teardown(&self, _s: PathBuf) -> Result<(), SandboxError> {
        Ok(())
    }
    fn isolation(&self) -> Isolation {
        Isolation {
            provider: "host-test".into(),
            network_isolated: false,
            filesystem_isolated: false,
            pid_isolated: false,
            caveats: vec![],
        }
    }
    fn preflight(&self, _s: &PathBuf) -> Result<PreflightReport, SandboxError> {
        Ok(PreflightReport {
            provider: "host-test".into(),
            passed: true,
            checks: vec![PreflightCheck {
                name: "test".into(),
                passed: true,
                detail: "".into(),
            }],
            duration_ms: 0,
        })
    }
}

struct SecretRedactor;
impl Redactor for SecretRedactor {
    fn redact_value(&self, v: &Value) -> Value {
        serde_json::from_str(&self.redact_text(&v.to_string())).unwrap()
    }
    fn redact_text(&self, t: &str) -> String {
        t.replace("sk-SECRET", "[REDACTED]")
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    config: DaemonConfig,
    journal: Arc<MemJournal>,
    channel: Arc<QueueChannel>,
    rt: tokio::runtime::Runtime,
    daemon: Arc<Daemon>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

fn parts(journal: &Arc<MemJournal>, channel: &Arc<QueueChannel>) -> Parts {
    Parts {
        journal: journal.clone(),
        policy: Arc::new(RulePolicy),
        channel: channel.clone(),
        sandbox: Some(Arc::new(Provider(Arc::new(HostProvider)))),
        redactor: Arc::new(SecretRedactor),
    }
}

/// A tempdir holding a repository and a daemon config (home, run dir) of its own.
fn world() -> (tempfile::TempDir, PathBuf, DaemonConfig) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let config = DaemonConfig::new(dir.path().join("home"), dir.path().to_path_buf());
    (dir, repo, config)
}

/// The runtime a daemon under test runs on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A session for intendant `t` in `repo`, opened directly on the daemon.
fn open_session(
    rt: &tokio::runtime::Runtime,
    daemon: &Daemon,
    repo: &Path,
    mode: SessionMode,
) -> SessionInfo {
    rt.block_on(daemon.open_session(SessionParams {
        intendant: "t".into(),
        repo: repo.to_path_buf(),
        task: String::new(),
        mode,
    }))
    .unwrap()
}

/// A first daemon (on `config`, journaling to `journal`) that dies, its runtime dropped without
/// shutdown, while a client's call `p1` waits for an approval from a channel that never
/// answers. The client learns nothing good: its connection died (the hook turns that into deny).
fn die_with_a_pending_approval(config: &DaemonConfig, repo: &Path, journal: &Arc<MemJournal>) {
    let rt = runtime();
    let daemon = rt
        .block_on(Daemon::start(
            config.clone(),
            parts(journal, &Arc::new(QueueChannel::default())),
        ))
        .unwrap();
    let token = open_session(&rt, &daemon, repo, SessionMode::Gate).token;
    rt.spawn(daemon.clone().serve(std::future::pending()));
    let sock = config.socket_path();
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(&sock, Duration::from_secs(10)).unwrap();
        c.hello(&token).unwrap();
        c.request(&write("p1", "x"))
    });
    while journal.of("approval.requested").is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.shutdown_background();
    drop(daemon);
    assert!(waiter.join().unwrap().is_err());
}

/// A session opened on a first daemon (on `config`, journaling to `journal`) that then stops
/// without ending it, its runtime dropped.
fn a_session_of_a_stopped_daemon(
    config: &DaemonConfig,
    repo: &Path,
    journal: &Arc<MemJournal>,
) -> SessionInfo {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let daemon = rt
        .block_on(Daemon::start(
            config.clone(),
            parts(journal, &Arc::new(QueueChannel::default())),
        ))
        .unwrap();
    let opened = open_session(&rt, &daemon, repo, SessionMode::Gate);
    drop(daemon);
    drop(rt);
    opened
}

impl Fixture {
    fn new(approval_timeout: Duration) -> Self {
        let (dir, repo, mut config) = world();
        config.approval_timeout = approval_timeout;
        let journal = Arc::new(MemJournal::default());
        let channel = Arc::new(QueueChannel::default());
        Self::with(dir, repo, config, journal, channel)
    }

    fn with(
        dir: tempfile::TempDir,
        repo: PathBuf,
        config: DaemonConfig,
        journal: Arc<MemJournal>,
        channel: Arc<QueueChannel>,
    ) -> Self {
        let rt = runtime();
        let daemon = rt
            .block_on(Daemon::start(config.clone(), parts(&journal, &channel)))
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = rt.spawn(daemon.clone().serve(async move {
            let _ = rx.await;
        }));
        Self {
            _dir: dir,
            repo,
            config,
            journal,
            channel,
            rt,
            daemon,
            stop: Some(tx),
            served: Some(served),
        }
    }

    fn session(&self, mode: SessionMode) -> String {
        let params = SessionParams {
            intendant: "test".into(),
            repo: self.repo.clone(),
            task: "t sk-SECRET".into(),
            mode,
        };
        self.rt
            .block_on(self.daemon.open_session(params))
            .unwrap()
            .token
    }

    fn client(&self, token: &str) -> Client {
        let mut c = Client::connect(&self.config.socket_path(), Duration::from_secs(20)).unwrap();
        c.hello(token).unwrap();
        c
    }

    fn daemon_store_session(&self, id: &str) -> crate::store::SessionRow {
        crate::store::Store::open_existing(&self.config.state_db)
            .unwrap()
            .session(id)
            .unwrap()
            .unwrap()
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
            let _ = self.rt.block_on(self.served.take().unwrap());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bash(id: &str, command: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: json!({"command": command}),
        cwd: String::new(),
    }
}

fn write(id: &str, path: &str) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: Some("toolu_x".into()),
        tool: "Write".into(),
        input: json!({"file_path": path, "content": "x"}),
        cwd: String::new(),
    }
}

fn human(id: &str) -> Approver {
    Approver {
        id: id.into(),
        name: id.into(),
        via: "terminal".into(),
    }
}

#[test]
fn allow_runs_in_the_sandbox_and_journals_request_decision_result_in_order() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let reply = c.request_exec(&bash("c1", "echo hi sk-SECRET")).unwrap();
    assert!(reply.verdict.is_allow());
    let result = reply.result.unwrap();
    assert!(result.ok);
    assert_eq!(result.output, "hi [REDACTED]\n");
    // The hash covers the real output, not the redacted one.
    assert_eq!(
        result.output_sha256,
        agp_contracts::canonical::sha256_hex(b"hi sk-SECRET\n")
    );
    let kinds = f.journal.kinds();
    let tail: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .skip_while(|k| *k != "tool_call.requested")
        .collect();
    assert_eq!(
        tail,
        ["tool_call.requested", "policy.decided", "tool_call.result"]
    );
    assert!(kinds.starts_with(&["sandbox.preflight".to_owned(), "session.started".to_owned()]));
    assert!(
        !f.journal.dump().contains("sk-SECRET"),
        "secret leaked: {}",
        f.journal.dump()
    );
    let stored = crate::store::Store::open_existing(&f.config.state_db)
        .unwrap()
        .sessions()
        .unwrap();
    assert!(
        stored.iter().all(|r| r.task == "t [REDACTED]"),
        "{stored:?}"
    );
    let decided = &f.journal.of("policy.decided")[0];
    assert_eq!(decided["rule_id"], "default-allow");
    assert_eq!(decided["policy_sha256"], "p0");
    assert_eq!(
        decided["input_sha256"],
        f.journal.of("tool_call.requested")[0]["input_sha256"]
    );
}

#[test]
fn deny_never_executes() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let marker = f.repo.join("marker");
    std::fs::write(&marker, "x").unwrap();
    let reply = c
        .request_exec(&bash("c1", &format!("rm {}", marker.display())))
        .unwrap();
    assert_eq!(reply.verdict.decision, "deny");
    assert_eq!(reply.verdict.rule_id.as_deref(), Some("no-rm"));
    assert!(reply.result.is_none());
    assert!(marker.exists());
    assert!(f.journal.of("tool_call.result").is_empty());
}

#[test]
fn require_granted_runs_and_journals_who() {
    let f = Fixture::new(Duration::from_secs(5));
    f.channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Granted {
            by: vec![human("alice")],
        });
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let reply = c.request_exec(&write("c1", "out.txt")).unwrap();
    assert!(reply.verdict.is_allow(), "{reply:?}");
    assert_eq!(reply.verdict.approved_by.as_deref(), Some("alice"));
    assert!(f.repo.join("out.txt").is_file());
    let granted = &f.journal.of("approval.granted")[0];
    assert_eq!(granted["by"][0]["id"], "alice");
    let kinds = f.journal.kinds();
    let i = kinds
        .iter()
        .position(|k| k == "approval.requested")
        .unwrap();
    assert_eq!(
        &kinds[i..],
        ["approval.requested", "approval.granted", "tool_call.result"]
    );
}

#[test]
fn human_deny_timeout_and_no_approver_are_distinct_denials() {
    let f = Fixture::new(Duration::from_millis(300));
    {
        let mut q = f.channel.answers.lock().unwrap();
        q.push_back(ApprovalOutcome::Denied {
            by: human("bob"),
            reason: Some("no".into()),
        });
        q.push_back(ApprovalOutcome::Unavailable {
            reason: "no terminal".into(),
        });
    }
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let r1 = c.request_exec(&write("c1", "a")).unwrap();
    assert_eq!(r1.verdict.decision, "deny");
    assert!(r1.verdict.reason.contains("bob"));
    let r2 = c.request_exec(&write("c2", "b")).unwrap();
    assert!(
        r2.verdict.reason.contains("no approver available"),
        "{}",
        r2.verdict.reason
    );
    // Queue empty: the channel never answers → timeout.
    let r3 = c.request_exec(&write("c3", "c")).unwrap();
    assert_eq!(r3.verdict.decision, "deny");
    assert!(r3.verdict.reason.contains("timed out"));
    assert_eq!(f.journal.of("approval.denied").len(), 2);
    assert_eq!(f.journal.of("approval.timeout").len(), 1);
    assert!(f.journal.of("tool_call.result").is_empty());
    assert!(!f.repo.join("a").exists() && !f.repo.join("c").exists());
}

#[test]
fn quorum_is_checked_by_the_daemon_too() {
    let f = Fixture::new(Duration::from_secs(5));
    // Edit needs 2 distinct approvers; the same person twice is one.
    f.channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Granted {
            by: vec![human("alice"), human("alice")],
        });
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let req = ToolCallRequest {
        id: "e1".into(),
        tool_use_id: None,
        tool: "Edit".into(),
        input: json!({"file_path": "x", "old_string": "a", "new_string": "b"}),
        cwd: String::new(),
    };
    let r = c.request_exec(&req).unwrap();
    assert_eq!(r.verdict.decision, "deny");
    assert!(r.verdict.reason.contains("quorum"));
}

#[test]
fn remembered_approval_is_not_asked_again_and_is_journaled_as_remembered() {
    let f = Fixture::new(Duration::from_secs(5));
    f.channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Granted {
            by: vec![human("alice")],
        });
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    assert!(c
        .request_exec(&write("c1", "remember.txt"))
        .unwrap()
        .verdict
        .is_allow());
    let second = c.request_exec(&write("c2", "remember.txt")).unwrap();
    assert!(second.verdict.is_allow());
    assert_eq!(
        second.verdict.approved_by.as_deref(),
        Some("remembered:alice")
    );
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 1);
    let grants = f.journal.of("approval.granted");
    assert_eq!(grants[1]["remembered"], true);
    // A different input is asked again (and, with nobody answering, times out).
}

#[test]
fn journal_failure_denies_and_executes_nothing() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    f.journal.broken.store(true, Ordering::SeqCst);
    let reply = c.request_exec(&bash("c1", "touch made")).unwrap();
    assert_eq!(reply.verdict.decision, "deny");
    assert!(reply.verdict.reason.contains("journal"));
    assert!(!f.repo.join("made").exists());
}

#[test]
fn float_input_cannot_be_bound_and_is_denied() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    let req = ToolCallRequest {
        id: "f1".into(),
        tool_use_id: None,
        tool: "Bash".into(),
        input: json!({"command": "true", "timeout": 1.5}),
        cwd: String::new(),
    };
    let reply = c.request_exec(&req).unwrap();
    assert_eq!(reply.verdict.decision, "deny");
    assert_eq!(reply.verdict.rule_id.as_deref(), Some("agp.invalid-input"));
}

fn expect_refused(r: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) {
    match r {
        Err(ClientError::Refused { code: c, .. }) if c == code => {}
        other => panic!("expected {code}, got {other:?}"),
    }
}

#[test]
fn replayed_ids_wrong_tokens_and_garbage_are_rejected_journaled_and_the_daemon_keeps_serving() {
    use std::io::{Read, Write};
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::ProxyExec);
    let mut c = f.client(&token);
    c.request_exec(&bash("c1", "true")).unwrap();
    expect_refused(c.request_exec(&bash("c1", "true")), ErrorCode::ReplayedId);
    // Replays are refused on a fresh connection too.
    expect_refused(
        f.client(&token).request_exec(&bash("c1", "true")),
        ErrorCode::ReplayedId,
    );

    let sock = f.config.socket_path();
    let mut bad = Client::connect(&sock, Duration::from_secs(5)).unwrap();
    expect_refused(bad.hello("not-a-token"), ErrorCode::BadToken);

    let raw = |bytes: &[u8]| -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(raw(b"garbage\n").contains("\"malformed\""));
    assert!(raw(b"{\"type\":\"exec_shell\"}\n").contains("\"unknown_message\""));
    assert!(
        raw(b"{\"type\":\"hello\",\"protocol\":99,\"token\":\"x\"}\n")
            .contains("\"protocol_version\"")
    );
    assert!(raw(b"{\"type\":\"tool_call_request\",\"id\":\"x\",\"tool\":\"Bash\",\"input\":{},\"cwd\":\"\"}\n").contains("\"unauthenticated\""));
    let mut huge = vec![b'{'; agp_gateway::MAX_FRAME_BYTES + 100];
    huge.push(b'\n');
    assert!(raw(&huge).contains("\"frame_too_large\""));
    expect_refused(
        Client::connect(&sock, Duration::from_secs(5))
            .unwrap()
            .open_session(
                "wrong",
                "x",
                f.repo.to_str().unwrap(),
                "",
                SessionMode::Gate,
            ),
        ErrorCode::BadToken,
    );

    let rejected: Vec<String> = f
        .journal
        .of("gateway.rejected")
        .iter()
        .map(|b| b["code"].as_str().unwrap().to_owned())
        .collect();
    for code in [
        "replayed_id",
        "bad_token",
        "malformed",
        "unknown_message",
        "protocol_version",
        "unauthenticated",
        "frame_too_large",
    ] {
        assert!(
            rejected.iter().any(|c| c == code),
            "{code} not journaled: {rejected:?}"
        );
    }
    // Still serving.
    assert!(f
        .client(&token)
        .request_exec(&bash("c2", "true"))
        .unwrap()
        .verdict
        .is_allow());
}

#[test]
fn gate_mode_replies_verdict_and_journals_reported_result_once() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::Gate);
    let mut c = f.client(&token);
    let v = c.request(&bash("g1", "ls")).unwrap();
    assert!(v.is_allow());
    let result = ToolCallResult {
        id: "g1".into(),
        ok: true,
        output: "file sk-SECRET".into(),
        output_sha256: "a".repeat(64),
        input_sha256: Some(v.input_sha256.clone()),
    };
    c.report_result(&result).unwrap();
    let journaled = &f.journal.of("tool_call.result")[0];
    assert_eq!(journaled["output"], "file [REDACTED]");
    assert_eq!(journaled["reported_by"], "agent");
    // A harness that reports the same call again (Claude Code fires PostToolUseFailure and
    // then PostToolUse for a failed call) is acknowledged; the first result stands, alone.
    let mut c2 = f.client(&token);
    c2.report_result(&ToolCallResult {
        ok: false,
        output: "a different story".into(),
        ..result.clone()
    })
    .unwrap();
    let results = f.journal.of("tool_call.result");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["output"], "file [REDACTED]");
    assert_eq!(results[0]["ok"], true);
    // A call that was never allowed has no result to report.
    let mut c4 = f.client(&token);
    expect_refused(
        c4.report_result(&ToolCallResult {
            id: "never-requested".into(),
            ..result.clone()
        }),
        ErrorCode::UnknownCall,
    );
    // A denied call has no result to report.
    let mut c3 = f.client(&token);
    assert_eq!(c3.request(&bash("g2", "rm x")).unwrap().decision, "deny");
    expect_refused(
        c3.report_result(&ToolCallResult {
            id: "g2".into(),
            ..result
        }),
        ErrorCode::UnknownCall,
    );
}

/// A PostToolUse forged (or changed by the harness) to report another input than the approved
/// one: journaled as a mismatch, never as the approved call's result.
#[test]
fn a_result_for_another_input_is_a_mismatch_never_linked_to_the_approved_call() {
    let f = Fixture::new(Duration::from_secs(5));
    let token = f.session(SessionMode::Gate);
    let mut c = f.client(&token);
    let approved = c.request(&bash("m1", "ls")).unwrap();
    assert!(approved.is_allow());
    let other = agp_contracts::canonical::sha256_of_value(&json!({"command": "rm -rf ~"})).unwrap();
    let forged = ToolCallResult {
        id: "m1".into(),
        ok: true,
        output: "done".into(),
        output_sha256: "b".repeat(64),
        input_sha256: Some(other.clone()),
    };
    c.report_result(&forged).unwrap();
    assert!(
        f.journal.of("tool_call.result").is_empty(),
        "{}",
        f.journal.dump()
    );
    let m = &f.journal.of("tool_call.result_mismatch")[0];
    assert_eq!(m["call_id"], "m1");
    assert_eq!(m["approved_input_sha256"], approved.input_sha256.as_str());
    assert_eq!(m["reported_input_sha256"], other.as_str());
    // The slot is used up: the real result cannot be slipped in afterwards either. A repeat
    // report is acknowledged (a harness may report one call twice) and journals nothing.
    let mut c2 = f.client(&token);
    c2.report_result(&ToolCallResult {
        input_sha256: Some(approved.input_sha256.clone()),
        ..forged.clone()
    })
    .unwrap();
    assert!(f.journal.of("tool_call.result").is_empty());
    assert_eq!(f.journal.of("tool_call.result_mismatch").len(), 1);
    // A result that names no input at all is not linked either.
    let mut c3 = f.client(&token);
    assert!(c3.request(&bash("m2", "ls")).unwrap().is_allow());
    c3.report_result(&ToolCallResult {
        id: "m2".into(),
        input_sha256: None,
        ..forged
    })
    .unwrap();
    let m = &f.journal.of("tool_call.result_mismatch")[1];
    assert_eq!(
        (m["call_id"].as_str(), &m["reported_input_sha256"]),
        (Some("m2"), &Value::Null)
    );
    assert!(f.journal.of("tool_call.result").is_empty());
}

/// Whatever a session leaves in its repository is checked when it ends: planted items are
/// neutralized and the report is journaled before `session.ended`; what was there before is
/// reported as pre-existing and kept.
#[test]
fn ending_a_session_journals_the_integrity_report_and_quarantines_what_it_left() {
    let mut f = Fixture::new(Duration::from_secs(5));
    std::os::unix::fs::symlink("/usr/share", f.repo.join("old-link")).unwrap();
    let token = f.session(SessionMode::Gate);
    let mut c = f.client(&token);
    std::os::unix::fs::symlink("/root/.ssh", f.repo.join("ssh")).unwrap();
    let hooks = f.repo.join("sub/.git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::create_dir_all(f.repo.join("sub/.git/objects")).unwrap();
    std::fs::create_dir_all(f.repo.join("sub/.git/refs")).unwrap();
    std::fs::write(f.repo.join("sub/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
    std::fs::write(hooks.join("pre-commit"), "#!/bin/sh\nid\n").unwrap();
    c.end_session(Some("completed")).unwrap();
    f.stop();

    let kinds = f.journal.kinds();
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(at("session.integrity") < at("session.ended"), "{kinds:?}");
    let body = &f.journal.of("session.integrity")[0];
    let findings = body["report"]["findings"].as_array().unwrap();
    let by_path = |p: &str| findings.iter().find(|x| x["path"] == p).unwrap().clone();
    let quarantine = f
        .config
        .agp_home
        .join("quarantine")
        .join(body["session"].as_str().unwrap());
    assert_eq!(by_path("ssh")["action"], "quarantined");
    assert_eq!(by_path("sub/.git")["action"], "quarantined");
    assert_eq!(by_path("old-link")["origin"], "pre_existing");
    assert_eq!(by_path("old-link")["action"], "kept");
    assert!(f.repo.join("old-link").symlink_metadata().is_ok());
    assert!(f.repo.join("ssh").symlink_metadata().is_err());
    assert!(quarantine.join("sub/.git/hooks/pre-commit").exists());
    assert_eq!(body["by_session"], 2);
    assert_eq!(body["not_neutralized"], 0);
}

#[test]
fn concurrent_sessions_are_served_at_once() {
    let f = Fixture::new(Duration::from_secs(2));
    // A require that never resolves must not hold up other sessions' calls.
    let slow_token = f.session(SessionMode::ProxyExec);
    let sock = f.config.socket_path();
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(&sock, Duration::from_secs(10)).unwrap();
        c.hello(&slow_token).unwrap();
        c.request_exec(&write("w1", "never")).unwrap()
    });
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let token = f.session(SessionMode::ProxyExec);
            let sock = f.config.socket_path();
            std::thread::spawn(move || {
                let mut c = Client::connect(&sock, Duration::from_secs(10)).unwrap();
                c.hello(&token).unwrap();
                for j in 0..10 {
                    assert!(c
                        .request_exec(&bash(&format!("c{i}-{j}"), "true"))
                        .unwrap()
                        .verdict
                        .is_allow());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(f.journal.of("tool_call.result").len(), 80);
    // Eventually the slow one times out (2 s) and is denied, not left hanging.
    assert_eq!(slow.join().unwrap().verdict.decision, "deny");
}

#[test]
fn pending_approvals_survive_a_restart_and_are_settled() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_millis(400);
    let journal = Arc::new(MemJournal::default());
    die_with_a_pending_approval(&config, &repo, &journal);
    std::thread::sleep(Duration::from_millis(500));

    // Second daemon: the approval expired while it was down → approval.timeout, recovered.
    let f = Fixture::with(
        dir,
        repo,
        config,
        journal.clone(),
        Arc::new(QueueChannel::default()),
    );
    let timeouts = journal.of("approval.timeout");
    assert_eq!(timeouts.len(), 1, "{}", journal.dump());
    assert_eq!(timeouts[0]["call_id"], "p1");
    assert_eq!(timeouts[0]["recovered"], true);
    drop(f);
}

#[test]
fn a_pending_approval_within_its_time_is_reattached_after_restart() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(30);
    let journal = Arc::new(MemJournal::default());
    die_with_a_pending_approval(&config, &repo, &journal);

    let channel = Arc::new(QueueChannel::default());
    channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Denied {
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
    let (dir, repo, mut config) = world();
    config.lease_ttl = Duration::from_millis(200);
    let journal = Arc::new(MemJournal::default());
    let id = a_session_of_a_stopped_daemon(&config, &repo, &journal).id;
    std::thread::sleep(Duration::from_millis(300));
    let _f = Fixture::with(
        dir,
        repo,
        config,
        journal.clone(),
        Arc::new(QueueChannel::default()),
    );
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
            .success())
    };
    let (dir, repo, mut config) = world();
    config.lease_ttl = Duration::from_millis(200);
    mkfifo(&repo.join("before"));
    let journal = Arc::new(MemJournal::default());
    let id = a_session_of_a_stopped_daemon(&config, &repo, &journal).id;
    mkfifo(&repo.join("planted"));
    std::thread::sleep(Duration::from_millis(300));
    let _f = Fixture::with(
        dir,
        repo.clone(),
        config.clone(),
        journal.clone(),
        Arc::new(QueueChannel::default()),
    );
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
fn socket_and_run_dir_are_private_and_a_second_daemon_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(Duration::from_secs(5));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.config.run_dir), 0o700);
    assert_eq!(mode(&f.config.socket_path()), 0o600);
    assert_eq!(mode(&f.config.admin_token_path()), 0o600);
    let again = f.rt.block_on(Daemon::start(
        f.config.clone(),
        parts(&f.journal, &f.channel),
    ));
    assert!(matches!(again, Err(crate::DaemonError::AlreadyRunning(_))));
}

#[test]
fn admin_channel_opens_a_session_and_ending_it_closes_the_token() {
    let f = Fixture::new(Duration::from_secs(5));
    let admin = std::fs::read_to_string(f.config.admin_token_path()).unwrap();
    let mut c = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    let opened = c
        .open_session(
            &admin,
            "claude-code",
            f.repo.to_str().unwrap(),
            "fix it",
            SessionMode::Gate,
        )
        .unwrap();
    let mut s = f.client(&opened.token);
    assert!(s.request(&bash("a1", "ls")).unwrap().is_allow());
    s.end_session(Some("completed")).unwrap();
    let mut again = Client::connect(&f.config.socket_path(), Duration::from_secs(5)).unwrap();
    assert!(again.hello(&opened.token).is_err());
    assert_eq!(f.journal.of("session.ended").len(), 1);
    // Projections reach the channel through the outbox.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !f
        .channel
        .projected
        .lock()
        .unwrap()
        .iter()
        .any(|k| k == "session.ended")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "session.ended never projected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_live_session_of_a_dead_daemon_is_taken_over_with_a_new_fencing_token() {
    let (dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let opened = a_session_of_a_stopped_daemon(&config, &repo, &journal);

    // Within the lease: not reaped; the token still works and the new daemon takes the lease.
    let f = Fixture::with(
        dir,
        repo,
        config,
        journal.clone(),
        Arc::new(QueueChannel::default()),
    );
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

/// A channel whose projections always fail.
struct BrokenProjector(QueueChannel);
impl ApprovalChannel for BrokenProjector {
    fn name(&self) -> &str {
        "broken"
    }
    fn request_approval<'a>(
        &'a self,
        r: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        self.0.request_approval(r)
    }
    fn project<'a>(
        &'a self,
        _k: &'a str,
        _s: Option<&'a str>,
        _b: &'a Value,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async {
            Err(ChannelError::Failed {
                channel: "broken".into(),
                message: "down".into(),
            })
        })
    }
}

#[test]
fn a_failing_projection_is_retried_with_backoff_and_never_blocks_calls() {
    let (_dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let rt = runtime();
    let mut p = parts(&journal, &Arc::new(QueueChannel::default()));
    p.channel = Arc::new(BrokenProjector(QueueChannel::default()));
    let daemon = rt.block_on(Daemon::start(config.clone(), p)).unwrap();
    let token = open_session(&rt, &daemon, &repo, SessionMode::Gate).token;
    rt.spawn(daemon.clone().serve(std::future::pending()));
    let mut c = Client::connect(&config.socket_path(), Duration::from_secs(10)).unwrap();
    c.hello(&token).unwrap();
    // Calls go through while the channel is down (denials are queued too).
    assert_eq!(c.request(&bash("d1", "rm x")).unwrap().decision, "deny");
    assert!(c.request(&bash("a1", "ls")).unwrap().is_allow());
    let store = crate::store::Store::open_existing(&config.state_db).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let due_later = store.due_outbox(i64::MAX, 10).unwrap();
        if due_later.len() == 2 && due_later.iter().all(|r| r.attempts >= 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections were not attempted: {due_later:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Failed attempts wait for their backoff instead of being retried at once.
    assert!(store
        .due_outbox(crate::util::now_ms(), 10)
        .unwrap()
        .is_empty());
    rt.shutdown_background();
}

#[test]
fn a_remembered_approval_covers_only_the_same_tool_cwd_and_input() {
    let f = Fixture::new(Duration::from_millis(300));
    f.channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Granted {
            by: vec![human("alice")],
        });
    let token = f.session(SessionMode::Gate);
    let mut c = f.client(&token);
    assert!(c.request(&write("c1", "remember.txt")).unwrap().is_allow());
    assert!(c.request(&write("c2", "remember.txt")).unwrap().is_allow());
    // Same input, another working directory: asked again (nobody answers → timeout → deny).
    let mut elsewhere = write("c3", "remember.txt");
    elsewhere.cwd = "/somewhere/else".into();
    assert_eq!(c.request(&elsewhere).unwrap().decision, "deny");
    assert_eq!(f.channel.asked.load(Ordering::SeqCst), 2);
}

#[test]
fn an_agent_that_hangs_up_during_an_approval_gets_its_approval_settled_and_nothing_runs() {
    use std::io::Write;
    let f = Fixture::new(Duration::from_secs(60));
    let token = f.session(SessionMode::ProxyExec);
    {
        let mut raw = std::os::unix::net::UnixStream::connect(f.config.socket_path()).unwrap();
        let hello = serde_json::json!({"type": "hello", "protocol": 1, "token": token});
        let call = serde_json::json!({"type": "tool_call_request", "id": "w1", "tool": "Write",
                                      "input": {"file_path": "gone.txt", "content": "x"}, "cwd": ""});
        raw.write_all(format!("{hello}\n{call}\n").as_bytes())
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.journal.of("approval.requested").is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
    } // The agent hangs up while the approval is pending.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.journal.of("approval.denied").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "abandoned approval never settled: {}",
            f.journal.dump()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let denied = &f.journal.of("approval.denied")[0];
    assert!(
        denied["reason"].as_str().unwrap().contains("disconnected"),
        "{denied}"
    );
    assert!(f.journal.of("tool_call.result").is_empty());
    assert!(!f.repo.join("gone.txt").exists());
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

/// A sandbox that proves itself but then fails every command.
struct FailingProvider;
impl SandboxProvider for FailingProvider {
    type Session = ();
    fn spawn(&self, _spec: &SandboxSpec) -> Result<(), SandboxError> {
        Ok(())
    }
    fn exec(&self, _s: &(), _r: &ExecRequest) -> Result<ExecOutput, SandboxError> {
        Err(SandboxError::Refused("namespace creation failed".into()))
    }
    fn teardown(&self, _s: ()) -> Result<(), SandboxError> {
        Ok(())
    }
    fn isolation(&self) -> Isolation {
        HostProvider.isolation()
    }
    fn preflight(&self, _s: &()) -> Result<PreflightReport, SandboxError> {
        HostProvider.preflight(&PathBuf::new())
    }
}

#[test]
fn a_sandbox_failure_is_journaled_as_an_error_result_never_as_success() {
    let (_dir, repo, config) = world();
    let journal = Arc::new(MemJournal::default());
    let rt = runtime();
    let mut p = parts(&journal, &Arc::new(QueueChannel::default()));
    p.sandbox = Some(Arc::new(Provider(Arc::new(FailingProvider))));
    let daemon = rt.block_on(Daemon::start(config.clone(), p)).unwrap();
    let token = open_session(&rt, &daemon, &repo, SessionMode::ProxyExec).token;
    rt.spawn(daemon.clone().serve(std::future::pending()));
    let mut c = Client::connect(&config.socket_path(), Duration::from_secs(10)).unwrap();
    c.hello(&token).unwrap();
    let reply = c.request_exec(&bash("x1", "echo hi")).unwrap();
    let result = reply.result.unwrap();
    assert!(!result.ok);
    assert!(
        result.output.contains("namespace creation failed"),
        "{result:?}"
    );
    let journaled = &journal.of("tool_call.result")[0];
    assert_eq!(journaled["ok"], false);
    assert!(journaled["error"]
        .as_str()
        .unwrap()
        .contains("namespace creation failed"));
    rt.shutdown_background();
}

#[test]
fn ending_a_session_cancels_its_pending_approval_before_it_ends() {
    let f = Fixture::new(Duration::from_secs(60));
    let session = open_session(&f.rt, &f.daemon, &f.repo, SessionMode::ProxyExec);
    let sock = f.config.socket_path();
    let token = session.token.clone();
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(&sock, Duration::from_secs(30)).unwrap();
        c.hello(&token).unwrap();
        c.request(&write("w1", "late.txt"))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.journal.of("approval.requested").is_empty() {
        assert!(std::time::Instant::now() < deadline, "{}", f.journal.dump());
        std::thread::sleep(Duration::from_millis(10));
    }
    f.rt.block_on(f.daemon.end_session(&session.id, "interrupted"))
        .unwrap();
    // The prompt is withdrawn and the agent is denied; nothing runs.
    let reply = waiter.join().unwrap().unwrap();
    assert_eq!(reply.decision, "deny");
    assert!(!f.repo.join("late.txt").exists());
    let kinds: Vec<String> = f
        .journal
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _, _)| k.clone())
        .collect();
    let denied = kinds.iter().position(|k| k == "approval.denied").unwrap();
    let ended = kinds.iter().position(|k| k == "session.ended").unwrap();
    assert!(denied < ended, "{kinds:?}");
    let body = &f.journal.of("approval.denied")[0];
    assert_eq!(body["cancelled"], true);
    assert_eq!(body["call_id"], "w1");
    assert!(
        body["reason"].as_str().unwrap().contains("interrupted"),
        "{body}"
    );
    // Settled once: the withdrawn prompt's own conclusion found it resolved.
    assert_eq!(f.journal.of("approval.denied").len(), 1);
    assert_eq!(f.journal.of("session.ended")[0]["status"], "interrupted");
    let store = crate::store::Store::open_existing(&f.config.state_db).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

#[test]
fn a_later_daemon_ends_an_ephemeral_daemons_session_without_asking_again() {
    let (dir, repo, mut config) = world();
    config.approval_timeout = Duration::from_secs(30);
    config.ephemeral = true;
    let journal = Arc::new(MemJournal::default());
    die_with_a_pending_approval(&config, &repo, &journal);

    // A channel that would grant at once: it must never be asked for the dead session.
    let channel = Arc::new(QueueChannel::default());
    channel
        .answers
        .lock()
        .unwrap()
        .push_back(ApprovalOutcome::Granted {
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
