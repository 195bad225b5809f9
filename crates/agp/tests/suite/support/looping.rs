//! Set-up shared by the governed-loop tests that run the real `agp` binary (`loop_demo`,
//! `loop_sandbox_escapes`, `terminal_approval`, `daemon_restart`, `gateway_adversarial`): an
//! initialized and keyed agp home, a copy of the demo repository, a daemon in its own session,
//! and the journal's entries.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const AGP: &str = env!("CARGO_BIN_EXE_agp");

/// Slack and approval-channel settings of whoever runs the tests: removed from a child's
/// environment so they never leak in.
pub const SLACK_VARS: [&str; 7] = [
    "AGP_SLACK_BOT_TOKEN",
    "AGP_SLACK_APP_TOKEN",
    "AGP_SLACK_CHANNEL",
    "AGP_SLACK_APPROVERS",
    "AGP_SLACK_APPROVER_GROUP",
    "AGP_SLACK_API_URL",
    "AGP_APPROVAL_CHANNEL",
];

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `agp --home HOME ARGS` (with `HOME=user_home` where given), which must succeed; its stdout.
pub fn agp_ok(home: &Path, user_home: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home").arg(home).args(args).stdin(Stdio::null());
    if let Some(user_home) = user_home {
        cmd.env("HOME", user_home);
    }
    super::stdout_ok(&cmd.output().unwrap(), &format!("agp {args:?}"))
}

/// `agp sessions show SESSION` (as [`agp_ok`]), whose timeline must name the sandbox that proved
/// itself before the agent started; the timeline.
pub fn timeline_with_preflight(home: &Path, user_home: Option<&Path>, session: &str) -> String {
    let shown = agp_ok(home, user_home, &["sessions", "show", session]);
    assert!(
        shown.contains("sandbox.preflight    bubblewrap: passed"),
        "{shown}"
    );
    shown
}

/// `agp --home HOME` without a controlling terminal (`setsid -w`), with `HOME=user_home` and
/// no stdin; the caller adds the arguments.
pub fn agp_detached(home: &Path, user_home: &Path) -> Command {
    let mut cmd = Command::new("setsid");
    cmd.arg("-w")
        .arg(AGP)
        .arg("--home")
        .arg(home)
        .env("HOME", user_home)
        .stdin(Stdio::null());
    cmd
}

/// A gate session opened with the daemon's admin token for an intendant called `test` working
/// in `repo`; its session token.
pub fn open_gate_session(home: &Path, repo: &Path) -> String {
    open_session(
        home,
        repo,
        agp_gateway::SessionMode::Gate,
        Duration::from_secs(10),
    )
}

/// A session in `mode` opened with the daemon's admin token (connecting within `patience`) for
/// an intendant called `test` working in `repo`; its session token.
pub fn open_session(
    home: &Path,
    repo: &Path,
    mode: agp_gateway::SessionMode,
    patience: Duration,
) -> String {
    let socket = home.join("run/gateway.sock");
    let admin = std::fs::read_to_string(home.join("run/admin.token")).unwrap();
    let mut control = agp_gateway::Client::connect(&socket, patience).unwrap();
    control
        .open_session(&admin, "test", repo.to_str().unwrap(), "", mode)
        .unwrap()
        .token
}

/// `agp init` and `agp keygen` for a fresh home.
pub fn init_home(home: &Path, user_home: Option<&Path>) {
    agp_ok(home, user_home, &["init"]);
    agp_ok(home, user_home, &["keygen"]);
}

/// A fresh agp home (initialized, with a key), a user home with an empty `.ssh` and a copy of
/// the demo repo, in one tempdir.
pub struct DemoWorld {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub user_home: PathBuf,
    pub repo: PathBuf,
}

impl DemoWorld {
    /// Its paths under a fresh tempdir, of which only the user home exists yet.
    fn paths() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let user_home = dir.path().join("user");
        std::fs::create_dir_all(&user_home).unwrap();
        Self {
            home: dir.path().join("agp-home"),
            repo: dir.path().join("repo"),
            user_home,
            dir,
        }
    }

    /// A file `name` in the world's tempdir holding `contents`; its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A fresh `tmp` directory in the world (an agp run's TMPDIR, where its demo copies go).
    pub fn tmp(&self) -> PathBuf {
        let tmp = self.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        tmp
    }
}

/// An initialized agp home (no user home), an empty repository and a policy file, in one
/// tempdir.
pub struct PolicyWorld {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub policy: PathBuf,
}

/// A [`PolicyWorld`] whose policy file holds `policy`.
pub fn policy_world(policy: &str) -> PolicyWorld {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, policy).unwrap();
    let home = dir.path().join("home");
    init_home(&home, None);
    PolicyWorld {
        home,
        repo,
        policy: policy_file,
        dir,
    }
}

/// A fresh agp home (initialized, with a key) and a user home, in one tempdir (the fields of a
/// [`DemoWorld`], whose repository is not made).
pub fn home_world() -> DemoWorld {
    let w = DemoWorld::paths();
    init_home(&w.home, Some(&w.user_home));
    w
}

