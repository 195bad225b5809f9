//! An `agp run` interrupted at an approval prompt (SIGINT, SIGTERM, SIGHUP, Ctrl-C at the
//! terminal, or killed outright) with the real binary: its session ends as interrupted, its
//! pending approval is cancelled and journaled, its demo copy is removed, and no later run ever
//! shows (or answers) the dead session's prompt. The live-agent cases use a stand-in agent
//! script (also for the `--json` summary of a live run).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;
use support_loop::{demo_world, journal, AGP};

use super::support::looping as support_loop;
use super::support::pty::{open_pty, Screen, PATIENCE};

/// Longest any step may take before the test gives up (a hang, not a measurement).
const WAIT: Duration = Duration::from_secs(120);

/// `agp run` on the embedded demo with a FIFO as approver script (nobody writes to it, so the
/// first approval stays pending), demo copies under `tmp`.
fn start_run(home: &Path, user: &Path, fifo: &Path, tmp: &Path) -> Child {
    Command::new(AGP)
        .arg("--home")
        .arg(home)
        .args(["run", "--approver-script"])
        .arg(fifo)
        .env("HOME", user)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A FIFO made at `path`, which it returns.
fn mkfifo(path: &Path) -> PathBuf {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success());
    path.to_owned()
}

/// Waits until the journal holds an `approval.requested` for the session's call-8.
fn wait_for_pending_approval(home: &Path) -> String {
    let start = Instant::now();
    loop {
        // The run is still writing: its last line may be half written, so only whole lines
        // are read here (the strict `journal` reads it once the run is gone).
        let text = std::fs::read_to_string(home.join("journal/entries.jsonl")).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        if let Some(e) = whole
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|e| e["kind"] == "approval.requested")
        {
            assert_eq!(e["body"]["call_id"], "call-8");
            return e["session"].as_str().unwrap().to_owned();
        }
        assert!(start.elapsed() < WAIT, "no approval was requested");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).unwrap();
}

fn demo_copies(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("agp-demo-repo-")
        })
        .collect()
}

fn session_status(home: &Path, id: &str) -> String {
    let out = Command::new(AGP)
        .arg("--home")
        .arg(home)
        .args(["sessions", "--json"])
        .output()
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no session {id}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The journal's record of the session's end: call-8's approval cancelled, then the session
/// ended as interrupted, nothing of the session after that, and the journal intact.
fn assert_interrupted(home: &Path, session: &str) {
    let entries: Vec<Value> = journal(home)
        .into_iter()
        .filter(|e| e["session"] == session)
        .collect();
    let denied = entries
        .iter()
        .position(|e| e["kind"] == "approval.denied" && e["body"]["call_id"] == "call-8")
        .unwrap_or_else(|| panic!("call-8's approval was not settled: {entries:#?}"));
    let ended = entries
        .iter()
        .position(|e| e["kind"] == "session.ended")
        .expect("session.ended");
    assert!(denied < ended, "{entries:#?}");
    assert_eq!(entries[ended]["body"]["status"], "interrupted");
    // The intendant thread may still send its next call: it is refused, never judged.
    for late in &entries[ended + 1..] {
        assert_eq!(late["kind"], "gateway.rejected", "{entries:#?}");
        assert_eq!(late["body"]["code"], "session_closed", "{late}");
    }
    assert!(
        !entries.iter().any(|e| e["kind"] == "approval.granted"),
        "{entries:#?}"
    );
    assert_eq!(session_status(home, session), "interrupted");
    let verify = Command::new(AGP)
        .arg("--home")
        .arg(home)
        .arg("verify")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
}

fn wait_output(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

#[test]
fn a_signal_at_the_prompt_ends_the_session_and_cancels_its_approval() {
    for (signal, name) in [
        (Signal::TERM, "SIGTERM"),
        (Signal::INT, "SIGINT"),
        (Signal::HUP, "SIGHUP"),
    ] {
        let w = demo_world();
        let tmp = w.tmp();
        let fifo = mkfifo(&w.dir.path().join("answers"));
        let child = start_run(&w.home, &w.user_home, &fifo, &tmp);
        let session = wait_for_pending_approval(&w.home);
        send(&child, signal);
        let out = wait_output(child);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "agp: interrupted by {name}: session {session} ended as interrupted, its pending approvals cancelled"
            )),
            "{stderr}"
        );
        assert_interrupted(&w.home, &session);
        let cancelled = journal(&w.home)
            .into_iter()
            .find(|e| e["kind"] == "approval.denied")
            .unwrap();
        assert_eq!(cancelled["body"]["cancelled"], true, "{cancelled}");
        assert_eq!(demo_copies(&tmp), Vec::<PathBuf>::new(), "{name}");
    }
}

