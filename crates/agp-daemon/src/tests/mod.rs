//! Tests of the loop through the real socket with the real blocking client. The journal, policy,
//! channel and sandbox here are small in-test implementations of the contracts (the integration
//! tests under crates/agp/tests use the real ones).

mod calls;
mod egress;
mod gateway;
mod remember;
mod restart;
mod sessions;
mod stop;
mod web;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::events::Projection;
use agp_contracts::sandbox::{PreflightCheck, PreflightReport};
use agp_contracts::{
    ApprovalChannel, ApprovalOutcome, ApprovalRequest, ApprovalSpec, Approver, BoxFuture,
    ChannelError, Decision, EvalContext, ExecOutput, ExecRequest, Isolation, PolicyEngine,
    SandboxError, SandboxProvider, SandboxSpec, ToolCall, Verdict,
};
use agp_gateway::{Client, ClientError, ErrorCode, SessionMode, ToolCallRequest, ToolCallResult};
use serde_json::{json, Value};

use agp_testkit::MemJournal;

use crate::exec::Provider;
use crate::{Daemon, DaemonConfig, Parts, Redactor, SessionInfo, SessionParams};

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
        let (decision, rule, approval) = match call.tool {
            agp_contracts::Tool::Bash if cmd.contains("rm ") => (Decision::Deny, "no-rm", None),
            agp_contracts::Tool::Write => (
                Decision::Require,
                "writes",
                Some(ApprovalSpec {
                    approvers: vec![],
                    quorum: 1,
                    remember_secs: path.contains("remember").then_some(60),
                }),
            ),
            agp_contracts::Tool::Edit => (
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
    /// The `remember_secs` each request offered.
    offered: Mutex<Vec<Option<u64>>>,
    /// Every request as the channel got it.
    requests: Mutex<Vec<ApprovalRequest>>,
    projected: Mutex<Vec<String>>,
    /// Every projection fails (a channel that is down), after being counted.
    projections_fail: bool,
    /// With no queued answer: the answer a test sends later (instead of never answering).
    later: Mutex<Option<tokio::sync::oneshot::Receiver<ApprovalOutcome>>>,
    /// Every prompt withdrawn: (call id, what the channel was told).
    cancelled: Mutex<Vec<(String, String)>>,
}

impl QueueChannel {
    /// Queues the next answer.
    fn answer(&self, outcome: ApprovalOutcome) {
        self.answers.lock().unwrap().push_back(outcome);
    }

    /// Queues an "allow for this session" by these people.
    fn grant_for_session_by(&self, ids: &[&str]) {
        self.answer(ApprovalOutcome::GrantedForSession {
            by: ids.iter().map(|id| human(id)).collect(),
        });
    }

    /// Queues a grant by these people.
    fn grant_by(&self, ids: &[&str]) {
        self.answer(ApprovalOutcome::Granted {
            by: ids.iter().map(|id| human(id)).collect(),
        });
    }

    /// A channel whose first answer is `outcome`.
    fn answering(outcome: ApprovalOutcome) -> Arc<Self> {
        let channel = Arc::new(Self::default());
        channel.answer(outcome);
        channel
    }
}

impl ApprovalChannel for QueueChannel {
    fn name(&self) -> &str {
        "queue"
    }
    fn request_approval<'a>(
        &'a self,
        r: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.offered.lock().unwrap().push(r.remember_secs);
        self.requests.lock().unwrap().push(r.clone());
        let next = self.answers.lock().unwrap().pop_front();
        let later = next
            .is_none()
            .then(|| self.later.lock().unwrap().take())
            .flatten();
        Box::pin(async move {
            match (next, later) {
                (Some(o), _) => Ok(o),
                (None, Some(rx)) => match rx.await {
                    Ok(o) => Ok(o),
                    Err(_) => std::future::pending().await,
                },
                (None, None) => std::future::pending().await,
            }
        })
    }
    fn cancel<'a>(&'a self, r: &'a ApprovalRequest, reason: &'a str) -> BoxFuture<'a, ()> {
        self.cancelled
            .lock()
            .unwrap()
            .push((r.call_id.clone(), reason.to_owned()));
        Box::pin(async {})
    }
    fn project<'a>(
        &'a self,
        _: Option<&'a str>,
        event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.projected.lock().unwrap().push(event.kind().to_owned());
        let fail = self.projections_fail;
        Box::pin(async move {
            if fail {
                return Err(ChannelError::Failed {
                    channel: "queue".into(),
                    message: "down".into(),
                });
            }
            Ok(())
        })
    }
}

