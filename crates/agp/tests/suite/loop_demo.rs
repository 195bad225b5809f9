//! The governed loop end to end with the real binary: real socket, real bubblewrap, real SQLite,
//! real signed journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;
use support_loop::{agp_detached, demo_world, journal, workspace, DemoWorld};

use super::support::looping as support_loop;

/// Runs agp without a controlling terminal (`setsid`), with HOME pointing at `user_home`.
fn agp(home: &Path, user_home: &Path, args: &[&str]) -> Output {
    agp_detached(home, user_home)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run agp")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "agp failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `agp run --intendant scripted --script SCRIPT --repo REPO EXTRA…` in the demo world.
fn run_scripted(env: &DemoWorld, script: &Path, extra: &[&str]) -> Output {
    support_loop::run_scripted(&env.home, &env.user_home, script, &env.repo, extra)
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap()
}

#[test]
fn demo_script_runs_end_to_end_and_every_call_is_journaled() {
    let env = demo_world();
    let script = workspace().join("examples/demo.yaml");
    let answers = workspace().join("examples/demo.answers");
    let out = run_scripted(
        &env,
        &script,
        &["--approver-script", answers.to_str().unwrap()],
    );
    let stdout = ok(&out);
    // One line per call, each meeting the script's expectation, then summary and verify.
    let call_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(call_lines.len(), 13, "{stdout}");
    assert!(call_lines.iter().all(|l| l.ends_with('✓')), "{stdout}");
    assert!(
        stdout.contains("approved by script:demo.answers"),
        "{stdout}"
    );
    assert!(
        stdout.contains("13 calls, 8 allowed (1 after approval), 5 denied"),
        "{stdout}"
    );
    assert!(stdout.contains("✓ journal verified"), "{stdout}");

    // The sandboxed Edit fixed the bug; the approved rm removed the file; nothing escaped.
    let core = std::fs::read_to_string(env.repo.join("src/wordcount/core.py")).unwrap();
    assert!(core.contains("Counter(w for w in words if w)"));
    assert!(!env.repo.join("notes.txt").exists());
    assert!(!env.user_home.join(".ssh/authorized_keys").exists());
    assert!(!env.repo.join("config/settings.ini").exists());

    let entries = journal(&env.home);
    let text = std::fs::read_to_string(env.home.join("journal/entries.jsonl")).unwrap();
    assert!(
        !text.contains("AKIAQYLPMN5HHHFPZAM2"),
        "a secret reached the journal"
    );
    assert!(!text.contains("8Fx2Tq9RzW4mK7vL1bN3cP6dY0sH5jG2aE8uQ4iO"));

    // Every call: request, decision, and an outcome (a result when it ran, else a denial).
    let mut calls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e["body"]["call_id"].is_string()) {
        calls
            .entry(e["body"]["call_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(kind(e).to_owned());
    }
    assert_eq!(calls.len(), 13);
    for (id, kinds) in &calls {
        assert_eq!(kinds[0], "tool_call.requested", "{id}: {kinds:?}");
        assert_eq!(kinds[1], "policy.decided", "{id}: {kinds:?}");
        let decided = entries
            .iter()
            .find(|e| kind(e) == "policy.decided" && e["body"]["call_id"] == id.as_str())
            .unwrap();
        let ran = kinds.last().unwrap() == "tool_call.result";
        match decided["body"]["decision"].as_str().unwrap() {
            "allow" => assert_eq!(kinds.len(), 3, "{id}: {kinds:?}"),
            "deny" => assert_eq!(kinds.len(), 2, "{id}: {kinds:?}"),
            "require" => {
                assert_eq!(kinds[2], "approval.requested");
                match kinds[3].as_str() {
                    "approval.granted" => assert!(ran, "{id}: {kinds:?}"),
                    "approval.denied" => assert_eq!(kinds.len(), 4, "{id}: {kinds:?}"),
                    other => panic!("{id}: unexpected {other}"),
                }
            }
            other => panic!("unknown decision {other}"),
        }
        assert!(
            decided["body"]["policy_sha256"].as_str().unwrap().len() == 64,
            "decision without the policy hash"
        );
    }
    // Hashes line up: the decision and the approval are bound to the requested input.
    for e in entries.iter().filter(|e| kind(e).starts_with("approval.")) {
        let id = e["body"]["call_id"].as_str().unwrap();
        let requested = entries
            .iter()
            .find(|r| kind(r) == "tool_call.requested" && r["body"]["call_id"] == id)
            .unwrap();
        assert_eq!(e["body"]["input_sha256"], requested["body"]["input_sha256"]);
    }
    let kinds: Vec<&str> = entries.iter().map(kind).collect();
    for k in ["sandbox.preflight", "session.started", "session.ended"] {
        assert!(kinds.contains(&k), "{k} missing");
    }

    ok(&agp(&env.home, &env.user_home, &["verify"]));
    let sessions: Value = serde_json::from_str(&ok(&agp(
        &env.home,
        &env.user_home,
        &["sessions", "--json"],
    )))
    .unwrap();
    assert_eq!(sessions[0]["status"], "completed");
    let id = sessions[0]["id"].as_str().unwrap();
    let timeline = ok(&agp(&env.home, &env.user_home, &["sessions", "show", id]));
    assert!(timeline.contains("approval.granted"), "{timeline}");
    let doctor = ok(&agp(&env.home, &env.user_home, &["doctor"]));
    assert_eq!(doctor.matches('✓').count(), 7, "{doctor}");
}

#[test]
fn without_a_terminal_or_approver_require_means_deny() {
    let env = demo_world();
    let script = env.repo.join("../needs-approval.yaml");
    std::fs::write(
        &script,
        "calls:\n  - tool: Bash\n    input: { command: \"git push origin main\" }\n    expect: deny\n",
    )
    .unwrap();
    let out = run_scripted(&env, &script, &[]);
    let stdout = ok(&out);
    assert!(stdout.contains("no approver available"), "{stdout}");
    let entries = journal(&env.home);
    let denied: Vec<&Value> = entries
        .iter()
        .filter(|e| kind(e) == "approval.denied")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["body"]["unavailable"], true);
}

#[test]
fn the_sandbox_confines_calls_the_policy_allowed() {
    let env = demo_world();
    let policy = env.repo.join("../allow-all.toml");
    std::fs::write(&policy, "version = 1\ndefault = \"allow\"\n").unwrap();
    // Outside the repo and outside /tmp (which is a private tmpfs inside the sandbox).
    let outside = PathBuf::from(format!(
        "/var/tmp/agp-escape-test-{}-{}",
        std::process::id(),
        env.repo.display().to_string().len()
    ));
    let _ = std::fs::remove_file(&outside);
    let script = env.repo.join("../escape.yaml");
    std::fs::write(
        &script,
        format!(
            "calls:\n  - tool: Write\n    input: {{ file_path: \"{0}\", content: \"x\" }}\n  - tool: Bash\n    input: {{ command: \"echo x > {0}\" }}\n",
            outside.display()
        ),
    )
    .unwrap();
    let out = run_scripted(&env, &script, &["--policy", policy.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !outside.exists(),
        "a write outside the repo escaped the sandbox\n{stdout}"
    );
    // Both calls were allowed by policy and ran (and failed) inside the sandbox.
    let results: Vec<Value> = journal(&env.home)
        .into_iter()
        .filter(|e| kind(e) == "tool_call.result")
        .collect();
    assert_eq!(results.len(), 2, "{stdout}");
    assert!(
        results.iter().all(|r| r["body"]["ok"] == false),
        "{results:?}"
    );
}

#[test]
fn agp_run_uses_a_running_agp_daemon_for_its_session() {
    let env = demo_world();
    let answers = workspace().join("examples/demo.answers");
    let mut daemon = agp_detached(&env.home, &env.user_home)
        .args(["daemon", "--approver-script"])
        .arg(&answers)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support_loop::wait_for_daemon(&env.home);
    let script = workspace().join("examples/demo.yaml");
    let run = |extra: &[&str]| run_scripted(&env, &script, extra);
    // Settings of an in-process daemon cannot silently be ignored.
    let refused = run(&["--auto-approve"]);
    assert_eq!(refused.status.code(), Some(2));
    let out = run(&[]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let stdout = ok(&out);
    assert!(stdout.contains("on the running agp daemon"), "{stdout}");
    assert!(
        stdout.contains("13 calls, 8 allowed (1 after approval), 5 denied"),
        "{stdout}"
    );
    assert!(stdout.contains("✓ journal verified"), "{stdout}");
}
