//! Shared by the real-agent tests (`agents_claude.rs`, `agents_codex.rs`, `agents_slack.rs`):
//! finds the pinned Claude Code and Codex installs (`.ci/run` puts them under
//! `target/agent-clients`), builds an agp home with a test policy, reads the journal, and holds
//! the scripted calls and checks that the Claude Code and Codex tests share.
//!
//! When a client is not installed the tests SKIP WITH A LOUD MESSAGE (never silently); with
//! `AGP_REQUIRE_AGENT_CLIENTS=1` they fail instead.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agp_contracts::canonical::{sha256_hex, sha256_of_value};
use agp_testkit::{FakeModel, Turn};
use serde_json::Value;

pub const AGP: &str = env!("CARGO_BIN_EXE_agp");

/// The versions the real-client tests run against (README's table): the oldest agp supports,
/// the pinned one, and the newest on the npm registry when last updated. `.ci/run` installs
/// each under `target/agent-clients/<name>-<version>` with `npm install --prefix`.
pub const CLAUDE_VERSIONS: &[&str] = &["2.1.197", "2.1.331", "2.1.332"];
pub const CODEX_VERSIONS: &[&str] = &["0.169.0", "0.171.0"];
/// The pinned versions the single-version tests use.
pub const CLAUDE_VERSION: &str = "2.1.331";
pub const CODEX_VERSION: &str = "0.169.0";

/// Policy for the tests: echo/cat/python3 allowed (python3's writes and connections are
/// invisible to the policy, which is what the sandbox and egress tests need), writes inside the
/// project allowed, `mkdir` needs a human, everything else denied.
pub const POLICY: &str = r#"
version = 1
default = "deny"

[[rule]]
id = "harmless"
effect = "allow"
match = ["Bash(echo *)", "Bash(cat *)", "Bash(ls *)", "Bash(python3 *)"]
reason = "harmless commands"

[[rule]]
id = "write-project"
effect = "allow"
match = ["Edit(/**)"]
reason = "writing inside the project"

[[rule]]
id = "docs-site"
effect = "allow"
match = ["WebFetch(domain:allowed.example)"]
reason = "the docs site"

[[rule]]
id = "needs-human"
effect = "require"
match = ["Bash(mkdir *)"]
reason = "creating directories needs a human"
"#;

fn agent_dir() -> PathBuf {
    match std::env::var_os("AGP_AGENT_CLIENTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/agent-clients"),
    }
}

/// One npm install of an agent CLI (`npm install --prefix DIR`).
#[derive(Debug, Clone)]
pub struct Client {
    pub version: &'static str,
    /// `DIR/node_modules/.bin`: what a user puts on PATH.
    pub bin_dir: PathBuf,
    /// The launcher npm links there (`claude`, `codex`).
    pub launcher: PathBuf,
    /// The native binary deep in the platform package.
    pub native: PathBuf,
}

impl Client {
    /// PATH with this install's `.bin` first, as after `npm install -g` with its prefix on PATH.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        )
    }
}

/// How a test names the agent to `agp run`.
#[derive(Clone, Copy)]
pub enum Via {
    /// The agent's command on PATH: npm's `.bin` link to its launcher, as users have it.
    NpmPath,
    /// This variable (`AGP_CLAUDE_BIN`, `AGP_CODEX_BIN`) naming the native binary deep in the
    /// platform package.
    NativeVar(&'static str),
}

impl Via {
    /// The variable that makes `agp run` find `client` this way.
    pub fn env(self, client: &Client) -> (&'static str, String) {
        match self {
            Via::NpmPath => ("PATH", client.path_env()),
            Via::NativeVar(var) => (var, client.native.display().to_string()),
        }
    }
}

fn installed(client: Client, what: &str, package: &str) -> Option<Client> {
    let ok = Command::new(&client.native)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(client.version));
    if ok && client.launcher.exists() {
        return Some(client);
    }
    let msg = format!(
        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {what} {version} is not installed at {}\n\
         !!! (the npm registry was unreachable when .ci/run tried to install it).\n\
         !!! Install: npm install --prefix {} {package}@{version}\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        client.native.display(),
        client.bin_dir.parent().and_then(Path::parent).unwrap_or(Path::new("?")).display(),
        version = client.version,
    );
    if std::env::var_os("AGP_REQUIRE_AGENT_CLIENTS").is_some() {
        panic!("{msg}");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing
    // tests, and a skip must never be silent.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    None
}

fn arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("arm64", "aarch64")
    } else {
        ("x64", "x86_64")
    }
}

