//! Calls the policy ALLOWS (every guard off, default allow) still cannot leave the bubblewrap
//! sandbox when run by the daemon: no connection to the host's loopback, no read of the real
//! HOME, no view of host processes, no write outside the repository.

use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::Value;

use super::support::looping as support_loop;

/// A directory outside /tmp (a private tmpfs inside the sandbox), removed on drop.
struct OutsideTmp(PathBuf);
impl Drop for OutsideTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn allowed_calls_cannot_escape_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let outside = OutsideTmp(PathBuf::from(format!(
        "/var/tmp/agp-escape-{}-{}",
        std::process::id(),
        dir.path().file_name().unwrap().to_string_lossy()
    )));
    let user_home = outside.0.join("home");
    std::fs::create_dir_all(&user_home).unwrap();
    let canary = user_home.join("canary.txt");
    std::fs::write(&canary, "CANARY-7f3a").unwrap();
    let written = outside.0.join("written.txt");

    support_loop::init_home(&home, Some(&user_home));
    let policy = support_loop::write_allow_everything(dir.path());

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_pid = std::process::id();
    let calls = [
        format!("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'"),
        format!("cat {}", canary.display()),
        format!("cat /proc/{host_pid}/cmdline"),
        format!("echo escaped > {}", written.display()),
    ];
    let script = dir.path().join("escapes.yaml");
    let mut yaml = support_loop::bash_calls_yaml(&calls);
    yaml.push_str(&format!(
        "  - tool: Read\n    input: {{ file_path: {} }}\n",
        serde_json::to_string(&canary.display().to_string()).unwrap()
    ));
    std::fs::write(&script, yaml).unwrap();

    // Calls the shell parser cannot judge (inline interpreter code) need approval, hence
    // `--auto-approve`.
    let out = support_loop::run_scripted_auto_approve(&home, &user_home, &script, &repo, &policy);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("✓ journal verified"), "{stdout}");

    assert!(
        listener.accept().is_err(),
        "the sandbox reached the host's loopback"
    );
    assert!(!written.exists(), "a write outside the repo escaped");
    let text = std::fs::read_to_string(home.join("journal/entries.jsonl")).unwrap();
    assert!(!text.contains("CANARY-7f3a"), "the real HOME was readable");
    let results: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "tool_call.result")
        .collect();
    // Every call was allowed by policy and run in the sandbox, where it failed.
    assert_eq!(results.len(), calls.len() + 1, "{stdout}");
    for r in &results {
        assert_eq!(r["body"]["ok"], false, "{r}");
    }
    // The connect really ran (python3 is there) and the kernel refused it inside the sandbox.
    let connect = results[0]["body"]["output"].as_str().unwrap();
    assert!(
        connect.contains("Network is unreachable") || connect.contains("Connection refused"),
        "{connect}"
    );
}
