//! Team mode end to end with the real binary: two agp homes (two members of a team, as two
//! hosts would be) whose daemons keep their state in one throwaway PostgreSQL (`[state] url`).
//! `agp sessions` lists both members' sessions with their host; PostgreSQL going down
//! mid-session refuses the next call with one clear line, journaled in the local journal, and
//! the session goes on once the server is back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agp_testkit::postgres::PgServer;
use serde_json::{json, Value};

use super::support::looping::{
    agp_ok, claude_hook, init_home, journal, start_daemon_with_home_policy, Daemon, AGP,
};

/// Reads inside the project are allowed, everything else denied; guards off so that only the
/// rule decides.
const POLICY: &str = "version = 1\ndefault = \"deny\"\n\n[guards]\ndestructive = false\n\
\"protected-paths\" = false\nsecrets = false\n\"supply-chain\" = false\n\
\"network-egress\" = false\nprivilege = false\n\n[[rule]]\nid = \"read-project\"\n\
effect = \"allow\"\nmatch = [\"Read(/**)\"]\n";

struct Member {
    // Stops before the folders go.
    _daemon: Daemon,
    home: PathBuf,
    user_home: PathBuf,
    project: PathBuf,
}

/// A home named `name` under `dir` whose daemon keeps its state at `url` as member `name`.
fn member(dir: &Path, name: &str, url: &str) -> Member {
    let home = dir.join(name).join("agp-home");
    let user_home = dir.join(name).join("user");
    let project = dir.join(name).join("proj");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(&user_home).unwrap();
    std::fs::write(project.join("notes.txt"), "n").unwrap();
    init_home(&home, Some(&user_home));
    std::fs::write(home.join("policy.toml"), POLICY).unwrap();
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[state]\nurl = \"{url}\"\nmember = \"{name}\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    Member {
        _daemon: start_daemon_with_home_policy(&home),
        home,
        user_home,
        project: std::fs::canonicalize(project).unwrap(),
    }
}

/// A Read of the member's notes in Claude Code session `session`, as its hook reports it.
fn read_notes(m: &Member, session: &str, id: &str) -> Value {
    claude_hook(
        &m.home,
        &m.user_home,
        Some(&m.project),
        &notes_event(m, session, id),
    )
}

fn notes_event(m: &Member, session: &str, id: &str) -> Value {
    json!({"hook_event_name": "PreToolUse", "session_id": session,
        "tool_name": "Read", "tool_use_id": id,
        "tool_input": {"file_path": m.project.join("notes.txt")}})
}

/// The hook when agp could not check the call: it denies, says why on stderr too, and exits
/// 2 (Claude Code's "blocked"); its decision JSON and its stderr.
fn refused_hook(m: &Member, event: &Value) -> (Value, String) {
    let mut child = Command::new(AGP)
        .arg("--home")
        .arg(&m.home)
        .args(["hook", "--harness", "claude-code", "--attach", "--project"])
        .arg(&m.project)
        .env("HOME", &m.user_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(event.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let answer = serde_json::from_slice(&out.stdout).unwrap();
    (answer, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn decision(answer: &Value) -> &str {
    answer["hookSpecificOutput"]["permissionDecision"]
        .as_str()
        .unwrap_or("?")
}

#[test]
fn two_daemons_share_postgres_and_a_database_gone_mid_session_refuses_calls() {
    let Some(server) = PgServer::start_new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = member(dir.path(), "laptop-1", &server.url());
    let b = member(dir.path(), "ci-runner-2", &server.url());
    for (m, session) in [(&a, "claude-a"), (&b, "claude-b")] {
        let answer = read_notes(m, session, "t1");
        assert_eq!(decision(&answer), "allow", "{answer}");
    }

    // Each home lists the team's sessions, each with the member whose daemon runs it.
    for m in [&a, &b] {
        let listed: Value = serde_json::from_str(&agp_ok(
            &m.home,
            Some(&m.user_home),
            &["sessions", "--json"],
        ))
        .unwrap();
        let mut hosts: Vec<(String, String)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["host"].as_str().unwrap().to_owned(),
                    s["repo"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        hosts.sort();
        let expected = |m: &Member, host: &str| (host.to_owned(), m.project.display().to_string());
        assert_eq!(
            hosts,
            [expected(&b, "ci-runner-2"), expected(&a, "laptop-1")]
        );
        let table = agp_ok(&m.home, Some(&m.user_home), &["sessions"]);
        assert!(table.lines().next().unwrap().contains("HOST"), "{table}");
        assert!(
            table.contains("laptop-1") && table.contains("ci-runner-2"),
            "{table}"
        );
    }

    // PostgreSQL goes away mid-session: the next call is refused (fail closed), with one line
    // that says why, and the refusal is in the member's own journal.
    server.stop();
    let (refused, stderr) = refused_hook(&a, &notes_event(&a, "claude-a", "t2"));
    assert_eq!(decision(&refused), "deny", "{refused}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("shared state unavailable"), "{stderr}");
    let reason = refused["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("shared state unavailable"), "{refused}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    let rejected: Vec<Value> = journal(&a.home)
        .into_iter()
        .filter(|e| e["kind"] == "gateway.rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let message = rejected[0]["body"]["message"].as_str().unwrap();
    assert!(message.contains("shared state unavailable"), "{message}");

    // Back: the same session goes on, nothing lost.
    server.start().unwrap();
    let again = read_notes(&a, "claude-a", "t3");
    assert_eq!(decision(&again), "allow", "{again}");
    let listed = agp_ok(&a.home, Some(&a.user_home), &["sessions", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&listed)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
