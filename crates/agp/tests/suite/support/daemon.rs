//! What the tests of a running `agp daemon` share: the policies they switch between, reading
//! the journal while the daemon writes it, waiting for entries, signalling the daemon, FIFOs
//! for approvals.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `echo` is denied (the default); the first policy in force.
pub const DENY_ECHO: &str = "version = 1\ndefault = \"deny\"\n";
/// `echo` is allowed.
pub const ALLOW_ECHO: &str = "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"echo-ok\"\neffect = \"allow\"\nmatch = [\"Bash(echo *)\"]\n";

/// A generous bound on anything the daemon does in the background; never a timing assert.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The journal entries written so far: none before the journal exists, and a line the daemon
/// is still writing is skipped.
pub fn entries_so_far(home: &Path) -> Vec<Value> {
    std::fs::read_to_string(home.join("journal/entries.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The bodies of the entries of `kind`, in order.
pub fn bodies(entries: Vec<Value>, kind: &str) -> Vec<Value> {
    entries
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["body"].clone())
        .collect()
}

/// Polls the journal (read by `read`) until it holds `n` entries of `kind`; their bodies.
pub fn wait_for_n(
    home: &Path,
    read: impl Fn(&Path) -> Vec<Value>,
    kind: &str,
    n: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = bodies(read(home), kind);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the journal never got {n} `{kind}` entries (has {found:?})"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends SIGHUP to `daemon`.
pub fn sighup(daemon: &Child) {
    let sent = Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Makes the FIFO `path`.
pub fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A gate session opened on `home`'s daemon (admin token) for `repo`, whose one Bash call
/// `command` (call id `call_id`) needs approval, asked from a thread; true if it was allowed.
pub fn ask_in_gate_session(
    home: &Path,
    repo: &Path,
    call_id: &str,
    command: &str,
) -> std::thread::JoinHandle<bool> {
    use agp_gateway::{Client, SessionMode, ToolCallRequest};
    let socket = home.join("run/gateway.sock");
    let admin = std::fs::read_to_string(home.join("run/admin.token")).unwrap();
    let repo = repo.to_owned();
    let (call_id, command) = (call_id.to_owned(), command.to_owned());
    std::thread::spawn(move || {
        let mut control = Client::connect(&socket, Duration::from_secs(10)).unwrap();
        let opened = control
            .open_session(
                admin.trim(),
                "test",
                repo.to_str().unwrap(),
                "",
                SessionMode::Gate,
            )
            .unwrap();
        let mut c = Client::connect(&socket, Duration::from_secs(150)).unwrap();
        c.hello(&opened.token).unwrap();
        let reply = c.request(&ToolCallRequest {
            id: call_id,
            tool_use_id: None,
            tool: "Bash".into(),
            input: serde_json::json!({ "command": command }),
            cwd: repo.display().to_string(),
        });
        matches!(reply, Ok(v) if v.is_allow())
    })
}