#[test]
fn a_later_run_never_shows_or_answers_a_killed_runs_prompt() {
    let w = demo_world();
    let tmp = w.tmp();
    let fifo = mkfifo(&w.dir.path().join("fifo"));
    // Killed outright: no chance to clean up, the session and its approval stay behind.
    let child = start_run(&w.home, &w.user_home, &fifo, &tmp);
    let dead = wait_for_pending_approval(&w.home);
    send(&child, Signal::KILL);
    wait_output(child);
    assert_eq!(session_status(&w.home, &dead), "active");

    // The next run's first answer must go to its own call-8, and its second to its call-9:
    // exactly what the demo script expects (exit 0).
    let answers = w.file("answers", "allow\ndeny\n");
    let out = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .args(["run", "--approver-script"])
        .arg(&answers)
        .env("HOME", &w.user_home)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !stderr.contains(&dead),
        "the dead session's prompt was shown:\n{stderr}"
    );
    assert_eq!(stderr.matches("approval required").count(), 2, "{stderr}");

    // The dead session was ended at start, its approval settled without anyone being asked.
    assert_eq!(session_status(&w.home, &dead), "interrupted");
    let entries: Vec<Value> = journal(&w.home)
        .into_iter()
        .filter(|e| e["session"] == dead)
        .collect();
    let reaped = entries
        .iter()
        .find(|e| e["kind"] == "session.reaped")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(reaped["body"]["status"], "interrupted");
    let settled = entries
        .iter()
        .find(|e| e["kind"] == "approval.timeout" && e["body"]["call_id"] == "call-8")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(settled["body"]["recovered"], true);
    // Asked once (by the run that died), never again, never granted.
    assert!(!entries.iter().any(|e| e["kind"] == "approval.granted"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["kind"] == "approval.requested")
            .count(),
        1
    );
}

/// `agp run EXTRA` with a fresh pty as its controlling terminal (stdin, stdout, stderr), demo
/// copies under `tmp`; the screen.
fn run_on_pty(w: &support_loop::DemoWorld, tmp: &Path, extra: &[&OsStr]) -> (Child, Screen) {
    let (master, slave) = open_pty();
    // `setsid --ctty` makes the pty agp's controlling terminal, as in a terminal window (and
    // agp the session leader the kernel sends SIGHUP when the terminal goes away).
    let child = Command::new("setsid")
        .args(["--ctty", "--wait"])
        .arg(AGP)
        .arg("--home")
        .arg(&w.home)
        .arg("run")
        .args(extra)
        .env("HOME", &w.user_home)
        .env("TMPDIR", tmp)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    (child, Screen::read(master, PATIENCE))
}

#[test]
fn closing_the_terminal_ends_the_session() {
    let w = demo_world();
    let tmp = w.tmp();
    // The approver reads a FIFO nobody writes, so only the hang-up can end the wait.
    let fifo = mkfifo(&w.dir.path().join("answers"));
    let (mut child, screen) = run_on_pty(
        &w,
        &tmp,
        &[OsStr::new("--approver-script"), fifo.as_os_str()],
    );
    let session = wait_for_pending_approval(&w.home);
    // The terminal window closes: the last handle on the pty's master side goes away.
    screen.close();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert_interrupted(&w.home, &session);
    assert_eq!(demo_copies(&tmp), Vec::<PathBuf>::new());
}

#[test]
fn ctrl_c_at_the_terminal_prompt_ends_the_session() {
    let w = demo_world();
    let tmp = w.tmp();
    let (mut child, screen) = run_on_pty(&w, &tmp, &[]);
    screen.wait_for("decide:", 1);
    let session = wait_for_pending_approval(&w.home);
    screen.press(&[0x03]);
    let status = child.wait().unwrap();
    let shown = screen.wait_for("agp: interrupted by SIGINT", 1);
    screen.close();
    assert_eq!(status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("interrupted: nothing was approved"),
        "{shown}"
    );
    // Nothing of the session is printed after the interruption line.
    let after = shown.split("agp: interrupted by SIGINT").nth(1).unwrap();
    assert!(!after.contains("#9"), "{shown}");
    assert_interrupted(&w.home, &session);
    assert_eq!(demo_copies(&tmp), Vec::<PathBuf>::new());
}

