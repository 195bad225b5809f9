//! Policy modes end to end with the real binary: with a policy that denies everything, a
//! shadow session's calls run (in the sandbox) and the journal records what the policy would
//! have done (`would_deny`), an observe session's calls run unjudged, and an enforced one is
//! refused as before; every unenforced session says so loudly (banner, summary, `agp doctor`,
//! `session.started`), and its journal verifies.

use std::path::Path;

use serde_json::{json, Value};

use super::support::looping::{
    agp_ok, bash_calls_yaml, claude_hook, git_world, journal, run_scripted, start_daemon, DemoWorld,
};

/// Denies every call (no rule allows anything).
const DENY_ALL: &str = "version = 1\ndefault = \"deny\"\n";

/// What each session of these tests does: two writes the policy would deny, and a read.
const COMMANDS: [&str; 3] = [
    "echo shadowed > written.txt",
    "mkdir -p made && echo x > made/y.txt",
    "cat written.txt",
];

struct Ran {
    stdout: String,
    stderr: String,
    ok: bool,
    session: String,
}

/// `agp run` of the script above on `w`'s repository with the deny-all policy and `extra`.
fn run(w: &DemoWorld, extra: &[&str]) -> Ran {
    let policy = w.file("deny-all.toml", DENY_ALL);
    let script = w.file("script.yaml", &bash_calls_yaml(&COMMANDS));
    let mut args = vec!["--policy", policy.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run_scripted(&w.home, &w.user_home, &script, &w.repo, &args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let session = journal(&w.home)
        .iter()
        .rev()
        .find(|e| e["kind"] == "session.started")
        .and_then(|e| e["session"].as_str().map(str::to_owned))
        .expect("a session started");
    Ran {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
        session,
    }
}

/// The bodies of `kind` in `session`.
fn of(home: &Path, session: &str, kind: &str) -> Vec<Value> {
    journal(home)
        .into_iter()
        .filter(|e| e["session"] == session && e["kind"] == kind)
        .map(|e| e["body"].clone())
        .collect()
}

fn set_config_mode(home: &Path, mode: &str) {
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[policy]\nmode = \"{mode}\"\n"));
    std::fs::write(&config, text).unwrap();
}

#[test]
fn shadow_runs_every_call_and_journals_what_the_policy_would_have_denied() {
    let w = git_world();
    let r = run(&w, &["--mode", "shadow"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    // Loud at the start and in the summary.
    assert!(r.stdout.contains("policy mode SHADOW"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("3 call(s) would have been denied and 0 would have needed approval"),
        "{}",
        r.stdout
    );
    // The calls ran, in the sandbox.
    assert_eq!(
        std::fs::read_to_string(w.repo.join("written.txt")).unwrap(),
        "shadowed\n"
    );
    assert!(w.repo.join("made/y.txt").is_file());

    let started = of(&w.home, &r.session, "session.started");
    assert_eq!(started[0]["policy_mode"], "shadow");
    assert_eq!(started[0]["agent_confined"], true);
    let decided = of(&w.home, &r.session, "policy.decided");
    assert_eq!(decided.len(), 3);
    for d in &decided {
        assert_eq!(d["mode"], "shadow", "{d}");
        assert_eq!(d["shadow_verdict"], "would_deny", "{d}");
        // What agp did: the call went ahead.
        assert_eq!(d["decision"], "allow", "{d}");
        assert!(d["reason"].as_str().unwrap().contains("deny"), "{d}");
    }
    let results = of(&w.home, &r.session, "tool_call.result");
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|b| b["exit_code"] == 0), "{results:?}");
    assert!(of(&w.home, &r.session, "approval.requested").is_empty());

    let shown = agp_ok(
        &w.home,
        Some(&w.user_home),
        &["sessions", "show", &r.session],
    );
    assert!(
        shown.contains("[shadow: would_deny, not enforced]"),
        "{shown}"
    );
    agp_ok(&w.home, Some(&w.user_home), &["verify"]);
}

#[test]
fn observe_runs_every_call_unjudged() {
    let w = git_world();
    let r = run(&w, &["--mode", "observe", "--json"]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("policy mode OBSERVE"), "{}", r.stderr);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        summary["policy_mode"],
        json!({"mode": "observe", "enforced": false, "would_deny": 0,
               "would_require": 0, "unjudged": 3})
    );
    assert!(w.repo.join("written.txt").is_file());
    let decided = of(&w.home, &r.session, "policy.decided");
    assert_eq!(decided.len(), 3);
    for d in &decided {
        assert_eq!(d["mode"], "observe", "{d}");
        assert_eq!(d["rule_id"], "agp.observe", "{d}");
        assert_eq!(d["decision"], "allow", "{d}");
        assert!(d.get("shadow_verdict").is_none(), "nothing judged: {d}");
    }
    assert_eq!(of(&w.home, &r.session, "tool_call.result").len(), 3);
    agp_ok(&w.home, Some(&w.user_home), &["verify"]);
}