/// What a command run on the host by a test sandbox did.
pub(crate) fn exec_output(out: std::process::Output) -> ExecOutput {
    ExecOutput {
        exit_code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
        timed_out: false,
        duration_ms: 0,
        truncated: false,
        ..Default::default()
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
        Ok(exec_output(out))
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
                detail: String::new(),
            }],
            duration_ms: 0,
            target: None,
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

/// A daemon on `config` with `parts`, serving until its runtime goes, and the token of a
/// session it opened in `repo`.
fn serving(
    config: &DaemonConfig,
    parts: Parts,
    repo: &Path,
    mode: SessionMode,
) -> (tokio::runtime::Runtime, Arc<Daemon>, String) {
    let rt = runtime();
    let daemon = rt.block_on(Daemon::start(config.clone(), parts)).unwrap();
    let token = open_session(&rt, &daemon, repo, mode).token;
    rt.spawn(daemon.clone().serve(std::future::pending()));
    (rt, daemon, token)
}

/// A client of the daemon at `socket`, past its hello.
fn connect(socket: &Path, token: &str) -> Client {
    let mut c = Client::connect(socket, Duration::from_secs(20)).unwrap();
    c.hello(token).unwrap();
    c
}

/// Waits until `done`, failing with `what` after ten seconds.
fn eventually(what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{}", what());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A first daemon (on `config`, journaling to `journal`) that dies, its runtime dropped without
/// shutdown, while a client's call `p1` waits for an approval from a channel that never
/// answers. The client learns nothing good: its connection died (the hook turns that into deny).
fn die_with_a_pending_approval(config: &DaemonConfig, repo: &Path, journal: &Arc<MemJournal>) {
    let parts = parts(journal, &Arc::new(QueueChannel::default()));
    let (rt, daemon, token) = serving(config, parts, repo, SessionMode::Gate);
    let sock = config.socket_path();
    let waiter = std::thread::spawn(move || connect(&sock, &token).request(&write("p1", "x")));
    while journal.of("approval.requested").is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.shutdown_background();
    drop(daemon);
    assert!(waiter.join().unwrap().is_err());
    // `shutdown_background` does not wait for the runtime's workers: the listener can still
    // accept for a moment, and a daemon started then would take it for a live one
    // (AlreadyRunning). The dead daemon is dead once nothing answers on its socket.
    let sock = config.socket_path();
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&sock).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the stopped daemon still accepts on {}", sock.display());
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

    /// A daemon on a fresh channel taking over `config` and `journal` from an earlier one.
    fn after(
        dir: tempfile::TempDir,
        repo: PathBuf,
        config: DaemonConfig,
        journal: &Arc<MemJournal>,
    ) -> Self {
        let channel = Arc::new(QueueChannel::default());
        Self::with(dir, repo, config, journal.clone(), channel)
    }

    fn client(&self, token: &str) -> Client {
        connect(&self.config.socket_path(), token)
    }

    /// A client of a new session in `mode`.
    fn connect(&self, mode: SessionMode) -> Client {
        self.client(&self.session(mode))
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

fn call(id: &str, tool: &str, input: Value) -> ToolCallRequest {
    ToolCallRequest {
        id: id.into(),
        tool_use_id: None,
        tool: tool.into(),
        input,
        cwd: String::new(),
    }
}

fn bash(id: &str, command: &str) -> ToolCallRequest {
    call(id, "Bash", json!({"command": command}))
}

fn write(id: &str, path: &str) -> ToolCallRequest {
    ToolCallRequest {
        tool_use_id: Some("toolu_x".into()),
        ..call(id, "Write", json!({"file_path": path, "content": "x"}))
    }
}

fn human(id: &str) -> Approver {
    Approver {
        id: id.into(),
        name: id.into(),
        via: "terminal".into(),
    }
}
