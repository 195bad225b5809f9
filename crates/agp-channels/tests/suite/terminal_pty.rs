//! The terminal channel driven through a real pseudo-terminal: the channel opens the pty's
//! slave side exactly as it opens /dev/tty, and the test plays the human on the master side.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agp_channels::{TerminalChannel, NO_TERMINAL, TERMINAL_CLOSED};
use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// The human's side of a pseudo-terminal.
struct Pty {
    master: Option<Arc<File>>,
    slave: PathBuf,
    output: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    fn open() -> Pty {
        let master: OwnedFd =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let slave = PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
        // Non-blocking, so the reader thread can notice `stop` and let go of the master.
        rustix::io::ioctl_fionbio(&master, true).unwrap();
        let master = Arc::new(File::from(master));
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reader, out, halt) = (Arc::clone(&master), Arc::clone(&output), Arc::clone(&stop));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !halt.load(Ordering::SeqCst) {
                match (&*reader).read(&mut buf) {
                    Ok(n) if n > 0 => out.lock().unwrap().extend_from_slice(&buf[..n]),
                    // Nothing yet (EAGAIN), or EIO while no slave is open.
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Pty {
            master: Some(master),
            slave,
            output,
            stop,
            reader: Some(reader),
        }
    }

    fn channel(&self) -> TerminalChannel {
        TerminalChannel::open(&self.slave).expect("pty slave opens as a terminal")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` has appeared `times` times in the output.
    fn wait_for(&self, needle: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if text.matches(needle).count() >= times {
                return text;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {needle:?} x{times}; terminal shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn press(&self, keys: &[u8]) {
        let master = self.master.as_ref().unwrap();
        (&**master).write_all(keys).unwrap();
    }

    /// Closes the master side: the terminal hangs up under the channel.
    fn hang_up(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.master = None;
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn request(call: &str) -> ApprovalRequest {
    ApprovalRequest {
        session: "sess-pty".into(),
        call_id: call.into(),
        tool: "Bash".into(),
        redacted_input: json!({"command": "git push origin main", "description": "publish"}),
        input_sha256: "0123456789abcdef".repeat(4),
        rule_id: Some("git.push".into()),
        reason: "pushing changes a remote".into(),
        approvers: vec![],
        quorum: 1,
        expires_at_ms: now_ms() + 60_000,
        remember_secs: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs the approval on the runtime while the test thread plays the human.
/// A channel on `pty` asked `req` on a thread of its own (the answer comes when joined).
fn asking(
    pty: &Pty,
    req: ApprovalRequest,
) -> (
    Arc<TerminalChannel>,
    std::thread::JoinHandle<ApprovalOutcome>,
) {
    let channel = Arc::new(pty.channel());
    let answer = ask_in_background(&channel, req);
    (channel, answer)
}

fn ask_in_background(
    channel: &Arc<TerminalChannel>,
    req: ApprovalRequest,
) -> std::thread::JoinHandle<ApprovalOutcome> {
    let channel = Arc::clone(channel);
    std::thread::spawn(move || {
        runtime()
            .block_on(channel.request_approval(&req))
            .expect("terminal channel answers")
    })
}

/// After `settle`, the prompt must still be waiting (`why`: what must not have answered it);
/// then `n` denies it.
fn still_waiting_then_denied(
    pty: &Pty,
    answer: std::thread::JoinHandle<ApprovalOutcome>,
    settle: Duration,
    why: &str,
) {
    std::thread::sleep(settle);
    assert!(!answer.is_finished(), "{why}");
    pty.press(b"n");
    assert!(matches!(
        answer.join().unwrap(),
        ApprovalOutcome::Denied { .. }
    ));
}

#[test]
fn allow_shows_the_call_and_grants_as_the_terminal_user() {
    let pty = Pty::open();
    let (_channel, answer) = asking(&pty, request("c1"));
    let shown = pty.wait_for("decide:", 1);
    for needle in [
        "Bash",
        "git.push",
        "pushing changes a remote",
        "0123456789ab",
        "\"command\": \"git push origin main\"",
        "\"description\": \"publish\"",
    ] {
        assert!(shown.contains(needle), "prompt lacks {needle:?}:\n{shown}");
    }
    pty.press(b"y");
    let ApprovalOutcome::Granted { by } = answer.join().unwrap() else {
        panic!("expected a grant")
    };
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].via, "terminal");
    assert!(by[0].id.starts_with("tty:"), "{:?}", by[0]);
    pty.wait_for("allowed by tty:", 1);
}

#[test]
fn deny_is_a_denial_by_the_terminal_user() {
    let pty = Pty::open();
    let (_channel, answer) = asking(&pty, request("c1"));
    pty.wait_for("decide:", 1);
    pty.press(b"n");
    match answer.join().unwrap() {
        ApprovalOutcome::Denied { by, reason } => {
            assert_eq!(by.via, "terminal");
            assert_eq!(reason.as_deref(), Some("denied at the terminal"));
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn details_show_the_full_hash_then_allow() {
    let pty = Pty::open();
    let (_channel, answer) = asking(&pty, request("call-details"));
    let before = pty.wait_for("decide:", 1);
    let full = "0123456789abcdef".repeat(4);
    assert!(
        !before.contains(&full),
        "the full hash is for the details view"
    );
    pty.press(b"?");
    let after = pty.wait_for("decide:", 2);
    assert!(
        after.contains(&full) && after.contains("call-details"),
        "{after}"
    );
    pty.press(b"a");
    assert!(answer.join().unwrap().is_granted());
}

#[test]
fn pastes_and_escape_sequences_do_not_decide() {
    let pty = Pty::open();
    let (_channel, answer) = asking(&pty, request("c1"));
    pty.wait_for("decide:", 1);
    // A paste of "yes", an arrow key (ESC [ A contains 'A'), and Alt-y (ESC y).
    pty.press(b"yes");
    pty.wait_for("ignored: press a single key", 1);
    pty.press(b"\x1b[A");
    pty.press(b"\x1by");
    still_waiting_then_denied(
        &pty,
        answer,
        Duration::from_millis(300),
        "nothing so far was a deliberate single key",
    );
}

#[test]
fn without_a_terminal_require_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    for path in [PathBuf::from("/dev/null"), dir.path().join("no-such-tty")] {
        let channel = TerminalChannel::open_or_unavailable(&path);
        assert!(!channel.is_available());
        let outcome = runtime()
            .block_on(channel.request_approval(&request("c1")))
            .unwrap();
        assert_eq!(
            outcome,
            ApprovalOutcome::Unavailable {
                reason: NO_TERMINAL.to_owned()
            }
        );
        assert_eq!(NO_TERMINAL, "no approver available: no terminal");
    }
}

/// A process with no controlling terminal (as under CI or a service manager) gets `Unavailable`
/// from `TerminalChannel::controlling()`. The check runs in a child started in a new session.
#[test]
fn no_controlling_terminal_in_a_new_session() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("AGP_CHANNELS_NO_CTTY_CHILD").is_some() {
        let channel = TerminalChannel::controlling();
        let outcome = runtime()
            .block_on(channel.request_approval(&request("c1")))
            .unwrap();
        println!(
            "child-outcome: {}",
            serde_json::to_string(&outcome).unwrap()
        );
        return;
    }
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "suite::terminal_pty::no_controlling_terminal_in_a_new_session",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("AGP_CHANNELS_NO_CTTY_CHILD", "1")
    .stdin(std::process::Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent; it detaches the
    // child from any controlling terminal, which is the situation under test.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected =
        format!("child-outcome: {{\"outcome\":\"unavailable\",\"reason\":\"{NO_TERMINAL}\"}}");
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn a_timed_out_prompt_is_withdrawn_and_a_late_key_is_not_applied() {
    let pty = Pty::open();
    let channel = Arc::new(pty.channel());
    let rt = runtime();
    let first = request("c-timeout");
    let waited = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), channel.request_approval(&first)).await
    });
    assert!(
        waited.is_err(),
        "nobody pressed a key: the caller's timeout fires"
    );
    pty.wait_for("withdrawn", 1);
    // The human presses "allow" too late: it must neither count for the withdrawn request nor
    // carry over to the next one.
    pty.press(b"y");
    std::thread::sleep(Duration::from_millis(100));
    let answer = ask_in_background(&channel, request("c-next"));
    pty.wait_for("decide:", 2);
    still_waiting_then_denied(
        &pty,
        answer,
        Duration::from_millis(200),
        "the late key must not answer the next prompt",
    );
}

#[test]
fn a_request_that_expires_times_out() {
    let pty = Pty::open();
    let channel = Arc::new(pty.channel());
    let mut req = request("c1");
    req.expires_at_ms = now_ms() + 300;
    let answer = ask_in_background(&channel, req);
    pty.wait_for("timed out", 1);
    assert_eq!(answer.join().unwrap(), ApprovalOutcome::Timeout);
}

#[test]
fn agent_control_characters_cannot_repaint_the_prompt() {
    let pty = Pty::open();
    let channel = Arc::new(pty.channel());
    let mut req = request("c1");
    req.tool = "Bash\u{1b}[2J\u{1b}[H".into();
    req.reason = "looks safe\r\u{1b}]0;pwned\u{7}\u{9b}1;1H".into();
    req.redacted_input = json!({
        "command": "echo hi \u{1b}[1A\u{1b}[2K allowed by policy \u{202e}txt.sh \u{7f}\u{85}"
    });
    let answer = ask_in_background(&channel, req);
    let shown = pty.wait_for("decide:", 1);
    pty.press(b"n");
    answer.join().unwrap();
    for raw in [
        "\u{1b}[2J",
        "\u{1b}[H",
        "\u{1b}]0;",
        "\u{1b}[1A",
        "\u{1b}[2K",
        "\u{9b}",
        "\u{7}",
        "\u{202e}",
        "\u{7f}",
        "\u{85}",
        "\r\u{1b}",
    ] {
        assert!(
            !shown.contains(raw),
            "raw {raw:?} reached the terminal:\n{shown:?}"
        );
    }
    for visible in [
        "Bash\\e[2J\\e[H",
        "looks safe\\r\\e]0;pwned\\u{7}\\u{9b}1;1H",
        "\\u{202e}",
    ] {
        assert!(shown.contains(visible), "{visible:?} not shown:\n{shown}");
    }
    // Only agp's own styling (SGR bold/reset) may carry an escape byte.
    let stripped = shown.replace("\u{1b}[1m", "").replace("\u{1b}[0m", "");
    assert!(!stripped.contains('\u{1b}'), "{stripped:?}");
}

#[test]
fn concurrent_requests_are_asked_one_at_a_time() {
    let pty = Pty::open();
    let channel = Arc::new(pty.channel());
    let answers: Vec<_> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| ask_in_background(&channel, request(c)))
        .collect();
    let shown = pty.wait_for("decide:", 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        pty.text().matches("approval required").count(),
        1,
        "{shown}"
    );
    for (i, key) in [b"y", b"n", b"y"].iter().enumerate() {
        pty.wait_for("decide:", i + 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            pty.text().matches("approval required").count(),
            i + 1,
            "exactly one prompt at a time"
        );
        pty.press(*key);
    }
    let outcomes: Vec<_> = answers.into_iter().map(|a| a.join().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_granted()).count(), 2);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, ApprovalOutcome::Denied { .. }))
            .count(),
        1
    );
}

#[test]
fn a_hung_up_terminal_is_unavailable_from_then_on() {
    let mut pty = Pty::open();
    let (channel, answer) = asking(&pty, request("c1"));
    pty.wait_for("decide:", 1);
    pty.hang_up();
    assert_eq!(
        answer.join().unwrap(),
        ApprovalOutcome::Unavailable {
            reason: TERMINAL_CLOSED.to_owned()
        }
    );
    let later = runtime()
        .block_on(channel.request_approval(&request("c2")))
        .unwrap();
    assert!(matches!(later, ApprovalOutcome::Unavailable { .. }));
}

/// Ctrl-C at a prompt interrupts agp as usual, but only after the terminal mode (echo, line
/// editing, signals) has been restored. Runs in a child process, which the signal ends.
#[test]
fn ctrl_c_restores_the_terminal_before_interrupting() {
    use rustix::termios::{tcgetattr, LocalModes};
    use std::os::unix::process::ExitStatusExt;
    if let Some(slave) = std::env::var_os("AGP_CHANNELS_SIGINT_CHILD") {
        let channel = TerminalChannel::open(Path::new(&slave)).unwrap();
        let outcome = runtime().block_on(channel.request_approval(&request("c1")));
        println!("child survived with {outcome:?}");
        return;
    }
    let pty = Pty::open();
    let modes = || {
        tcgetattr(&**pty.master.as_ref().unwrap())
            .unwrap()
            .local_modes
    };
    let cooked = LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG;
    assert!(modes().contains(cooked));
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::terminal_pty::ctrl_c_restores_the_terminal_before_interrupting",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AGP_CHANNELS_SIGINT_CHILD", &pty.slave)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    pty.wait_for("decide:", 1);
    assert!(
        !modes().intersects(cooked),
        "prompt uses single keys without echo"
    );
    pty.press(b"\x03");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(rustix::process::Signal::INT.as_raw()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        modes().contains(cooked),
        "terminal mode restored before the signal"
    );
    pty.wait_for("interrupted: nothing was approved", 1);
}

#[test]
fn calls_the_terminal_user_cannot_decide_alone_are_not_put_to_them() {
    let pty = Pty::open();
    let channel = Arc::new(pty.channel());
    let mut two_people = request("c-quorum");
    two_people.quorum = 2;
    let mut named = request("c-named");
    named.approvers = vec!["U012ABCDEF".into()];
    for (req, why) in [
        (two_people, "needs 2 distinct approvers"),
        (named, "only U012ABCDEF may approve"),
    ] {
        let outcome = ask_in_background(&channel, req).join().unwrap();
        match outcome {
            ApprovalOutcome::Unavailable { reason } => assert!(reason.contains(why), "{reason}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
    }
    let shown = pty.wait_for("call not put to you", 2);
    assert!(!shown.contains("decide:"), "nobody was asked:\n{shown}");
}

#[test]
fn allow_for_this_session_is_a_key_only_where_the_rule_remembers() {
    let pty = Pty::open();
    let mut remembered = request("c1");
    remembered.remember_secs = Some(1800);
    let (channel, answer) = asking(&pty, remembered);
    let shown = pty.wait_for("decide:", 1);
    assert!(shown.contains("[s] allow for this session"), "{shown}");
    assert!(shown.contains("at most 30m"), "{shown}");
    pty.press(b"s");
    let ApprovalOutcome::GrantedForSession { by } = answer.join().unwrap() else {
        panic!("expected a grant for the session")
    };
    assert_eq!(by[0].via, "terminal");
    pty.wait_for("not asked again in this session for 30m", 1);

    // A rule without `remember`: the key is not offered, and pressing it decides nothing.
    let answer = ask_in_background(&channel, request("c2"));
    let shown = pty.wait_for("decide:", 2);
    let second = &shown[shown.rfind("approval required").unwrap()..];
    assert!(!second.contains("[s]"), "{second}");
    pty.press(b"s");
    still_waiting_then_denied(
        &pty,
        answer,
        Duration::from_millis(300),
        "`s` answered a request that offers no answer for the session",
    );
}