#[test]
fn the_flag_wins_over_the_config_and_enforce_is_unchanged() {
    let w = git_world();
    set_config_mode(&w.home, "shadow");

    // Configured shadow: doctor warns (and still passes), in text and JSON.
    let doctor = agp_ok(&w.home, Some(&w.user_home), &["doctor"]);
    assert!(
        doctor.contains("! mode") && doctor.contains("NOT enforced"),
        "{doctor}"
    );
    let doctor: Value =
        serde_json::from_str(&agp_ok(&w.home, Some(&w.user_home), &["doctor", "--json"])).unwrap();
    assert_eq!(doctor["policy_mode"], "shadow");
    assert!(doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["check"] == "mode" && c["warning"] == true));

    // `--mode enforce` wins: every call is refused, nothing written, no mode in the journal.
    let r = run(&w, &["--mode", "enforce", "--json"]);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["denied"], 3, "{summary}");
    assert_eq!(summary["policy_mode"]["enforced"], true, "{summary}");
    assert!(!r.stderr.contains("policy mode"), "{}", r.stderr);
    assert!(!w.repo.join("written.txt").exists());
    assert_eq!(
        of(&w.home, &r.session, "session.started")[0]["policy_mode"],
        "enforce"
    );
    for d in of(&w.home, &r.session, "policy.decided") {
        assert_eq!(d["decision"], "deny", "{d}");
        assert!(d.get("mode").is_none() && d.get("shadow_verdict").is_none());
    }
    assert!(of(&w.home, &r.session, "tool_call.result").is_empty());

    // Without the flag, the configured mode applies.
    let r = run(&w, &[]);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("policy mode SHADOW"), "{}", r.stdout);
    assert!(w.repo.join("written.txt").is_file());
    agp_ok(&w.home, Some(&w.user_home), &["verify"]);
}

#[test]
fn a_hook_session_on_a_shadow_daemon_is_told_allow_and_the_journal_says_would_deny() {
    let w = git_world();
    let policy = w.file("deny-all.toml", DENY_ALL);
    let _daemon = start_daemon(
        &w.home,
        ["--policy", policy.to_str().unwrap(), "--mode", "shadow"],
    );
    let event = json!({"hook_event_name": "PreToolUse", "session_id": "h1",
        "tool_name": "Bash", "tool_use_id": "t1", "cwd": w.repo,
        "tool_input": {"command": "echo from the agent"}});
    let answer = claude_hook(&w.home, &w.user_home, Some(&w.repo), &event);
    assert_eq!(
        answer["hookSpecificOutput"]["permissionDecision"], "allow",
        "{answer}"
    );
    let entries = journal(&w.home);
    let started = entries
        .iter()
        .find(|e| e["kind"] == "session.started")
        .unwrap();
    assert_eq!(started["body"]["policy_mode"], "shadow");
    assert_eq!(started["body"]["agent_confined"], false);
    let decided = entries
        .iter()
        .find(|e| e["kind"] == "policy.decided")
        .unwrap();
    assert_eq!(decided["body"]["shadow_verdict"], "would_deny");
    assert_eq!(decided["body"]["decision"], "allow");
}

