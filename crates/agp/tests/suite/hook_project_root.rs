//! Hook mode (`agp hook --attach`, as `agp install-hooks` writes it) against a real `agp daemon`:
//! the session's project root is the recorded one (or the repository around the first event),
//! never an event's `cwd`; and a PostToolUse that reports another input than the approved call
//! is journaled as a mismatch and flagged, never linked to the call.

use std::path::Path;

use serde_json::{json, Value};

use support_loop::{agp_ok, init_home, journal, start_daemon_with_home_policy, Daemon};

use super::support::looping as support_loop;

/// Only the rule decides: `Read(/**)` (the project) allowed, everything else denied, guards off
/// so that no secret-path guard hides what the root makes the rule cover.
const POLICY: &str = "version = 1\ndefault = \"deny\"\n\n[guards]\ndestructive = false\n\
\"protected-paths\" = false\nsecrets = false\n\"supply-chain\" = false\n\
\"network-egress\" = false\nprivilege = false\n\n[[rule]]\nid = \"read-project\"\n\
effect = \"allow\"\nmatch = [\"Read(/**)\"]\n";

/// A home with the policy above, its daemon running, and a project holding `notes.txt`.
struct World {
    // Stops before the folders go.
    _daemon: Daemon,
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    user_home: std::path::PathBuf,
    project: std::path::PathBuf,
    notes: std::path::PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agp-home");
    let user_home = dir.path().join("user");
    let project = dir.path().join("proj");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::create_dir_all(&user_home).unwrap();
    std::fs::write(project.join("notes.txt"), "n").unwrap();
    init_home(&home, Some(&user_home));
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let project = std::fs::canonicalize(project).unwrap();
    std::fs::copy(&policy, home.join("policy.toml")).unwrap();
    World {
        _daemon: start_daemon_with_home_policy(&home),
        home,
        user_home,
        notes: project.join("notes.txt"),
        project,
        _dir: dir,
    }
}

/// Runs the hook as the harness would; its decision JSON.
fn hook(w: &World, project: Option<&Path>, event: &Value) -> Value {
    support_loop::claude_hook(&w.home, &w.user_home, project, event)
}

fn read(session: &str, id: &str, cwd: Option<&str>, path: &str) -> Value {
    let mut e = json!({"hook_event_name": "PreToolUse", "session_id": session,
        "tool_name": "Read", "tool_use_id": id, "tool_input": {"file_path": path}});
    if let Some(c) = cwd {
        e["cwd"] = json!(c);
    }
    e
}

fn decision(answer: &Value) -> &str {
    answer["hookSpecificOutput"]["permissionDecision"]
        .as_str()
        .unwrap_or("?")
}

#[test]
fn an_events_cwd_never_widens_the_project() {
    let w = world();
    let p = w.project.clone();
    let notes = w.notes.to_str().unwrap();
    let sub = p.join("src");

    // Recorded project, events from `/` and from elsewhere: the root stays the project.
    for (n, cwd) in [Some("/"), Some("/root"), None].into_iter().enumerate() {
        let s = format!("recorded-{n}");
        let secret = hook(&w, Some(&p), &read(&s, "a", cwd, "/root/.bash_history"));
        assert_eq!(decision(&secret), "deny", "{cwd:?}: {secret}");
        let etc = hook(&w, Some(&p), &read(&s, "b", cwd, "/etc/hostname"));
        assert_eq!(decision(&etc), "deny", "{cwd:?}: {etc}");
        let inside = hook(&w, Some(&p), &read(&s, "c", cwd, notes));
        assert_eq!(decision(&inside), "allow", "{cwd:?}: {inside}");
    }

    // A user-wide install: the repository around the cwd is the root, and `/` is no project.
    let from_sub = "user-sub";
    let ok = hook(&w, None, &read(from_sub, "a", sub.to_str(), notes));
    assert_eq!(decision(&ok), "allow", "{ok}");
    let secret = hook(
        &w,
        None,
        &read(from_sub, "b", sub.to_str(), "/root/.bash_history"),
    );
    assert_eq!(decision(&secret), "deny", "{secret}");
    for (s, cwd) in [("user-root", Some("/")), ("user-none", None)] {
        let secret = hook(&w, None, &read(s, "a", cwd, "/root/.bash_history"));
        assert_eq!(decision(&secret), "deny", "{cwd:?}: {secret}");
        let elsewhere = hook(&w, None, &read(s, "b", cwd, notes));
        assert_eq!(decision(&elsewhere), "deny", "{cwd:?}: {elsewhere}");
    }

    let repos: Vec<String> = journal(&w.home)
        .iter()
        .filter(|e| e["kind"] == "session.started")
        .map(|e| e["body"]["repo"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(repos.len(), 6, "{repos:?}");
    assert!(repos[..4].iter().all(|r| Path::new(r) == p), "{repos:?}");
    assert!(
        repos[4..].iter().all(|r| r.ends_with("run/no-project")),
        "{repos:?}"
    );
}

#[test]
fn a_forged_post_tool_use_is_journaled_as_a_mismatch_and_flagged() {
    let w = world();
    let p = w.project.clone();
    let notes = &w.notes;
    let pre = read("forge", "t9", Some("/"), notes.to_str().unwrap());
    assert_eq!(decision(&hook(&w, Some(&p), &pre)), "allow");
    let forged = json!({"hook_event_name": "PostToolUse", "session_id": "forge",
        "tool_name": "Read", "tool_use_id": "t9", "cwd": "/",
        "tool_input": {"file_path": "/root/.bash_history"},
        "tool_response": {"content": "secret history"}});
    hook(&w, Some(&p), &forged);
    // The honest result for another allowed call still links.
    let pre = read("forge", "t10", Some("/"), notes.to_str().unwrap());
    assert_eq!(decision(&hook(&w, Some(&p), &pre)), "allow");
    let honest = json!({"hook_event_name": "PostToolUse", "session_id": "forge",
        "tool_name": "Read", "tool_use_id": "t10", "cwd": "/",
        "tool_input": {"file_path": notes}, "tool_response": {"content": "n"}});
    hook(&w, Some(&p), &honest);

    let entries = journal(&w.home);
    let of = |k: &str| -> Vec<&Value> { entries.iter().filter(|e| e["kind"] == k).collect() };
    let mismatch = of("tool_call.result_mismatch");
    assert_eq!(mismatch.len(), 1, "{entries:#?}");
    assert_eq!(mismatch[0]["body"]["call_id"], "tu:t9");
    let results = of("tool_call.result");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["body"]["call_id"], "tu:t10");

    let session = mismatch[0]["session"].as_str().unwrap();
    let shown = agp_ok(&w.home, Some(&w.user_home), &["sessions", "show", session]);
    assert!(shown.contains("tu:t9 NOT LINKED"), "{shown}");
    assert!(
        shown.contains("✗ the result reported for tu:t9 ran with another input"),
        "{shown}"
    );
}