pub fn demo_world() -> DemoWorld {
    let w = DemoWorld::paths();
    std::fs::create_dir_all(w.user_home.join(".ssh")).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(workspace().join("examples/demo-repo"))
        .arg(&w.repo)
        .status()
        .unwrap();
    assert!(copied.success());
    init_home(&w.home, Some(&w.user_home));
    w
}

/// A fresh agp home (initialized, with a key), a user home and an empty git repository, in one
/// tempdir (the fields of a [`DemoWorld`]).
pub fn git_world() -> DemoWorld {
    let w = DemoWorld::paths();
    std::fs::create_dir(&w.repo).unwrap();
    assert!(git(&w.repo, &["init", "-q"]).status.success());
    init_home(&w.home, Some(&w.user_home));
    w
}

/// The host's git in `dir`, with an identity and without the system's configuration.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap()
}

/// `agp hook --harness claude-code --attach [--project PROJECT]` fed `event` as Claude Code
/// would; it must exit 0, and its decision JSON (`null` for an empty answer) is returned.
pub fn claude_hook(home: &Path, user_home: &Path, project: Option<&Path>, event: &Value) -> Value {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home")
        .arg(home)
        .args(["hook", "--harness", "claude-code", "--attach"]);
    if let Some(p) = project {
        cmd.arg("--project").arg(p);
    }
    let mut child = cmd
        .env("HOME", user_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = super::stdout_ok(&out, "the hook");
    serde_json::from_str(stdout.trim()).unwrap_or(Value::Null)
}

/// A policy that allows every call with every guard off, so only the sandbox stands between a
/// call and the host; written as `DIR/allow-everything.toml`.
pub fn write_allow_everything(dir: &Path) -> PathBuf {
    let policy = dir.join("allow-everything.toml");
    std::fs::write(
        &policy,
        "version = 1\ndefault = \"allow\"\n\n[guards]\ndestructive = false\n\"protected-paths\" = false\nsecrets = false\n\"supply-chain\" = false\n\"network-egress\" = false\nprivilege = false\n",
    )
    .unwrap();
    policy
}

/// A scripted intendant's `calls:` list with one Bash call per command (JSON-quoted, so any
/// command text survives YAML).
pub fn bash_calls_yaml<S: AsRef<str>>(commands: &[S]) -> String {
    let mut yaml = String::from("calls:\n");
    for c in commands {
        yaml.push_str(&format!(
            "  - tool: Bash\n    input: {{ command: {} }}\n",
            serde_json::to_string(c.as_ref()).unwrap()
        ));
    }
    yaml
}

/// `agp run --intendant scripted --script SCRIPT --repo REPO EXTRA…` without a controlling
/// terminal; its output (success is the caller's to judge).
pub fn run_scripted(
    home: &Path,
    user_home: &Path,
    script: &Path,
    repo: &Path,
    extra: &[&str],
) -> Output {
    agp_detached(home, user_home)
        .args(["run", "--intendant", "scripted", "--script"])
        .arg(script)
        .arg("--repo")
        .arg(repo)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// [`run_scripted`] with `--policy POLICY --auto-approve`.
pub fn run_scripted_auto_approve(
    home: &Path,
    user_home: &Path,
    script: &Path,
    repo: &Path,
    policy: &Path,
) -> Output {
    let policy = policy.to_str().unwrap();
    run_scripted(
        home,
        user_home,
        script,
        repo,
        &["--policy", policy, "--auto-approve"],
    )
}

/// Every journal entry; the journal must exist, every line must be JSON, and every body of a
/// typed kind must be exactly that kind's typed body (`agp_contracts::events`).
pub fn journal(home: &Path) -> Vec<Value> {
    let entries: Vec<Value> = std::fs::read_to_string(home.join("journal/entries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for e in &entries {
        let kind = e["kind"].as_str().unwrap();
        if let Err(problem) = agp_contracts::events::check_body(kind, &e["body"]) {
            panic!(
                "journal entry {} is not its typed body: {problem}",
                e["seq"]
            );
        }
    }
    entries
}

/// An `agp daemon`, killed (SIGKILL) and reaped on drop.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// [`start_daemon`] with `--policy HOME/policy.toml`.
pub fn start_daemon_with_home_policy(home: &Path) -> Daemon {
    start_daemon(
        home,
        ["--policy", home.join("policy.toml").to_str().unwrap()],
    )
}

/// `agp --home HOME daemon --sandbox none ARGS` in its own session (`setsid -w`), output
/// discarded; returned once its gateway socket accepts connections (20 s at most).
pub fn start_daemon<I, S>(home: &Path, args: I) -> Daemon
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    start_daemon_with_sandbox(home, "none", args)
}

/// [`start_daemon`] with `--sandbox SANDBOX` (`bwrap`: its proxy-exec sessions' agents are
/// confined, which a policy reload needs).
pub fn start_daemon_with_sandbox<I, S>(home: &Path, sandbox: &str, args: I) -> Daemon
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let child = Command::new("setsid")
        .arg("-w")
        .arg(AGP)
        .arg("--home")
        .arg(home)
        .args(["daemon", "--sandbox", sandbox])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_for_daemon(home);
    daemon
}

/// Waits until the daemon of `home` takes connections on its gateway socket.
pub fn wait_for_daemon(home: &Path) {
    let socket = home.join("run/gateway.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}
