//! The relay an interactive agent in a session container runs through: the real binary's
//! `agp sandbox attach --tty` on a real pseudo-terminal (its controlling terminal, as in a
//! terminal window), relaying a terminal exec in a real container of this test binary's own
//! dockerd. What runs inside sees a terminal of the host's type and window size, follows a
//! resize, takes what is typed, and its status comes back; agp's terminal is raw while it
//! runs and as it was afterwards, also when the relay is stopped by a signal (which ends the
//! container too).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};

use agp_contracts::sandbox::SandboxSpec;
use agp_contracts::SandboxProvider;
use agp_sandbox::docker::{DockerProvider, DockerSession, Engine, Runtime};
use agp_testkit::docker::{container_exists, DockerEngine};
use rustix::termios::{tcgetattr, tcsetwinsize, LocalModes, Termios, Winsize};

use super::support::agents::{claude_at, result_for, wait_until, CLAUDE_VERSION};
use super::support::looping::AGP;
use super::support::pty::{open_pty, Screen, PATIENCE};
use agp_testkit::{FakeModel, Turn};

/// The default image's non-root uid: the container runs as the repository's owner.
const UID: u32 = 65534;

/// Prints what a terminal program checks, then, for each line typed, the window size as the
/// command sees it, until `q` (exit 7).
const SCRIPT: &str = "tty; test -t 0 && test -t 1 && echo stdin-and-stdout-are-a-tty; \
     echo \"term is $TERM\"; echo ready; \
     while read l; do [ \"$l\" = q ] && exit 7; echo \"size: $(stty size 2>/dev/null)\"; done";

/// An image, a repository of the image's user and a session container in `engine`.
struct Container {
    _dir: tempfile::TempDir,
    provider: DockerProvider,
    session: Option<DockerSession>,
}

impl Container {
    fn start(engine: &DockerEngine, tag: &str, runtime: Runtime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(AGP)
            .arg("--home")
            .arg(dir.path().join("home"))
            .args(["sandbox", "image", "build", "--socket"])
            .arg(engine.socket())
            .args(["--tag", tag])
            .output()
            .unwrap();
        let built = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{built}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pinned = built
            .lines()
            .find_map(|l| l.strip_prefix("built "))
            .unwrap_or_else(|| panic!("no pinned reference in: {built}"));
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::os::unix::fs::chown(&repo, Some(UID), Some(UID)).unwrap();
        let provider = DockerProvider::new(
            Engine::at(engine.socket()).unwrap(),
            pinned.parse().unwrap(),
            runtime,
        );
        let session = provider
            .spawn(&SandboxSpec::new(
                "tty-test",
                std::fs::canonicalize(&repo).unwrap(),
            ))
            .unwrap();
        Self {
            _dir: dir,
            provider,
            session: Some(session),
        }
    }

    fn session(&self) -> &DockerSession {
        self.session.as_ref().unwrap()
    }

    /// `agp sandbox attach --tty` of a terminal exec of `script`, on `slave` as its
    /// controlling terminal, TERM `xterm-agp-test`.
    fn attach(&self, script: &str, slave: File) -> Child {
        let session = self.session();
        let exec = self
            .provider
            .create_terminal_exec(
                session,
                &["/bin/sh".into(), "-c".into(), script.into()],
                session.repo(),
                Some("xterm-agp-test"),
            )
            .unwrap();
        Command::new("setsid")
            .args(["--ctty", "--wait"])
            .arg(AGP)
            .args(["sandbox", "attach", "--socket"])
            .arg(self.provider.engine().socket())
            .args(["--exec", &exec, "--tty"])
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .spawn()
            .unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = self.provider.teardown(session);
        }
    }
}

/// A pty with a window of `rows` x `cols`: its screen, the slave for the child, and a handle
/// on the slave to look at and resize the terminal as agp's user would.
fn terminal(rows: u16, cols: u16) -> (Screen, File, File) {
    let (master, slave) = open_pty();
    resize(&slave, rows, cols);
    let mine = slave.try_clone().unwrap();
    (Screen::read(master, PATIENCE), slave, mine)
}

