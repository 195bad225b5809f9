//! `agp policy replay` and `agp policy suggest` on journals recorded by real scripted sessions
//! (`agp run --intendant scripted`, real bubblewrap, real signed journal), through the real
//! binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::support::looping::{agp_detached, demo_world, run_scripted, workspace, DemoWorld};

fn agp(env: &DemoWorld, args: &[&str]) -> Output {
    agp_detached(&env.home, &env.user_home)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// The demo session (13 calls: allowed, approved, denied by a human, denied by policy, one with
/// a secret) recorded in a fresh home.
fn recorded_demo() -> DemoWorld {
    let env = demo_world();
    let answers = workspace().join("examples/demo.answers");
    let out = run_scripted(
        &env.home,
        &env.user_home,
        &workspace().join("examples/demo.yaml"),
        &env.repo,
        &["--approver-script", answers.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    env
}

/// The home's policy with `extra` appended, written next to it as `name`.
/// `agp policy replay ARGS --json`, which must exit with `exit`; its report.
fn replay_json(env: &DemoWorld, args: &[&str], exit: i32) -> Value {
    let mut all = vec!["policy", "replay"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = agp(env, &all);
    assert_eq!(code(&out), exit, "{}", text(&out));
    json_of(&out)
}

fn policy_plus(env: &DemoWorld, name: &str, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(env.home.join("policy.toml")).unwrap();
    env.file(name, &format!("{base}\n{extra}"))
}

fn session_id(env: &DemoWorld) -> String {
    let sessions = json_of(&agp(env, &["sessions", "--json"]));
    sessions[0]["id"].as_str().unwrap().to_string()
}

fn group<'a>(report: &'a Value, by: &str, key: &str) -> &'a Value {
    report[by]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no {by} group {key}: {report:#}"))
}

#[test]
fn replay_flags_a_stricter_policy_and_passes_a_looser_one() {
    let env = recorded_demo();

    // The policy that recorded the session reproduces every verdict it can rebuild.
    let r = replay_json(&env, &[], 0);
    assert_eq!(r["calls"], 13, "{r:#}");
    assert_eq!(r["changed"], 0, "{r:#}");
    assert_eq!(r["machine_differences"], 0, "{r:#}");
    assert_eq!(r["journal"]["verified"], true);
    // The Write that carried a secret is journaled redacted: listed, not guessed at.
    assert_eq!(r["not_reconstructible"], 1, "{r:#}");
    let nr = &r["not_reconstructible_calls"][0];
    assert_eq!(nr["tool"], "Write");
    assert!(
        nr["why_not_judged"].as_str().unwrap().contains("redacted"),
        "{nr:#}"
    );

    // Stricter: make is refused, ls asks. Both ran in the session: exit 1, listed by rule
    // and by command.
    let strict = policy_plus(
        &env,
        "strict.toml",
        "[[rule]]\nid = \"no-make\"\neffect = \"deny\"\nmatch = [\"Bash(make *)\"]\n\n\
         [[rule]]\nid = \"ask-ls\"\neffect = \"require\"\nmatch = [\"Bash(ls *)\"]\n",
    );
    let strict = strict.to_str().unwrap();
    let r = replay_json(&env, &["--policy", strict], 1);
    assert_eq!(r["tightened"], 2, "{r:#}");
    assert_eq!(r["changed"], 2, "{r:#}");
    // The recorded policy is the home's: each call was compared with it re-run today.
    assert_eq!(r["compared_with_same_policy_today"], 12, "{r:#}");
    let no_make = group(&r, "by_rule", "no-make");
    assert_eq!(no_make["transitions"]["allow -> deny"], 1, "{no_make:#}");
    assert_eq!(no_make["examples"][0]["input"], "make test");
    assert_eq!(no_make["examples"][0]["outcome"], "allowed");
    let ls = group(&r, "by_command", "ls");
    assert_eq!(ls["transitions"]["allow -> require"], 1, "{ls:#}");
    assert_eq!(group(&r, "by_command", "make")["tightened"], 1);
    // The text report says the same, with the exit code.
    let out = agp(&env, &["policy", "replay", "--policy", strict]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("TIGHTENED: 2 calls that ran"), "{shown}");
    assert!(shown.contains("no-make"), "{shown}");
    assert!(
        shown.contains("`make test` (allowed) -> deny [no-make]"),
        "{shown}"
    );

    // Looser: rm without asking. The approved rm changes (require -> allow); nothing that ran
    // tightens: exit 0.
    let loose = policy_plus(
        &env,
        "loose.toml",
        "[[rule]]\nid = \"rm-ok\"\neffect = \"allow\"\nmatch = [\"Bash(rm *)\"]\n",
    );
    let r = replay_json(&env, &["--policy", loose.to_str().unwrap()], 0);
    assert_eq!(r["tightened"], 0, "{r:#}");
    assert_eq!(r["changed"], 1, "{r:#}");
    let rm = group(&r, "by_command", "rm");
    assert_eq!(rm["transitions"]["require -> allow"], 1, "{rm:#}");
    assert!(
        rm["examples"][0]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("approved by script:demo.answers"),
        "{rm:#}"
    );

    // A policy that allows what a human denied is not a tightening, but it is said.
    let push = env.file(
        "push-ok.toml",
        &std::fs::read_to_string(env.home.join("policy.toml"))
            .unwrap()
            .replace(
                "effect = \"require\"\nmatch = [\"Bash(git push *)\"]",
                "effect = \"allow\"\nmatch = [\"Bash(git push *)\"]",
            )
            .replace("remember = \"30m\"", ""),
    );
    let out = agp(
        &env,
        &["policy", "replay", "--policy", push.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("1 call that a human denied or nobody approved would now be allowed"),
        "{}",
        text(&out)
    );
}

#[test]
fn replay_scopes_and_refusals() {
    let env = recorded_demo();
    let id = session_id(&env);
    let out = agp(&env, &["policy", "replay", "--session", &id, "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(json_of(&out)["calls"], 13);
    // Nothing recorded after a time in the future; everything since a day ago.
    let out = agp(
        &env,
        &["policy", "replay", "--since", "2999-01-01", "--json"],
    );
    assert_eq!(json_of(&out)["calls"], 0, "{}", text(&out));
    let out = agp(&env, &["policy", "replay", "--since", "1d", "--json"]);
    assert_eq!(json_of(&out)["calls"], 13, "{}", text(&out));

    // Could not run: an unknown session, a bad time, an invalid policy (with file:line:col).
    let out = agp(&env, &["policy", "replay", "--session", "s-nope"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("no such session"), "{}", text(&out));
    let out = agp(&env, &["policy", "replay", "--since", "yesterday"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let bad = env.file(
        "bad.toml",
        "default = \"require\"\n[[rule]]\nid = \"x\"\neffect = \"alow\"\nmatch = [\"Bash\"]\n",
    );
    let out = agp(
        &env,
        &["policy", "replay", "--policy", bad.to_str().unwrap()],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("bad.toml:4:10"), "{}", text(&out));
    let out = agp(
        &env,
        &[
            "policy",
            "replay",
            "--journal",
            env.dir.path().join("nowhere").to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
}

/// Rewrites line `seq` of the journal's entries with `edit`.
fn tamper(home: &Path, seq: usize, edit: impl FnOnce(&str) -> String) {
    let path = home.join("journal/entries.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[seq] = edit(&lines[seq]);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_tampered_journal_is_not_replayed() {
    let env = recorded_demo();
    let entries = std::fs::read_to_string(env.home.join("journal/entries.jsonl")).unwrap();
    // A denial rewritten into an allow (same length, valid JSON): the one edit an attacker
    // who wants a policy change to look harmless would make.
    let seq = entries
        .lines()
        .position(|l| {
            l.contains("\"kind\":\"policy.decided\"") && l.contains("\"decision\":\"deny\"")
        })
        .unwrap();
    tamper(&env.home, seq, |l| {
        l.replacen("\"decision\":\"deny\"", "\"decision\":\"allo\"", 1)
    });
    for cmd in [&["policy", "replay"][..], &["policy", "suggest"][..]] {
        let out = agp(&env, cmd);
        assert_eq!(code(&out), 2, "{cmd:?}: {}", text(&out));
        assert!(text(&out).contains("NOT intact"), "{}", text(&out));
        assert!(
            out.stdout.is_empty(),
            "{cmd:?} printed a report: {}",
            text(&out)
        );
    }

    // Verified with a key that did not sign it: refused too.
    let env = recorded_demo();
    let other = env.dir.path().join("other");
    let out = agp_detached(&other, &env.user_home)
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = agp_detached(&other, &env.user_home)
        .arg("keygen")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let key = other.join("keys/journal.pub");
    let out = agp(&env, &["policy", "replay", "--key", key.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("NOT intact"), "{}", text(&out));
}

const SUGGEST_SCRIPT: &str = r#"calls:
  - tool: Bash
    input: { command: "go env GOPATH" }
  - tool: Bash
    input: { command: "go env GOOS" }
  - tool: Bash
    input: { command: "go mod tidy" }
  - tool: Bash
    input: { command: "docker ps -a" }
  - tool: Bash
    input: { command: "docker ps --all --filter status=exited" }
  - tool: Bash
    input: { command: "kubectl get pods" }
  - tool: Bash
    input: { command: "kubectl get pods" }
  - tool: Bash
    input: { command: "git push origin main" }
  - tool: Bash
    input: { command: "rm notes.txt" }
  - tool: Bash
    input: { command: "ls -la" }
"#;

/// One answer per `require` call above, in order.
const SUGGEST_ANSWERS: &str =
    "allow\nallow\ndeny not now\nallow\ndeny too broad\nallow\ndeny not twice\nallow\nallow\n";

fn rules_by_matcher(s: &Value) -> Vec<(String, Value)> {
    s["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["matchers"].to_string(), r.clone()))
        .collect()
}

#[test]
fn suggest_proposes_narrow_rules_that_load_and_pass_their_own_tests() {
    let env = demo_world();
    let script = env.file("suggest.yaml", SUGGEST_SCRIPT);
    let answers = env.file("suggest.answers", SUGGEST_ANSWERS);
    let out = run_scripted(
        &env.home,
        &env.user_home,
        &script,
        &env.repo,
        &["--approver-script", answers.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));

    let out = agp(&env, &["policy", "suggest", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let s = json_of(&out);
    assert_eq!(s["approved"], 6, "{s:#}");
    assert_eq!(s["denied"], 3, "{s:#}");
    let rules = rules_by_matcher(&s);
    let matchers: Vec<&str> = rules.iter().map(|(m, _)| m.as_str()).collect();
    // go env: two approvals, one program-plus-subcommand rule; the denied `go mod` is another
    // subcommand, untouched.
    let go = &rules
        .iter()
        .find(|(m, _)| m == r#"["Bash(go env *)"]"#)
        .unwrap_or_else(|| panic!("{matchers:?}"))
        .1;
    assert_eq!(go["covers"], 2, "{go:#}");
    // docker ps: `Bash(docker ps *)` would also allow the denied `docker ps --all …`: narrowed
    // to the approved command, and said so.
    let docker = &rules
        .iter()
        .find(|(m, _)| m == r#"["Bash(docker ps -a)"]"#)
        .unwrap_or_else(|| panic!("{matchers:?}"))
        .1;
    assert!(
        docker["narrowed"].as_str().unwrap().contains("docker"),
        "{docker:#}"
    );
    // rm has no subcommand: the exact approved command, never `Bash(rm *)`.
    assert!(
        matchers.contains(&r#"["Bash(rm notes.txt)"]"#),
        "{matchers:?}"
    );
    // Approved once and denied once, identically: nothing can tell them apart, so no rule.
    assert!(
        !matchers.iter().any(|m| m.contains("kubectl")),
        "{matchers:?}"
    );
    let dropped = s["dropped"].to_string();
    assert!(dropped.contains("kubectl get pods"), "{dropped}");
    // Nothing broader than program plus subcommand, ever.
    for (m, _) in &rules {
        assert!(!m.contains("Bash(*") && !m.contains("\"Bash\""), "{m}");
    }
    // The approved push needed approval because of the `push` rule: no rule can beat it, and
    // the report says why instead of suggesting one.
    let skipped = s["skipped"].to_string();
    assert!(skipped.contains("`push`"), "{skipped}");
    // `ls -la` was allowed anyway: no rule for it.
    assert!(!matchers.iter().any(|m| m.contains("ls")), "{matchers:?}");

    // The fragment, as printed: loads as a policy, and passes its own [[test]] cases.
    let out = agp(&env, &["policy", "suggest"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let fragment = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(fragment.contains("# covers 2 approved calls"), "{fragment}");
    assert!(fragment.contains("[[test]]"), "{fragment}");
    let file = env.file("suggested.toml", &fragment);
    let file = file.to_str().unwrap();
    let out = agp(&env, &["policy", "check", file]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = agp(
        &env,
        &[
            "policy",
            "test",
            "--project",
            env.repo.to_str().unwrap(),
            file,
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = json_of(&out);
    assert_eq!(t["failed"], 0, "{t:#}");
    assert!(t["passed"].as_u64().unwrap() >= 4, "{t:#}");
    assert!(fragment.contains("expect = \"allow\""), "{fragment}");

    // Added to the policy, the rules allow the approved calls and none of the denied ones:
    // replay says so.
    let merged = policy_plus(&env, "merged.toml", &fragment);
    let r = replay_json(&env, &["--policy", merged.to_str().unwrap()], 0);
    assert_eq!(r["loosened_unapproved"], 0, "{r:#}");
    assert_eq!(r["tightened"], 0, "{r:#}");
    // go env ×2, docker ps -a, rm notes.txt: each approved call now runs unasked.
    assert_eq!(r["changed"], 4, "{r:#}");
}

/// Appends a well-formed, correctly chained line after the last signed checkpoint: anyone who
/// can write the file can, without the key.
fn append_forged(home: &Path, kind: &str, session: &str, body: &Value) {
    let path = home.join("journal/entries.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.lines().last().unwrap();
    let last_v: Value = serde_json::from_str(last).unwrap();
    let prev: String = agp_journal::merkle::leaf_hash(last.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let line = agp_journal::event::compose_line(
        last_v["seq"].as_u64().unwrap() + 1,
        last_v["ts"].as_str().unwrap(),
        kind,
        Some(session),
        &prev,
        last_v["key_id"].as_str().unwrap(),
        &agp_journal::event::canonical_body(body).unwrap(),
    );
    std::fs::write(&path, format!("{text}{line}\n")).unwrap();
}

#[test]
fn lines_appended_after_the_last_signed_checkpoint_are_not_trusted() {
    let env = recorded_demo();
    let id = session_id(&env);
    let entries = std::fs::read_to_string(env.home.join("journal/entries.jsonl")).unwrap();
    let decided: Value = entries
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "policy.decided" && e["body"]["parts"][0]["part"] == "make test")
        .unwrap();
    // A second verdict for `make test` saying it was denied: believed, it would hide that the
    // stricter policy below now refuses a command that ran.
    let mut body = decided["body"].clone();
    body["decision"] = "deny".into();
    append_forged(&env.home, "policy.decided", &id, &body);
    let verify = agp(&env, &["verify"]);
    assert_eq!(
        code(&verify),
        0,
        "the forged tail is only a warning for the verifier"
    );

    let strict = policy_plus(
        &env,
        "strict.toml",
        "[[rule]]\nid = \"no-make\"\neffect = \"deny\"\nmatch = [\"Bash(make *)\"]\n",
    );
    let r = replay_json(&env, &["--policy", strict.to_str().unwrap()], 1);
    assert_eq!(r["tightened"], 1, "{r:#}");
    assert_eq!(r["journal"]["unsealed_left_out"], 1, "{r:#}");
    let out = agp(
        &env,
        &["policy", "replay", "--policy", strict.to_str().unwrap()],
    );
    assert!(
        text(&out).contains("1 entry after the last signed checkpoint left out"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_verdict_the_same_policy_no_longer_reproduces_is_a_machine_difference() {
    let env = demo_world();
    // `lnk` leads out of the project when the session runs: reading through it needs approval
    // (nobody answers here, so it is denied).
    std::os::unix::fs::symlink("/etc", env.repo.join("lnk")).unwrap();
    let script = env.file(
        "read.yaml",
        &format!(
            "calls:\n  - tool: Read\n    input: {{ file_path: \"{}\" }}\n",
            env.repo.join("lnk/hostname").display()
        ),
    );
    let out = run_scripted(&env.home, &env.user_home, &script, &env.repo, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Today `lnk` is a directory of the project: the same policy allows the read.
    std::fs::remove_file(env.repo.join("lnk")).unwrap();
    std::fs::create_dir(env.repo.join("lnk")).unwrap();
    std::fs::write(env.repo.join("lnk/hostname"), "x\n").unwrap();

    let out = agp(&env, &["policy", "replay", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let r = json_of(&out);
    // Not a change of the policy: reported as this machine's, with both verdicts.
    assert_eq!(r["changed"], 0, "{r:#}");
    assert_eq!(r["machine_differences"], 1, "{r:#}");
    let d = &r["machine_difference_calls"][0];
    assert_eq!(d["drift"], "allow", "{d:#}");
    assert_eq!(d["tool"], "Read");
    // Under another policy with the recorded one given as the baseline, a difference is
    // checked against today's verdict of the recorded policy: a policy refusing reads of `lnk`
    // changes allow -> deny (not the recorded require -> deny); the call did not run, so
    // nothing tightens.
    let base = env.file(
        "base.toml",
        &std::fs::read_to_string(env.home.join("policy.toml")).unwrap(),
    );
    let deny = policy_plus(
        &env,
        "deny-lnk.toml",
        "[[rule]]\nid = \"deny-lnk\"\neffect = \"deny\"\nmatch = [\"Read(/lnk/**)\"]\n",
    );
    let r = replay_json(
        &env,
        &[
            "--policy",
            deny.to_str().unwrap(),
            "--baseline",
            base.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(r["changed"], 1, "{r:#}");
    assert_eq!(r["tightened"], 0, "{r:#}");
    let c = &r["changes"][0];
    assert_eq!(c["before"], "allow", "{c:#}");
    assert_eq!(c["after"], "deny", "{c:#}");
    assert_eq!(c["drift"], "allow", "{c:#}");
    assert_eq!(
        group(&r, "by_rule", "deny-lnk")["transitions"]["allow -> deny"],
        1
    );
}