pub fn claude_at(version: &'static str) -> Option<Client> {
    let nm = agent_dir().join(format!("claude-code-{version}/node_modules"));
    installed(
        Client {
            version,
            bin_dir: nm.join(".bin"),
            launcher: nm.join(".bin/claude"),
            native: nm.join(format!(
                "@anthropic-ai/claude-code-linux-{}/claude",
                arch().0
            )),
        },
        "Claude Code",
        "@anthropic-ai/claude-code",
    )
}

pub fn codex_at(version: &'static str) -> Option<Client> {
    let nm = agent_dir().join(format!("codex-{version}/node_modules"));
    let (npm, triple) = arch();
    installed(
        Client {
            version,
            bin_dir: nm.join(".bin"),
            launcher: nm.join(".bin/codex"),
            native: nm.join(format!(
                "@openai/codex-linux-{npm}/vendor/{triple}-unknown-linux-musl/bin/codex"
            )),
        },
        "Codex",
        "@openai/codex",
    )
}

/// The pinned Claude Code's native binary.
pub fn claude() -> Option<PathBuf> {
    claude_at(CLAUDE_VERSION).map(|c| c.native)
}

/// The pinned Codex's native binary.
pub fn codex() -> Option<PathBuf> {
    codex_at(CODEX_VERSION).map(|c| c.native)
}

/// `session.started`'s record of the agent: the version and the sha256 of the native binary
/// agp ran, whatever the user named.
pub fn check_identity(j: &[Value], client: &Client) {
    let started = j
        .iter()
        .find(|e| e["kind"] == "session.started")
        .expect("a session started");
    let id = &started["body"]["intendant_identity"];
    assert_eq!(id["version"], client.version, "{id:#}");
    let sha = sha256_hex(&std::fs::read(&client.native).unwrap());
    assert_eq!(id["sha256"], sha.as_str(), "{id:#}");
    assert_eq!(id["tested"], true, "{id:#}");
}

/// The failed call `n` (an allowed `python3` of a missing script) has exactly one result, a failed one.
pub fn check_failed_call(j: &[Value], calls: CallNames, n: u64) {
    let results = of_call(j, "tool_call.result", &calls.journal(n));
    let about: Vec<&Value> = j
        .iter()
        .filter(|e| e["body"]["call_id"] == calls.journal(n) || e["kind"] == "gateway.rejected")
        .collect();
    assert_eq!(results.len(), 1, "one result per failed call: {about:#?}");
    assert_eq!(results[0]["body"]["ok"], false, "{:#}", results[0]);
}