fn resize(slave: &File, rows: u16, cols: u16) {
    tcsetwinsize(
        slave,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

/// Presses Enter until the command prints `size` as its window size (a few hundred lines at
/// most; each line prints the size as the command sees it then).
fn size_seen(screen: &Screen, size: &str) -> bool {
    let mut lines = screen.wait_for("", 0).matches("size: ").count();
    for _ in 0..300 {
        screen.press(b"\r");
        lines += 1;
        if screen
            .wait_for("size: ", lines)
            .contains(&format!("size: {size}\r"))
        {
            return true;
        }
    }
    false
}

/// The settings that make a terminal cooked or raw, to compare before and after.
fn modes(t: &Termios) -> String {
    format!(
        "{:?} {:?} {:?} {:?}",
        t.input_modes, t.output_modes, t.control_modes, t.local_modes
    )
}

#[test]
fn a_terminal_exec_sees_a_tty_of_the_hosts_size_and_type_and_its_status_comes_back() {
    terminal_relay(Runtime::Runc, "localhost/agp-tty:relay-runc");
}

#[test]
fn a_terminal_exec_under_gvisor_sees_a_tty_of_the_hosts_size_and_type() {
    terminal_relay(Runtime::Runsc, "localhost/agp-tty:relay-runsc");
}

fn terminal_relay(runtime: Runtime, tag: &str) {
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let container = Container::start(engine, tag, runtime);
    let (screen, slave, mine) = terminal(33, 101);
    let before = tcgetattr(&mine).unwrap();
    assert!(before.local_modes.contains(LocalModes::ICANON));
    let mut child = container.attach(SCRIPT, slave);

    let shown = screen.wait_for("ready", 1);
    // gVisor's terminal has no name under its /dev/pts (`tty` says "not a tty" there, though
    // isatty holds); runc's is one of the container's /dev/pts.
    if runtime == Runtime::Runc {
        assert!(shown.contains("/dev/pts/"), "{shown}");
    }
    assert!(shown.contains("stdin-and-stdout-are-a-tty"), "{shown}");
    assert!(shown.contains("term is xterm-agp-test"), "{shown}");
    // agp's own terminal is raw while the command runs: keys go to the terminal inside.
    let during = tcgetattr(&mine).unwrap();
    assert!(
        !during.local_modes.contains(LocalModes::ICANON)
            && !during.local_modes.contains(LocalModes::ECHO)
            && !during.local_modes.contains(LocalModes::ISIG),
        "not raw: {:?}\n{shown}",
        during.local_modes
    );
    // The size reaches the terminal inside just after the command starts (the engine resizes
    // only a started exec), then every change of the window.
    assert!(
        size_seen(&screen, "33 101"),
        "the window size never reached the command"
    );
    resize(&mine, 40, 120);
    assert!(
        size_seen(&screen, "40 120"),
        "the resize never reached the command"
    );

    screen.press(b"q\r");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7), "{}", screen.wait_for("", 0));
    let after = tcgetattr(&mine).unwrap();
    assert_eq!(
        modes(&after),
        modes(&before),
        "the terminal was not put back"
    );
}

#[test]
fn a_stopped_terminal_relay_puts_the_terminal_back_and_ends_the_container() {
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let container = Container::start(engine, "localhost/agp-tty:stopped", Runtime::Runc);
    let (screen, slave, mine) = terminal(24, 80);
    let before = tcgetattr(&mine).unwrap();
    let mut child = container.attach("echo waiting; read l", slave);
    screen.wait_for("waiting", 1);
    assert!(!tcgetattr(&mine)
        .unwrap()
        .local_modes
        .contains(LocalModes::ICANON));

    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert_eq!(
        modes(&tcgetattr(&mine).unwrap()),
        modes(&before),
        "the terminal was not put back"
    );
    let id = container.session().container_id().to_string();
    assert!(
        !container_exists(Path::new(engine.socket()), &id),
        "the container outlived the stopped relay"
    );
}

/// The real Claude Code, interactive, with a person at agp's terminal and the CLI in a runc
/// session container: its TUI draws through the relay, the model's calls go through agp's
/// hook (one allowed and run, one denied), the person leaves it with Ctrl-C twice, `agp run`
/// reports the agent's status, the terminal is as it was, and the journal verifies.
#[test]
fn claude_code_interactive_at_a_terminal_in_a_container() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let world = super::agents_docker::docker_world(
        engine.socket(),
        "runc",
        "/etc/claude-code/managed-settings.json",
    );
    let model = FakeModel::anthropic(vec![
        Turn::Shell("echo hello > made.txt".into()),
        Turn::Shell("rm -rf keep".into()),
        Turn::Text("all-done-here".into()),
    ])
    .unwrap();
    let (screen, slave, mine) = terminal(40, 120);
    let before = tcgetattr(&mine).unwrap();
    let mut child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(AGP)
        .arg("--home")
        .arg(&world.home)
        .args([
            "run",
            "--intendant",
            "claude-code",
            "--interactive",
            "--repo",
        ])
        .arg(&world.repo)
        .args(["--task", "do the scripted work", "--policy"])
        .arg(&world.policy)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .env("AGP_CLAUDE_BIN", &client.native)
        .env("TERM", "xterm-256color")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();

    // A fresh HOME: Claude Code asks whether to use the key in the environment (default no).
    screen.wait_for("confirm", 1);
    screen.press(b"\x1b[A");
    screen.press(b"\r");
    let shown = screen.wait_for("all-done-here", 1);
    assert!(shown.contains("sandbox docker (runc)"), "{shown}");
    assert_eq!(
        std::fs::read_to_string(world.repo.join("made.txt"))
            .ok()
            .as_deref(),
        Some("hello\n"),
        "{shown}"
    );
    assert!(world.repo.join("keep").is_dir(), "a denied rm ran");
    let told = result_for(&model.tool_results(), "toolu_fake_2");
    assert!(told.contains("agp denied this call"), "{told}");

    // The person leaves the TUI: Ctrl-C, and again when it asks.
    screen.press(b"\x03");
    screen.wait_for("again", 1);
    screen.press(b"\x03");
    let status = child.wait().unwrap();
    let shown = screen.wait_for("claude-code exited 0", 1);
    assert!(status.success(), "{status:?}\n{shown}");
    assert_eq!(
        modes(&tcgetattr(&mine).unwrap()),
        modes(&before),
        "the terminal was not put back"
    );
    world.assert_verified();
}