#[test]
fn a_run_on_an_observing_daemon_says_so_and_cannot_pick_its_own_mode() {
    let w = git_world();
    let policy = w.file("deny-all.toml", DENY_ALL);
    let script = w.file("script.yaml", &bash_calls_yaml(&COMMANDS));
    let _daemon = start_daemon(
        &w.home,
        ["--policy", policy.to_str().unwrap(), "--mode", "observe"],
    );
    let refused = run_scripted(
        &w.home,
        &w.user_home,
        &script,
        &w.repo,
        &["--mode", "enforce"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--mode"), "{stderr}");

    let out = run_scripted(&w.home, &w.user_home, &script, &w.repo, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("policy mode OBSERVE"), "{stdout}");
    assert!(stdout.contains("3 call(s) ran unjudged"), "{stdout}");
    assert!(w.repo.join("made/y.txt").is_file());
}

/// A hook session's agent runs on the host, unsandboxed: in shadow or observe, agp's own guard
/// still denies it agp's signing keys, agp's home and the policy in force (a mode tries out the
/// user's policy; it does not hand the agent the audit trail), while another denied call runs.
#[test]
fn shadow_and_observe_still_deny_an_unsandboxed_agent_agps_keys_home_and_policy() {
    for mode in ["shadow", "observe"] {
        let w = git_world();
        let policy = w.file("deny-all.toml", DENY_ALL);
        let _daemon = start_daemon(
            &w.home,
            ["--policy", policy.to_str().unwrap(), "--mode", mode],
        );
        let keys = w.home.join("keys");
        let attempts = [
            format!("cat {}/journal.key", keys.display()),
            format!("echo 'default = \"allow\"' > {}", policy.display()),
            format!("echo x >> {}/config.toml", w.home.display()),
            // Hidden behind a part the user's policy denies first.
            format!("echo hi > notes.txt; base64 {}/journal.key", keys.display()),
        ];
        for (i, command) in attempts.iter().enumerate() {
            let event = json!({"hook_event_name": "PreToolUse", "session_id": "h1",
                "tool_name": "Bash", "tool_use_id": format!("t{i}"), "cwd": w.repo,
                "tool_input": {"command": command}});
            let answer = claude_hook(&w.home, &w.user_home, Some(&w.repo), &event);
            assert_eq!(
                answer["hookSpecificOutput"]["permissionDecision"], "deny",
                "{mode}: {command}: {answer}"
            );
        }
        let event = json!({"hook_event_name": "PreToolUse", "session_id": "h1",
            "tool_name": "Bash", "tool_use_id": "t-other", "cwd": w.repo,
            "tool_input": {"command": "echo from the agent > notes.txt"}});
        let answer = claude_hook(&w.home, &w.user_home, Some(&w.repo), &event);
        assert_eq!(
            answer["hookSpecificOutput"]["permissionDecision"], "allow",
            "{mode}: {answer}"
        );
        let decided: Vec<Value> = journal(&w.home)
            .into_iter()
            .filter(|e| e["kind"] == "policy.decided")
            .map(|e| e["body"].clone())
            .collect();
        assert_eq!(decided.len(), attempts.len() + 1, "{decided:#?}");
        for d in &decided[..attempts.len()] {
            assert_eq!(d["decision"], "deny", "{mode}: {d}");
            assert_eq!(d["rule_id"], "agp-self", "{mode}: {d}");
            assert_eq!(d["mode"], mode, "{d}");
            assert!(
                d["reason"]
                    .as_str()
                    .unwrap()
                    .contains("enforced in every mode"),
                "{d}"
            );
        }
        assert_eq!(decided[attempts.len()]["decision"], "allow");
        agp_ok(&w.home, Some(&w.user_home), &["verify"]);
    }
}