/// A fresh agp home (initialized, keyed), a repository and the test policy, in one tempdir.
pub struct World {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub policy: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("agp-agents-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("home");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, POLICY).unwrap();
        for args in [&["init"][..], &["keygen"][..]] {
            let out = Command::new(AGP)
                .arg("--home")
                .arg(&home)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(out.status.success(), "agp {args:?}: {}", text(&out.stderr));
        }
        Self {
            dir,
            home,
            repo,
            policy,
        }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A fresh directory `name` in the world (an empty home for the agent, say).
    pub fn new_dir(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `agp run` of `intendant` on this world's home, repository and policy, with `task`.
    pub fn run_command(&self, intendant: &str, task: &str) -> Command {
        let mut cmd = Command::new(AGP);
        cmd.arg("--home")
            .arg(&self.home)
            .args(["run", "--intendant", intendant, "--repo"])
            .arg(&self.repo)
            .args(["--task", task, "--policy"])
            .arg(&self.policy);
        cmd
    }

    /// `agp run` for a live agent, headless, with answers for approvals from `approvals`.
    pub fn run(&self, intendant: &str, env: &[(&str, &str)], approvals: &str) -> Output {
        self.live_run(intendant, env, approvals).output().unwrap()
    }

    /// [`Self::run`], ended with SIGTERM (which makes `agp run` stop the agent and its
    /// sandbox) when it has not finished within `bound`: `None` then. For a known hang of an
    /// agent outside agp's control; the caller says which.
    pub fn run_bounded(
        &self,
        intendant: &str,
        env: &[(&str, &str)],
        approvals: &str,
        bound: Duration,
    ) -> Option<Output> {
        let mut child = self
            .live_run(intendant, env, approvals)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > bound {
                let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                let ended = child.wait_with_output().unwrap();
                eprintln!(
                    "agp run did not finish within {bound:?}; stopped: {}",
                    text(&ended.stderr)
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(child.wait_with_output().unwrap())
    }

    fn live_run(&self, intendant: &str, env: &[(&str, &str)], approvals: &str) -> Command {
        let script = self.file("approvals.txt", approvals);
        let mut cmd = self.run_command(intendant, "do the scripted work");
        cmd.arg("--approver-script")
            .arg(&script)
            .args(["--approval-timeout", "20"])
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn journal(&self) -> Vec<Value> {
        journal(&self.home)
    }

    pub fn verify(&self) -> Output {
        Command::new(AGP)
            .arg("--home")
            .arg(&self.home)
            .arg("verify")
            .output()
            .unwrap()
    }

    /// `agp verify` of this home must pass.
    pub fn assert_verified(&self) {
        let v = self.verify();
        assert!(
            v.status.success(),
            "agp verify: {}{}",
            text(&v.stdout),
            text(&v.stderr)
        );
    }
}

/// `agp run` must have succeeded; its stdout.
pub fn assert_ran(out: &Output) -> String {
    super::stdout_ok(out, "agp run")
}

/// An executable shell script at `path` (its folder made as needed); the path.
pub fn write_executable(path: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_owned()
}

/// The journal's whole lines. Tests read it while the daemon may be appending: a last line
/// without its newline is still being written and is left out, every whole line must parse.
pub fn journal(home: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(home.join("journal/entries.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line is JSON"))
        .collect()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The journal entries of `kind`.
pub fn of_kind<'a>(j: &'a [Value], kind: &str) -> Vec<&'a Value> {
    j.iter().filter(|e| e["kind"] == kind).collect()
}

/// The journal entries of one kind for one call id.
pub fn of_call<'a>(j: &'a [Value], kind: &str, call: &str) -> Vec<&'a Value> {
    j.iter()
        .filter(|e| e["kind"] == kind && e["body"]["call_id"] == call)
        .collect()
}

/// The journal's call id of the n-th (1-based) scripted tool call of the fake model.
pub fn call_id(n: u64) -> String {
    CLAUDE_CALLS.journal(n)
}

/// The same for Codex (the Responses API names calls `call_…`).
pub fn codex_call_id(n: u64) -> String {
    CODEX_CALLS.journal(n)
}

/// The tool result text the model received for a call id (the harness's id, without `tu:`).
pub fn result_for(results: &[(String, String, Option<bool>)], harness_id: &str) -> String {
    results
        .iter()
        .find(|(id, _, _)| id == harness_id)
        .map_or_else(
            || panic!("the model never got a result for {harness_id}: {results:?}"),
            |(_, t, _)| t.clone(),
        )
}

/// A governed-session test: its [`governed_world`], where a sandbox escape would write, and the
/// client with the way `agp run` finds it.
pub struct Governed {
    pub world: World,
    pub pwned: PathBuf,
    pub client: Client,
    pub via: Via,
}

/// A [`Governed`] test of `client` (None, after the loud skip, when it is not installed) whose
/// managed hook file is `managed`.
pub fn governed(client: Option<Client>, via: Via, managed: &str) -> Option<Governed> {
    let client = client?;
    let (world, pwned) = governed_world(managed);
    Some(Governed {
        world,
        pwned,
        client,
        via,
    })
}

impl Governed {
    /// `agp run` of `intendant` on the model's script with `env` and the variable that finds
    /// the client, the human allowing call 8 and denying call 9; then the checks every governed
    /// session shares (calls 1 to 9, call `failing` allowed and failed, the client's identity,
    /// the sandbox preflight and the journal). Returns what the model was told and the journal.
    pub fn run(
        &self,
        intendant: &str,
        env: &[(&str, &str)],
        model: &FakeModel,
        calls: CallNames,
        failing: u64,
    ) -> (ToolResults, Vec<Value>) {
        let (var, value) = self.via.env(&self.client);
        let mut env = env.to_vec();
        env.push((var, &value));
        let out = self.world.run(intendant, &env, "allow\ndeny not today\n");
        let (results, j) = check_governed_session(&self.world, model, &out, calls, &self.pwned);
        check_identity(&j, &self.client);
        check_failed_call(&j, calls, failing);
        check_preflight_and_verify(&self.world, &j);
        (results, j)
    }
}

/// The world of a governed session: a `keep/` directory in the repository and the scripts
/// the agent runs, aimed at `managed` (the agent's managed settings) and at a file outside
/// every bind, returned.
pub fn governed_world(managed: &str) -> (World, PathBuf) {
    let world = World::new();
    let outside = host_only_dir(&world);
    std::fs::create_dir(world.repo.join("keep")).unwrap();
    let pwned = outside.join("pwned.txt");
    write_scripts(&world, &pwned, managed);
    (world, pwned)
}

/// A path outside everything the sandbox binds, which exists on the host.
pub fn host_only_dir(world: &World) -> PathBuf {
    let p = world.dir.path().join("outside");
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Programs the agent runs with `python3 FILE` (allowed by policy): what they do is invisible
/// to the policy, so only the sandbox and the egress proxy stand in the way.
pub fn write_scripts(world: &World, outside: &std::path::Path, settings: &str) {
    let w = |name: &str, body: String| std::fs::write(world.repo.join(name), body).unwrap();
    w(
        "escape.py",
        format!(
            "open({:?}, 'w').write('x')\n",
            outside.display().to_string()
        ),
    );
    w(
        "edit_settings.py",
        format!("open({settings:?}, 'w').write('{{}}')\n"),
    );
    w(
        "fetch_allowed.py",
        "import urllib.request as u\ntry:\n    u.urlopen('http://allowed.example/docs', timeout=10)\n\
         except Exception as e:\n    print('fetch failed:', e)\n"
            .into(),
    );
    w(
        "fetch.py",
        "import urllib.request as u\nu.urlopen('http://blocked.example/x', timeout=10)\n".into(),
    );
}

/// How the fake model names a client's n-th (1-based) scripted tool call: `toolu_fake_n` for
/// the Anthropic API, `call_fake_n` for the OpenAI Responses API.
#[derive(Clone, Copy)]
pub struct CallNames(pub &'static str);

pub const CLAUDE_CALLS: CallNames = CallNames("toolu_fake_");
pub const CODEX_CALLS: CallNames = CallNames("call_fake_");

impl CallNames {
    /// The harness's id (what the model sees).
    pub fn harness(self, n: u64) -> String {
        format!("{}{n}", self.0)
    }

    /// The journal's call id.
    pub fn journal(self, n: u64) -> String {
        format!("tu:{}", self.harness(n))
    }
}

/// Calls 1 to 9 of the governed-session tests, with the client's own way of writing the
/// managed hook settings as call 6; each test appends its client-specific calls.
pub fn governed_session_turns(six: Turn) -> Vec<Turn> {
    vec![
        // 1: allowed
        Turn::Shell("echo hello > made.txt".into()),
        // 2: denied
        Turn::Shell("rm -rf keep".into()),
        // 3: compound-command bypass attempt
        Turn::Shell("echo fine && rm -rf keep".into()),
        // 4: policy allows `python3 FILE`; the sandbox must stop its write outside the repo
        Turn::Shell("python3 escape.py".into()),
        // 5: editing the managed hook settings from inside
        Turn::Shell("python3 edit_settings.py".into()),
        // 6: the same by another way (client-specific)
        six,
        // 7: egress to a host that is not allowed
        Turn::Shell("python3 fetch.py".into()),
        // 8, 9: approval granted, approval denied
        Turn::Shell("mkdir approved-dir".into()),
        Turn::Shell("mkdir denied-dir".into()),
    ]
}

/// What the model was told: (harness call id, result text, is_error), as `FakeModel::tool_results`.
pub type ToolResults = Vec<(String, String, Option<bool>)>;

/// The checks every governed session shares: `agp run` succeeded, the agent made every scripted
/// call, and calls 1 to 9 of [`governed_session_turns`] were allowed, denied, sandboxed,
/// refused egress and approved or denied as they must be. Returns what the model was told and
/// the journal, for the client-specific checks.
fn check_governed_session(
    world: &World,
    model: &FakeModel,
    out: &Output,
    calls: CallNames,
    pwned: &Path,
) -> (ToolResults, Vec<Value>) {
    let stdout = assert_ran(out);
    assert_eq!(
        model.remaining_turns(),
        0,
        "the agent stopped early: {stdout}"
    );
    let results = model.tool_results();
    let j = world.journal();

    // 1: allowed, ran, and the journal links request, decision and result with the right hashes.
    assert_eq!(
        std::fs::read_to_string(world.repo.join("made.txt")).unwrap(),
        "hello\n"
    );
    let id = calls.journal(1);
    let req = of_call(&j, "tool_call.requested", &id);
    assert_eq!(req.len(), 1, "{j:#?}");
    let input = &req[0]["body"]["input"];
    assert_eq!(input["command"], "echo hello > made.txt");
    let input_sha = sha256_of_value(input).unwrap();
    assert_eq!(req[0]["body"]["input_sha256"], input_sha.as_str());
    let decided = of_call(&j, "policy.decided", &id);
    assert_eq!(decided[0]["body"]["decision"], "allow");
    assert_eq!(decided[0]["body"]["input_sha256"], input_sha.as_str());
    let result = of_call(&j, "tool_call.result", &id);
    assert_eq!(result.len(), 1, "no result journaled for the allowed call");
    assert_eq!(result[0]["body"]["ok"], true);
    assert_eq!(result[0]["body"]["input_sha256"], input_sha.as_str());
    let output = result[0]["body"]["output"].as_str().unwrap();
    assert_eq!(
        result[0]["body"]["output_sha256"],
        sha256_hex(output.as_bytes()).as_str(),
        "the output hash is the hash of what the tool returned"
    );

    // 2 and 3: denied, nothing ran, the model was told agp's reason.
    assert!(world.repo.join("keep").is_dir(), "a denied rm ran");
    for n in [2, 3] {
        let told = result_for(&results, &calls.harness(n));
        assert!(told.contains("agp denied this call"), "call {n}: {told}");
        assert_eq!(
            of_call(&j, "policy.decided", &calls.journal(n))[0]["body"]["decision"],
            "deny"
        );
        assert!(of_call(&j, "tool_call.result", &calls.journal(n)).is_empty());
    }
    let compound = of_call(&j, "policy.decided", &calls.journal(3))[0];
    assert_eq!(compound["body"]["deciding_part"], "rm -rf keep");

    // 4: allowed by policy, stopped by the sandbox.
    assert!(
        !pwned.exists(),
        "the sandbox let a write outside the repo through"
    );
    let d4 = of_call(&j, "policy.decided", &calls.journal(4))[0];
    assert_eq!(d4["body"]["decision"], "allow", "{d4:#}");
    let told = result_for(&results, &calls.harness(4));
    assert!(
        told.contains("No such file or directory") || told.contains("Read-only"),
        "{told}"
    );

    // 5 and 6: the managed hook settings cannot be changed from inside.
    let told = result_for(&results, &calls.harness(5));
    assert!(told.contains("Read-only file system"), "{told}");
    let told = result_for(&results, &calls.harness(6));
    assert!(told.contains("agp denied this call"), "{told}");

    // 7: egress refused by the proxy and journaled; the model API itself was allowed.
    let denied: Vec<&Value> = j.iter().filter(|e| e["kind"] == "egress.denied").collect();
    assert!(
        denied
            .iter()
            .any(|e| e["body"]["host"] == "blocked.example" && e["body"]["port"] == 80),
        "{denied:#?}"
    );
    let model_port = model.addr().port();
    assert!(j.iter().any(|e| e["kind"] == "egress.allowed"
        && e["body"]["host"] == "127.0.0.1"
        && e["body"]["port"] == model_port));
    let told = result_for(&results, &calls.harness(7));
    assert!(told.contains("403"), "{told}");

    // 8 and 9: approval granted runs the call, approval denied does not and says why.
    assert!(world.repo.join("approved-dir").is_dir());
    assert_eq!(
        of_call(&j, "approval.granted", &calls.journal(8)).len(),
        1,
        "{j:#?}"
    );
    assert!(!world.repo.join("denied-dir").exists());
    let told = result_for(&results, &calls.harness(9));
    assert!(told.contains("not today"), "{told}");
    assert_eq!(of_call(&j, "approval.denied", &calls.journal(9)).len(), 1);
    (results, j)
}

/// The sandbox was proven before the agent started, and the journal verifies.
pub fn check_preflight_and_verify(world: &World, j: &[Value]) {
    assert!(j
        .iter()
        .any(|e| e["kind"] == "sandbox.preflight" && e["body"]["passed"] == true));
    world.assert_verified();
}

/// Polls `ready` every 20 ms; fails with `what` once `secs` seconds have passed.
pub fn wait_until(secs: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (30 s at most) until the journal under `home` shows an approval request.
pub fn wait_for_approval_request(home: &Path) {
    wait_until(30, "the approval was never requested", || {
        journal(home)
            .iter()
            .any(|e| e["kind"] == "approval.requested")
    });
}

/// `DIR/codex-home` with a `config.toml` pointing Codex at the fake model provider, followed
/// by `extra` config; its path.
pub fn codex_home_with_fake_provider(world: &World, model: &FakeModel, extra: &str) -> PathBuf {
    let home = world.dir.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!(
            "model = \"gpt-fake\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
             name = \"fake\"\nbase_url = \"{}\"\nwire_api = \"responses\"\nenv_key = \"FAKE_API_KEY\"\n{extra}",
            model.base_url()
        ),
    )
    .unwrap();
    home
}

/// `agp run --intendant codex` in a fresh world with a stand-in Codex (a shell script answering
/// `--version` with `version`, then running `script`), an empty `CODEX_HOME` and a placeholder
/// API key, no approvals typed, which must refuse to run it (exit 2): the world and the stderr.
pub fn refused_fake_codex(version: &str, script: &str) -> (World, String) {
    let world = World::new();
    let out = run_fake_codex(&world, version, script);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    (world, stderr)
}

fn run_fake_codex(world: &World, version: &str, script: &str) -> Output {
    let fake = write_executable(
        &world.dir.path().join("codex"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'codex-cli {version}'; exit 0; fi\n{script}"
        ),
    );
    let codex_home = world.new_dir("codex-home");
    world.run(
        "codex",
        &[
            ("AGP_CODEX_BIN", fake.to_str().unwrap()),
            ("CODEX_HOME", codex_home.to_str().unwrap()),
            ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ],
        "",
    )
}

/// `codex exec "do it"` on the host as these tests run it: in the world's repository with a
/// cleared environment, `CODEX_HOME=codex_home`, a private TMPDIR and the fake provider's key,
/// with hook trust bypassed (outside agp's launcher the hook is not managed).
pub fn codex_exec_command(world: &World, codex: &Path, codex_home: &Path) -> Command {
    let tmp = world.dir.path().join("codex-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(codex);
    cmd.args([
        "exec",
        "--skip-git-repo-check",
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        "--sandbox",
        "danger-full-access",
        "--dangerously-bypass-hook-trust",
        "do it",
    ])
    .current_dir(&world.repo)
    .env_clear()
    .env("HOME", world.dir.path())
    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    .env("CODEX_HOME", codex_home)
    .env("TMPDIR", &tmp)
    .env("FAKE_API_KEY", "not-a-real-key");
    cmd
}

/// `agp daemon --sandbox none --policy POLICY` on the world's home (outside any agp sandbox:
/// these tests exercise `agp hook` itself), output discarded; callers add options and spawn it.
pub fn daemon_command(world: &World) -> Command {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home")
        .arg(&world.home)
        .args(["daemon", "--sandbox", "none", "--policy"])
        .arg(&world.policy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `agp daemon --sandbox none` with the test policy and every approval left to time out (60 s),
/// and a gate session opened on it for `intendant` with the admin token. Returns the daemon,
/// its gateway socket and the session token.
pub fn daemon_with_gate_session(world: &World, intendant: &str) -> (Child, PathBuf, String) {
    let approvals = world.file("approvals.txt", "timeout\n");
    let daemon = daemon_command(world)
        .args(["--approval-timeout", "60", "--approver-script"])
        .arg(&approvals)
        .spawn()
        .unwrap();
    let socket = world.home.join("run/gateway.sock");
    wait_until(20, "daemon did not start", || {
        UnixStream::connect(&socket).is_ok()
    });
    let admin = std::fs::read_to_string(world.home.join("run/admin.token")).unwrap();
    let mut client = agp_gateway::Client::connect(&socket, Duration::from_secs(10)).unwrap();
    let session = client
        .open_session(
            admin.trim(),
            intendant,
            &world.repo.display().to_string(),
            "",
            agp_gateway::SessionMode::Gate,
        )
        .unwrap();
    (daemon, socket, session.token)
}

/// A real agent CLI run on the host with agp's hook, outside agp's sandbox (the tests that use
/// it exercise `agp hook` itself).
pub struct HostAgent {
    /// The intendant's name (`agp run --intendant`).
    pub name: &'static str,
    /// The installed client, if any.
    pub client: fn() -> Option<PathBuf>,
    /// The fake model that speaks the client's API.
    pub model: fn(Vec<Turn>) -> std::io::Result<FakeModel>,
    /// The client's command with agp's hook wired in, against the model.
    pub command: fn(&World, &FakeModel, &Path) -> Command,
    pub calls: CallNames,
}

impl HostAgent {
    /// A fresh world, a model with the one `call`, and the agent's command; None (and the
    /// loud skip) when the client is not installed.
    fn with_call(&self, call: &str) -> Option<(World, FakeModel, Command)> {
        let client = (self.client)()?;
        let world = World::new();
        let model = (self.model)(vec![Turn::Shell(call.into())]).unwrap();
        let agent = (self.command)(&world, &model, &client);
        Some((world, model, agent))
    }
}

/// Runs the agent against a gate session of a fresh `agp daemon` and, once its call (its first)
/// waits for approval, SIGKILLs the daemon: the waiting hook denies, the agent ends normally,
/// the call never ran, and the model was told agp could not check it.
pub fn kill_daemon_mid_approval(host: &HostAgent) {
    let Some((world, model, mut agent)) = host.with_call("mkdir needs-approval") else {
        return;
    };
    let (mut daemon, socket, token) = daemon_with_gate_session(&world, host.name);
    let agent = with_gateway(&mut agent, &socket, &token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_approval_request(&world.home);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!world.repo.join("needs-approval").exists(), "the call ran");
    let told = result_for(&model.tool_results(), &host.calls.harness(1));
    assert!(told.contains("agp could not check this call"), "{told}");
}

/// The agent, run with agp's hook and a gateway socket nobody listens on, ends normally, its
/// call does not run, and the model is told agp could not check it.
pub fn check_denied_without_daemon(host: &HostAgent) {
    let Some((world, model, mut agent)) = host.with_call("echo ran > ran.txt") else {
        return;
    };
    let no_daemon = world.dir.path().join("no-daemon.sock");
    let out = with_gateway(&mut agent, &no_daemon, "whatever")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !world.repo.join("ran.txt").exists(),
        "the call ran without a daemon"
    );
    let told = result_for(&model.tool_results(), &host.calls.harness(1));
    assert!(told.contains("agp could not check this call"), "{told}");
}

/// `agent` (a client with agp's hook, outside agp's sandbox) pointed at a session's gateway,
/// as `agp run` would point it.
fn with_gateway<'a>(agent: &'a mut Command, socket: &Path, token: &str) -> &'a mut Command {
    agent
        .env("AGP_GATEWAY_SOCKET", socket)
        .env("AGP_SESSION_TOKEN", token)
        .stdin(Stdio::null())
}

/// `agp run` of the real Claude Code (`claude`) against `model` with approvals that never come
/// in time (`timeout` in the approver script, `approval_timeout` seconds), output to `output`;
/// returned once the approval is requested.
pub fn claude_run_waiting_on_approval(
    world: &World,
    claude: &Path,
    model: &FakeModel,
    approval_timeout: &str,
    output: fn() -> Stdio,
) -> Child {
    let approvals = world.file("approvals.txt", "timeout\n");
    let run = world
        .run_command("claude-code", "make a directory")
        .arg("--approver-script")
        .arg(&approvals)
        .args(["--approval-timeout", approval_timeout])
        .env("AGP_CLAUDE_BIN", claude)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap();
    wait_for_approval_request(&world.home);
    run
}

/// The processes (their pids) whose working directory is `dir`: a sandbox's processes run
/// with the repository as theirs.
pub fn processes_in(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read_link(e.path().join("cwd")).ok().as_deref() == Some(&dir))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The output of `agp run` started as `child` (240 s at most: it must finish).
pub async fn wait_output(child: Child) -> Output {
    tokio::time::timeout(
        Duration::from_secs(240),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("agp run did not finish")
    .unwrap()
    .unwrap()
}

/// The one `agp: error:` line of a run that refused to start.
pub fn one_error_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("agp: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one clear error line: {stderr}");
    errors[0].to_owned()
}
