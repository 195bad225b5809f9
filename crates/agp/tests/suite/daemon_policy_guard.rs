//! A running `agp daemon` puts no policy change in force while a session whose agent is not
//! confined by agp's sandbox lives: such an agent (a hook session of the user's own Claude
//! Code, or calls run with `--sandbox none`) runs as the operator, so any program the policy
//! lets it run could have rewritten the file. The change is refused (`policy.reload_refused`
//! naming the session), the previous policy keeps judging; a saved change is not picked up by
//! itself after such a session ended either (it may be the agent's last edit), and once no
//! such session lives the operator's SIGHUP puts the file in force. The policy in force also
//! refuses calls that write it.

use std::path::Path;

use agp_gateway::{Client, SessionMode, ToolCallRequest};
use serde_json::{json, Value};

use super::support::daemon::{self, bodies, sighup, ALLOW_ECHO, DENY_ECHO, PATIENCE};
use super::support::looping::{agp_ok, claude_hook, journal, policy_world, start_daemon};

fn of_kind(home: &Path, kind: &str) -> Vec<Value> {
    bodies(journal(home), kind)
}

/// Polls the journal until it holds `n` entries of `kind`; their bodies.
fn wait_for_n(home: &Path, kind: &str, n: usize) -> Vec<Value> {
    daemon::wait_for_n(home, journal, kind, n)
}

fn bash_event(harness_session: &str, id: &str, command: &str, cwd: &Path) -> Value {
    json!({"hook_event_name": "PreToolUse", "session_id": harness_session,
        "tool_name": "Bash", "tool_use_id": id, "cwd": cwd,
        "tool_input": {"command": command}})
}

fn decision(answer: &Value) -> &str {
    answer["hookSpecificOutput"]["permissionDecision"]
        .as_str()
        .unwrap_or("?")
}

/// The SHA-256 of the policy that judged the hook call `tool_use_id`.
fn judged_by(home: &Path, tool_use_id: &str) -> String {
    let call = of_kind(home, "tool_call.requested")
        .into_iter()
        .find(|b| b["tool_use_id"] == tool_use_id)
        .unwrap();
    let decided: Vec<Value> = of_kind(home, "policy.decided")
        .into_iter()
        .filter(|b| b["call_id"] == call["call_id"])
        .collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    decided[0]["policy_sha256"].as_str().unwrap().to_owned()
}

/// Ends the hook session the home's run directory remembers (there is one), as the operator
/// would once the agent is done.
fn end_hook_sessions(home: &Path) {
    let socket = home.join("run/gateway.sock");
    for cached in std::fs::read_dir(home.join("run/hook-sessions")).unwrap() {
        let token = std::fs::read_to_string(cached.unwrap().path()).unwrap();
        let mut c = Client::connect(&socket, PATIENCE).unwrap();
        c.hello(token.trim()).unwrap();
        c.end_session(Some("completed")).unwrap();
    }
}

#[test]
fn an_unsandboxed_hook_session_holds_off_reloads_until_it_ends() {
    let w = policy_world(DENY_ECHO);
    let user_home = w.dir.path().join("user");
    std::fs::create_dir(&user_home).unwrap();
    let d = start_daemon(&w.home, ["--policy", w.policy.to_str().unwrap()]);
    let hook = |id: &str, command: &str| {
        claude_hook(
            &w.home,
            &user_home,
            Some(&w.repo),
            &bash_event("claude-1", id, command, &w.repo),
        )
    };
    assert_eq!(decision(&hook("t1", "echo one")), "deny");
    let first = judged_by(&w.home, "t1");
    let started = of_kind(&w.home, "session.started");
    assert_eq!(started[0]["agent_confined"], false, "{started:?}");
    let session = started[0]["session"].as_str().unwrap().to_owned();

    // What the agent (or a build script it ran) would do: rewrite the policy to allow itself.
    std::fs::write(&w.policy, ALLOW_ECHO).unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 1);
    assert_eq!(refused[0]["trigger"], "watch");
    assert_eq!(refused[0]["kept_sha256"], first.as_str());
    let error = refused[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&session) && error.contains("outside agp's sandbox"),
        "{error}"
    );
    assert_eq!(decision(&hook("t2", "echo two")), "deny");
    assert_eq!(judged_by(&w.home, "t2"), first);

    // SIGHUP (which the agent, as the operator's user, could send too) is refused alike.
    sighup(&d.0);
    let refused = wait_for_n(&w.home, "policy.reload_refused", 2);
    assert_eq!(refused[1]["trigger"], "sighup");
    assert_eq!(decision(&hook("t3", "echo three")), "deny");
    assert!(of_kind(&w.home, "policy.reloaded").is_empty());

    // The session ends. An edit saved now is still not picked up by itself: the agent lived
    // since the policy in force was loaded, so the file may hold its last edit.
    end_hook_sessions(&w.home);
    std::fs::write(&w.policy, format!("# saved again\n{ALLOW_ECHO}")).unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 3);
    assert_eq!(refused[2]["trigger"], "watch");
    let error = refused[2]["error"].as_str().unwrap();
    assert!(
        error.contains(&session) && error.contains("ended since"),
        "{error}"
    );
    assert!(of_kind(&w.home, "policy.reloaded").is_empty());
    // The operator's SIGHUP (the file checked) puts it in force.
    sighup(&d.0);
    let reloaded = wait_for_n(&w.home, "policy.reloaded", 1);
    assert_eq!(reloaded[0]["old_sha256"], first.as_str());
    assert_eq!(reloaded[0]["trigger"], "sighup");
    let answer = claude_hook(
        &w.home,
        &user_home,
        Some(&w.repo),
        &bash_event("claude-2", "t4", "echo four", &w.repo),
    );
    assert_eq!(decision(&answer), "allow", "{answer}");
    drop(d);
    agp_ok(&w.home, None, &["verify"]);
}