/// `--interactive` with stdin not a terminal: the agent reads agp's stdin as it would under
/// bubblewrap (no refusal, no terminal made up: Claude Code without one takes the task and
/// ends, where on a terminal it would wait for the person); both providers end the same way.
#[test]
fn interactive_without_a_terminal_runs_as_under_bubblewrap() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let mut ends = Vec::new();
    for sandbox in ["docker", "bwrap"] {
        let world = super::agents_docker::docker_world(
            engine.socket(),
            "runc",
            "/etc/claude-code/managed-settings.json",
        );
        if sandbox == "bwrap" {
            // Bubblewrap runs the agent as this user, not as the repository's owner.
            let me = rustix::process::getuid().as_raw();
            std::os::unix::fs::chown(&world.repo, Some(me), Some(me)).unwrap();
        }
        let model = FakeModel::anthropic(vec![
            Turn::Shell("echo hello > made.txt".into()),
            Turn::Text("all-done-here".into()),
        ])
        .unwrap();
        let out = Command::new(AGP)
            .arg("--home")
            .arg(&world.home)
            .args([
                "run",
                "--intendant",
                "claude-code",
                "--interactive",
                "--repo",
            ])
            .arg(&world.repo)
            .args(["--task", "do the scripted work", "--policy"])
            .arg(&world.policy)
            .args(["--sandbox", sandbox])
            .env("ANTHROPIC_BASE_URL", model.base_url())
            .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
            .env("AGP_CLAUDE_BIN", &client.native)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            stdout.contains("claude-code exited 0"),
            "{sandbox}: {stdout}\n{stderr}"
        );
        ends.push((
            out.status.code(),
            std::fs::read_to_string(world.repo.join("made.txt")).ok(),
            model.remaining_turns(),
            stdout.contains("all-done-here"),
        ));
    }
    assert_eq!(ends[0], (Some(0), Some("hello\n".into()), 0, true));
    assert_eq!(ends[0], ends[1]);
}

/// `agp run --interactive` on a terminal killed outright (SIGKILL) while the agent's call waits
/// for a human: as headless, the relay dies with it and removes the session container; and it
/// puts the person's terminal back first.
#[test]
fn an_interactive_run_killed_mid_approval_leaves_no_container_and_a_sane_terminal() {
    let Some(client) = claude_at(CLAUDE_VERSION) else {
        return;
    };
    let Some(engine) = DockerEngine::shared() else {
        return;
    };
    let world = super::agents_docker::docker_world(
        engine.socket(),
        "runc",
        "/etc/claude-code/managed-settings.json",
    );
    let model = FakeModel::anthropic(vec![
        Turn::Shell("mkdir approved-dir".into()),
        Turn::Text("finished".into()),
    ])
    .unwrap();
    // Nobody writes to the FIFO: the approval stays pending.
    let fifo = world.dir.path().join("approvals.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (screen, slave, mine) = terminal(40, 120);
    let before = tcgetattr(&mine).unwrap();
    let mut run = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(AGP)
        .arg("--home")
        .arg(&world.home)
        .args([
            "run",
            "--intendant",
            "claude-code",
            "--interactive",
            "--repo",
        ])
        .arg(&world.repo)
        .args(["--task", "do the scripted work", "--policy"])
        .arg(&world.policy)
        .arg("--approver-script")
        .arg(&fifo)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
        .env("AGP_CLAUDE_BIN", &client.native)
        .env("TERM", "xterm-256color")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    screen.wait_for("confirm", 1);
    screen.press(b"\x1b[A");
    screen.press(b"\r");
    wait_until(60, "the approval was never requested", || {
        world.home.join("journal/entries.jsonl").exists()
            && world
                .journal()
                .iter()
                .any(|e| e["kind"] == "approval.requested")
    });
    let session = world
        .journal()
        .iter()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_owned))
        .expect("a session started");
    let containers = super::agents_docker::session_containers(engine.socket(), &session);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(!tcgetattr(&mine)
        .unwrap()
        .local_modes
        .contains(LocalModes::ICANON));
    run.kill().unwrap();
    run.wait().unwrap();
    wait_until(60, "the session container outlived the killed run", || {
        !container_exists(engine.socket(), &containers[0])
    });
    assert!(!world.repo.join("approved-dir").exists());
    assert_eq!(
        modes(&tcgetattr(&mine).unwrap()),
        modes(&before),
        "the terminal was not put back"
    );
}