/// A stand-in for Claude Code at `DIR/claude`: answers `--version` as 2.1.332 and otherwise
/// runs `body` (shell) in the repository; its path.
fn fake_claude(w: &support_loop::DemoWorld, body: &str) -> PathBuf {
    super::support::agents::write_executable(
        &w.dir.path().join("claude"),
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = \"--version\" ]; then echo '2.1.332 (Claude Code)'; exit 0; fi\n\
             {body}"
        ),
    )
}

/// `agp run FLAGS --intendant claude-code --task TASK --repo REPO` with `agent` as the Claude
/// Code binary, a placeholder API key and no stdin.
fn claude_run(w: &support_loop::DemoWorld, agent: &Path, flags: &[&str], task: &str) -> Command {
    let mut cmd = Command::new(AGP);
    cmd.arg("--home")
        .arg(&w.home)
        .arg("run")
        .args(flags)
        .args(["--intendant", "claude-code", "--task", task, "--repo"])
        .arg(&w.repo)
        .env("HOME", &w.user_home)
        .env("AGP_CLAUDE_BIN", agent)
        .env("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn a_signal_ends_a_live_agent_run_and_removes_its_scratch_folder() {
    for (signal, name) in [(Signal::TERM, "SIGTERM"), (Signal::HUP, "SIGHUP")] {
        let w = demo_world();
        // A stand-in for Claude Code that starts, says so in the repository, and never ends.
        let agent = fake_claude(&w, "touch agent-started\nexec sleep 1000\n");
        let child = claude_run(&w, &agent, &[], "wait")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !w.repo.join("agent-started").exists() {
            assert!(start.elapsed() < WAIT, "the agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let session = journal(&w.home)
            .into_iter()
            .find(|e| e["kind"] == "session.started")
            .unwrap()["session"]
            .as_str()
            .unwrap()
            .to_owned();
        send(&child, signal);
        let out = wait_output(child);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("agp: interrupted by {name}: session {session}")),
            "{stderr}"
        );
        assert_eq!(session_status(&w.home, &session), "interrupted");
        let scratch: Vec<_> = std::fs::read_dir(w.home.join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("agent-"))
            .collect();
        assert!(scratch.is_empty(), "{scratch:?}");
        // The timeline names the sandbox that proved itself before the agent started.
        let shown = support_loop::timeline_with_preflight(&w.home, None, &session);
        assert!(
            shown.contains("session.ended        interrupted"),
            "{shown}"
        );
    }
}

#[test]
fn a_signal_ends_a_run_on_a_running_daemon_and_cancels_its_approval_there() {
    let w = demo_world();
    let tmp = w.tmp();
    let fifo = mkfifo(&w.dir.path().join("answers"));
    let _daemon =
        support_loop::start_daemon(&w.home, [OsStr::new("--approver-script"), fifo.as_os_str()]);
    let child = Command::new(AGP)
        .arg("--home")
        .arg(&w.home)
        .arg("run")
        .env("HOME", &w.user_home)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = wait_for_pending_approval(&w.home);
    send(&child, Signal::TERM);
    let out = wait_output(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("agp: interrupted by SIGTERM"), "{stderr}");
    // The daemon ended the session when asked: its approval is settled, the prompt gone.
    let start = Instant::now();
    while !journal(&w.home)
        .iter()
        .any(|e| e["kind"] == "session.ended" && e["session"] == session.as_str())
    {
        assert!(start.elapsed() < WAIT, "the session was not ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_interrupted(&w.home, &session);
    assert_eq!(demo_copies(&tmp), Vec::<PathBuf>::new());
}

#[test]
fn a_live_agent_run_with_json_prints_only_the_summary_on_stdout() {
    let w = demo_world();
    let agent = fake_claude(&w, "echo 'the agent talks on its stdout'\n");
    let out = claude_run(&w, &agent, &["--json"], "talk")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["intendant"], "claude-code");
    assert_eq!(summary["exit_code"], 0);
    assert!(stderr.contains("the agent talks on its stdout"), "{stderr}");
}