#[test]
fn a_session_whose_calls_run_without_a_sandbox_holds_off_reloads() {
    let w = policy_world(DENY_ECHO);
    // `start_daemon` runs `--sandbox none`: proxy-exec calls run on the host.
    let d = start_daemon(&w.home, ["--policy", w.policy.to_str().unwrap()]);
    let admin = std::fs::read_to_string(w.home.join("run/admin.token")).unwrap();
    let socket = w.home.join("run/gateway.sock");
    let opened = Client::connect(&socket, PATIENCE)
        .unwrap()
        .open_session(
            admin.trim(),
            "scripted",
            w.repo.to_str().unwrap(),
            "",
            SessionMode::ProxyExec,
        )
        .unwrap();
    let started = of_kind(&w.home, "session.started");
    assert_eq!(started[0]["agent_confined"], false);

    std::fs::write(&w.policy, ALLOW_ECHO).unwrap();
    let refused = wait_for_n(&w.home, "policy.reload_refused", 1);
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains(&opened.session),
        "{refused:?}"
    );
    let mut c = Client::connect(&socket, PATIENCE).unwrap();
    c.hello(&opened.token).unwrap();
    let v = c
        .request_exec(&ToolCallRequest {
            id: "c1".into(),
            tool_use_id: None,
            tool: "Bash".into(),
            input: json!({"command": "echo still denied"}),
            cwd: w.repo.display().to_string(),
        })
        .unwrap()
        .verdict;
    assert!(!v.is_allow(), "the previous policy still judges: {v:?}");
    c.end_session(Some("completed")).unwrap();
    sighup(&d.0);
    wait_for_n(&w.home, "policy.reloaded", 1);
    drop(d);
    agp_ok(&w.home, None, &["verify"]);
}

#[test]
fn a_call_that_writes_the_policy_in_force_is_denied() {
    // Every edit allowed, guards on: only the policy's protection of itself refuses.
    let w = policy_world(
        "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"edit-all\"\neffect = \"allow\"\nmatch = [\"Edit(//**)\", \"Bash(echo *)\"]\n",
    );
    let user_home = w.dir.path().join("user");
    std::fs::create_dir(&user_home).unwrap();
    let link = w.dir.path().join("linked.toml");
    std::os::unix::fs::symlink(&w.policy, &link).unwrap();
    let _d = start_daemon(&w.home, ["--policy", link.to_str().unwrap()]);
    let write = |id: &str, path: &Path| {
        let event = json!({"hook_event_name": "PreToolUse", "session_id": "c",
            "tool_name": "Write", "tool_use_id": id, "cwd": w.repo,
            "tool_input": {"file_path": path, "content": "default = \"allow\"\n"}});
        claude_hook(&w.home, &user_home, Some(&w.repo), &event)
    };
    for (id, path) in [("w1", &w.policy), ("w2", &link)] {
        let answer = write(id, path);
        assert_eq!(decision(&answer), "deny", "{answer}");
        let reason = answer["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains("the policy in force"), "{answer}");
    }
    let redirect = claude_hook(
        &w.home,
        &user_home,
        Some(&w.repo),
        &bash_event(
            "c",
            "b1",
            &format!("echo '[[rule]]' >> {}", link.display()),
            &w.repo,
        ),
    );
    assert_eq!(decision(&redirect), "deny", "{redirect}");
    // Another file beside it is only a file.
    let beside = write("w3", &w.dir.path().join("notes.toml"));
    assert_eq!(decision(&beside), "allow", "{beside}");
}
