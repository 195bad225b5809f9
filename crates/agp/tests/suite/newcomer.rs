//! A newcomer's first hour with the real binary: every hint agp prints works as printed, no hint
//! loops, nothing dangerous happens by default, and every command that reports speaks JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support_loop::{demo_world, journal, DemoWorld, AGP};

use super::support::looping as support_loop;

/// `agp --home HOME ARGS` with the user home `HOME=user`, no stdin, no AGP_HOME.
fn agp(home: &Path, user: &Path, args: &[&str]) -> Output {
    Command::new(AGP)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("HOME", user)
        .env_remove("AGP_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `agp ARGS` in the demo world, which must exit with `want`; its stderr.
fn stderr_after(w: &DemoWorld, args: &[&str], want: i32) -> String {
    let out = agp(&w.home, &w.user_home, args);
    let (_, err) = text(&out);
    assert_eq!(code(&out), want, "{err}");
    err
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("agp was killed by a signal")
}

/// stdout as one JSON document.
fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        let (o, err) = text(out);
        panic!("stdout is not one JSON document ({e}):\n{o}\nstderr:\n{err}")
    })
}

/// The commands in backticks on the lines of `output` that start with `marker` (after
/// optional leading text such as `✗ key ... — fix:`), e.g. every `next:` and `fix:` hint.
fn hints(output: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in output.lines() {
        let Some(at) = line.find(marker) else {
            continue;
        };
        let rest = &line[at + marker.len()..];
        found.extend(
            rest.split('`')
                .skip(1)
                .step_by(2)
                .filter(|c| c.starts_with("agp "))
                .map(str::to_owned),
        );
    }
    found
}

/// A directory holding `agp` (a link to the binary under test), for PATH: hints are run exactly
/// as printed, by name.
fn bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(AGP, bin.join("agp")).unwrap();
    bin
}

/// Runs `hint` through `sh -c` as a user would paste it, with AGP_HOME set and `agp` on PATH.
fn run_hint(hint: &str, home: &Path, user: &Path, bin: &Path) -> Output {
    hint_command(hint, user, bin)
        .env("AGP_HOME", home)
        .output()
        .unwrap()
}

/// `sh -c HINT` with `agp` on PATH, HOME=user and no AGP_HOME.
fn hint_command(hint: &str, user: &Path, bin: &Path) -> Command {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(hint)
        .env("PATH", path)
        .env_remove("AGP_HOME")
        .env("HOME", user)
        .stdin(Stdio::null());
    cmd
}

/// Runs every hint; each must run (no usage error, no "command not found") and, when `must_pass`
/// says so, succeed.
fn check_hints(
    found: &[String],
    home: &Path,
    user: &Path,
    bin: &Path,
    must_pass: impl Fn(&str) -> bool,
) {
    for hint in found {
        let out = run_hint(hint, home, user, bin);
        let (o, e) = text(&out);
        assert!(
            !e.contains("command not found") && !e.contains("unexpected argument"),
            "hint `{hint}` does not run as printed:\n{o}{e}"
        );
        let c = code(&out);
        if must_pass(hint) {
            assert_eq!(c, 0, "hint `{hint}` failed:\n{o}{e}");
        } else {
            assert!(
                c == 0 || c == 1,
                "hint `{hint}` could not run ({c}):\n{o}{e}"
            );
        }
    }
}

#[test]
fn every_next_hint_of_the_quick_start_works_as_printed() {
    let (dir, home, user) = fresh_user("agp");
    let bin = bin_dir(dir.path());

    // The README's way: AGP_HOME names the home, so the hints need not.
    let init = run_hint("agp init", &home, &user, &bin);
    assert_eq!(code(&init), 0);
    let keygen_hints = hints(&text(&init).0, "next:");
    assert_eq!(keygen_hints, ["agp keygen"]);
    // The hint itself creates the key: run it, and collect what it suggests next.
    let keygen = run_hint(&keygen_hints[0], &home, &user, &bin);
    assert_eq!(code(&keygen), 0, "{:?}", text(&keygen));
    let after_keygen = hints(&text(&keygen).0, "next:");
    assert!(
        after_keygen.contains(&"agp run".to_owned()),
        "{after_keygen:?}"
    );
    assert!(
        after_keygen.contains(&"agp verify".to_owned()),
        "{after_keygen:?}"
    );

    let run = run_hint("agp run", &home, &user, &bin);
    let (stdout, stderr) = text(&run);
    // Without a terminal the call the demo expects to be approved is denied: exit 1, and the
    // ✗ on that line is explained before the calls.
    assert_eq!(code(&run), 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("✓ = the outcome the script expects, ✗ = a different outcome"),
        "{stdout}"
    );
    let after_run = hints(&stdout, "next:");
    assert_eq!(after_run.len(), 2, "{stdout}");
    assert!(
        after_run[0].starts_with("agp sessions show s-"),
        "{after_run:?}"
    );
    check_hints(&after_keygen, &home, &user, &bin, |h| h == "agp verify");
    check_hints(&after_run, &home, &user, &bin, |_| true);
}

/// A tempdir with a user home (holding an empty `.ssh`) and, not made yet, agp's home
/// `home_name`: the tempdir, agp's home, the user home.
fn fresh_user(home_name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join(home_name);
    let user = dir.path().join("user");
    std::fs::create_dir_all(user.join(".ssh")).unwrap();
    (dir, home, user)
}

#[test]
fn hints_name_a_home_given_with_home_flag() {
    // A path a shell would split: the hint must quote it.
    let (dir, home, user) = fresh_user("my agp");
    let bin = bin_dir(dir.path());
    let mut next = vec!["agp --home '".to_owned() + home.to_str().unwrap() + "' init"];
    // Follow the chain init → keygen → run → sessions show / verify, each hint run as printed
    // with no AGP_HOME: a hint that dropped --home would act on ~/.agp (which does not exist).
    for step in 0..3 {
        let hint = next.remove(0);
        let out = hint_command(&hint, &user, &bin).output().unwrap();
        let (o, e) = text(&out);
        assert!(code(&out) <= 1, "`{hint}`: {o}{e}");
        let found = hints(&o, "next:");
        assert!(!found.is_empty(), "`{hint}` printed no hint: {o}");
        for h in &found {
            assert!(h.starts_with("agp --home '"), "step {step}: {h}");
        }
        next = found;
    }
    for hint in next {
        let out = hint_command(&hint, &user, &bin).output().unwrap();
        assert_eq!(code(&out), 0, "`{hint}`: {:?}", text(&out));
    }
    assert!(!user.join(".agp").exists());
}

#[test]
fn doctor_and_key_hints_lead_out_of_a_lost_public_key() {
    let w = demo_world();
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir(dir.path());
    let pub_key = w.home.join("keys/journal.pub");
    std::fs::remove_file(&pub_key).unwrap();

    // `key show` has no --key option: its hint must not name one.
    let err = stderr_after(&w, &["key", "show"], 2);
    assert!(!err.contains("--key"), "{err}");
    assert!(err.contains(" keygen --repair-pub`"), "{err}");

    // `keygen` refuses to overwrite the key, and says how to rebuild the public one instead.
    let err = stderr_after(&w, &["keygen"], 2);
    assert!(err.contains(" keygen --repair-pub` rebuilds it"), "{err}");

    // Doctor's fix lines run as printed and repair the home.
    let doctor = agp(&w.home, &w.user_home, &["doctor"]);
    assert_eq!(code(&doctor), 1);
    let fixes = hints(&text(&doctor).0, "fix:");
    let named = format!("agp --home '{}' keygen --repair-pub", w.home.display());
    assert_eq!(fixes, [named], "{:?}", text(&doctor));
    check_hints(&fixes, &w.home, &w.user_home, &bin, |_| true);
    assert!(pub_key.is_file());
    let verify = agp(&w.home, &w.user_home, &["verify"]);
    assert_eq!(code(&verify), 0, "{:?}", text(&verify));
}

#[test]
fn repair_pub_refuses_a_private_key_that_did_not_sign_the_journal() {
    let w = demo_world();
    let other = tempfile::tempdir().unwrap();
    let other_home = other.path().join("agp");
    assert_eq!(code(&agp(&other_home, &w.user_home, &["init"])), 0);
    assert_eq!(code(&agp(&other_home, &w.user_home, &["keygen"])), 0);
    let trusted_pub = std::fs::read(w.home.join("keys/journal.pub")).unwrap();

    // A swapped private key with its own public key next to it: the mismatch is refused.
    std::fs::copy(
        other_home.join("keys/journal.key"),
        w.home.join("keys/journal.key"),
    )
    .unwrap();
    let err = stderr_after(&w, &["keygen", "--repair-pub"], 2);
    assert!(err.contains("does not belong to"), "{err}");
    assert_eq!(
        std::fs::read(w.home.join("keys/journal.pub")).unwrap(),
        trusted_pub
    );

    // With the public key gone, the journal decides: it was not signed by the swapped key.
    std::fs::remove_file(w.home.join("keys/journal.pub")).unwrap();
    let err = stderr_after(&w, &["keygen", "--repair-pub"], 2);
    assert!(err.contains("does not verify with"), "{err}");
    assert!(!w.home.join("keys/journal.pub").exists());
}

#[test]
fn doctor_does_not_send_a_lost_signing_key_to_keygen_in_a_loop() {
    let w = demo_world();
    std::fs::remove_file(w.home.join("keys/journal.key")).unwrap();
    let doctor = agp(&w.home, &w.user_home, &["doctor"]);
    let (out, _) = text(&doctor);
    let line = out
        .lines()
        .find(|l| l.contains("no journal signing key"))
        .unwrap_or_else(|| panic!("{out}"));
    // `agp keygen` would refuse (the journal needs its own key): the fix says what works.
    assert!(line.contains("fix: restore"), "{line}");
    let err = stderr_after(&w, &["keygen"], 2);
    assert!(err.contains("restore that key"), "{err}");
}

#[test]
fn run_with_repo_but_no_script_is_refused_and_touches_nothing() {
    let w = demo_world();
    let before = std::fs::read_dir(&w.repo).unwrap().count();
    let out = agp(
        &w.home,
        &w.user_home,
        &["run", "--repo", w.repo.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 2, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("needs --script FILE"), "{stderr}");
    assert!(stderr.contains("drop --repo"), "{stderr}");
    assert!(w.repo.join("notes.txt").exists());
    assert_eq!(std::fs::read_dir(&w.repo).unwrap().count(), before);
    // No session was started.
    assert!(!journal(&w.home)
        .iter()
        .any(|e| e["kind"] == "session.started"));
}

#[test]
fn a_policy_that_defaults_to_allow_fails_check() {
    let w = demo_world();
    let policy = w.file(
        "allow.toml",
        "version = 1\n# comment\ndefault = \"allow\"\n\n[[rule]]\nid = \"r\"\neffect = \"deny\"\nmatch = [\"Bash(rm:*)\"]\n",
    );
    let p = policy.to_str().unwrap();
    let err = stderr_after(&w, &["policy", "check", p], 1);
    assert!(
        err.contains(&format!(
            "agp: error: {p}:3:1: default = \"allow\" lets every call no rule matches run without asking"
        )),
        "{err}"
    );
    let out = agp(&w.home, &w.user_home, &["policy", "check", "--json", p]);
    assert_eq!(code(&out), 1);
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["default"], "allow");
    assert_eq!(v["findings"][0]["line"], 3);
    assert_eq!(v["findings"][0]["severity"], "error");
}

#[test]
fn imported_claude_permissions_pass_check_and_name_what_changed() {
    let w = demo_world();
    let settings = w.file(
        "settings.json",
        r#"{"permissions": {
            "allow": ["Edit", "Write", "Bash(ls:*)", "Bash(npm run test:*)", "Read"],
            "ask": ["Bash(npm run test:*)"],
            "deny": ["Bash(ls:*)", "Read(./.env)"],
            "additionalDirectories": ["../docs"],
            "defaultMode": "acceptEdits"
        }}"#,
    );
    let policy = w.dir.path().join("imported.toml");
    let out = agp(
        &w.home,
        &w.user_home,
        &[
            "policy",
            "import-claude",
            settings.to_str().unwrap(),
            "-o",
            policy.to_str().unwrap(),
        ],
    );
    let (_, err) = text(&out);
    assert_eq!(code(&out), 0, "{err}");
    for expected in [
        "agp: warning: permissions.additionalDirectories ([\"../docs\"]) not converted",
        "agp: warning: permissions.defaultMode (\"acceptEdits\") not converted",
        "agp: warning: permissions.allow: `Edit` converted to `Edit(/**)`",
        "agp: warning: permissions.allow: `Write` converted to `Write(/**)`",
        "agp: warning: permissions.allow: `Bash(ls:*)` left out: permissions.deny covers it",
        "agp: warning: permissions.allow: `Bash(npm run test:*)` left out: permissions.ask covers it",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // The import's own hint runs as printed and passes.
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_dir(dir.path());
    let check = err
        .lines()
        .find(|l| l.contains("check it with"))
        .map(|l| hints(l, "check it with"))
        .unwrap();
    assert_eq!(check.len(), 1);
    check_hints(&check, &w.home, &w.user_home, &bin, |_| true);

    // A bare Edit in the imported policy is confined to the project.
    let explain = |file: &str| {
        let out = agp(
            &w.home,
            &w.user_home,
            &[
                "policy",
                "explain",
                "--policy",
                policy.to_str().unwrap(),
                "--project",
                w.repo.to_str().unwrap(),
                "--tool",
                "Edit",
                "--input",
                &format!(r#"{{"file_path":"{file}","old_string":"a","new_string":"b"}}"#),
                "--json",
            ],
        );
        json(&out)["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(explain(&format!("{}/src/x.py", w.repo.display())), "allow");
    assert_ne!(explain("/etc/hosts"), "allow");

    let doc = json(&agp(
        &w.home,
        &w.user_home,
        &[
            "policy",
            "import-claude",
            "--json",
            settings.to_str().unwrap(),
        ],
    ));
    assert_eq!(doc["rules"], 3);
    assert_eq!(doc["output"], Value::Null);
    assert!(doc["toml"].as_str().unwrap().contains("\"Edit(/**)\""));
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 6, "{doc}");
}

#[test]
fn journal_show_and_proof_say_what_they_did_not_find() {
    let w = demo_world();
    let entries = journal(&w.home).len();

    let not_found = [
        (
            &["journal", "show", "--kind", "no.such"][..],
            "agp: no entries of kind no.such; kinds in the journal: journal.created".to_owned(),
        ),
        (
            &["journal", "show", "--session", "s-nope"],
            "no such session in the journal: s-nope".to_owned(),
        ),
        (
            &["journal", "proof", "--seq", "1000"],
            format!(
                "no entry with seq 1000: the journal has {entries} entries (seq 0 to {})",
                entries - 1
            ),
        ),
    ];
    for (args, message) in not_found {
        let o = agp(&w.home, &w.user_home, args);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 1, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(&message), "{err}");
        assert!(!err.contains("wait"), "{err}");
    }
}

#[test]
fn usage_lines_do_not_show_home_as_required_when_agp_home_is_set() {
    let w = demo_world();
    let out = Command::new(AGP)
        .args(["journal", "proof"])
        .env("AGP_HOME", &w.home)
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(code(&out), 2);
    assert!(
        err.contains("Usage: agp journal proof --seq <N>\n"),
        "{err}"
    );
    assert!(!err.contains("--home <DIR>"), "{err}");
    // AGP_HOME still selects the home.
    let shown = Command::new(AGP)
        .args(["journal", "show", "--kind", "journal.created"])
        .env("AGP_HOME", &w.home)
        .output()
        .unwrap();
    assert_eq!(code(&shown), 0, "{:?}", text(&shown));
    assert!(text(&shown).0.contains("journal.created"));
}

#[test]
fn every_reporting_command_speaks_json() {
    let (dir, home, user) = fresh_user("agp");

    let init = json(&agp(&home, &user, &["init", "--json"]));
    assert_eq!(init["policy_written"], true);
    assert_eq!(
        init["next"],
        format!("agp --home '{}' keygen", home.display())
    );
    let keygen = json(&agp(&home, &user, &["keygen", "--json"]));
    assert_eq!(keygen["journal_started"], true);
    assert!(keygen["verifier_key"].as_str().unwrap().contains('+'));

    let answers = dir.path().join("answers");
    std::fs::write(&answers, "allow\ndeny\n").unwrap();
    let run = agp(
        &home,
        &user,
        &[
            "run",
            "--json",
            "--approver-script",
            answers.to_str().unwrap(),
        ],
    );
    let summary = json(&run);
    assert_eq!(code(&run), 0, "{summary}");
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["intendant"], "scripted");
    assert_eq!(summary["calls"], 13);
    assert_eq!(summary["journal"]["verified"], true);
    assert_eq!(summary["demo_repo_kept"], false);
    assert!(summary["session"].as_str().unwrap().starts_with("s-"));
    // The progress lines went to stderr.
    assert!(text(&run).1.contains("#13"));

    let check = json(&agp(&home, &user, &["policy", "check", "--json"]));
    assert_eq!(check["ok"], true);
    assert_eq!(check["default"], "require");
    let test = agp(&home, &user, &["policy", "test", "--json"]);
    assert_eq!(code(&test), 0);
    let test = json(&test);
    assert_eq!(test["failed"], 0);
    assert!(test["passed"].as_u64().unwrap() > 0);

    let proof = json(&agp(
        &home,
        &user,
        &["journal", "proof", "--seq", "0", "--json"],
    ));
    assert_eq!(proof["seq"], 0);
    assert!(proof["receipt"]
        .as_str()
        .unwrap()
        .starts_with("c2sp.org/tlog-proof@v1"));
    let past = agp(
        &home,
        &user,
        &["journal", "proof", "--seq", "99999", "--json"],
    );
    assert_eq!(code(&past), 1);
    assert!(json(&past)["error"]
        .as_str()
        .unwrap()
        .contains("no entry with seq 99999"));

    let recover = json(&agp(&home, &user, &["journal", "recover", "--json"]));
    assert_eq!(recover["recovered"], true);

    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let hooks = agp(
        &home,
        &user,
        &[
            "install-hooks",
            "--claude",
            "--project",
            project.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&hooks), 0, "{:?}", text(&hooks));
    let hooks = json(&hooks);
    assert_eq!(hooks["harness"], "claude-code");
    assert!(hooks["command"].as_str().unwrap().contains("hook"));
    assert!(project.join(".claude/settings.json").is_file());

    for args in [
        &["key", "show", "--json"][..],
        &["verify", "--json"],
        &["doctor", "--json"],
        &["sessions", "--json"],
    ] {
        let out = agp(&home, &user, args);
        json(&out);
    }
}

#[test]
fn sessions_show_prints_no_blank_lines() {
    let w = demo_world();
    let run = agp(&w.home, &w.user_home, &["run", "--auto-approve", "--json"]);
    let session = json(&run)["session"].as_str().unwrap().to_owned();
    let stdout = support_loop::timeline_with_preflight(&w.home, Some(&w.user_home), &session);
    for line in stdout.lines().skip(1) {
        // seq, timestamp, kind, then a description that is never empty or a bare `?`.
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() > 3, "blank description: {line:?}");
        assert!(!fields[3..].contains(&"?"), "{line:?}");
    }
}

#[test]
fn the_demo_copy_is_removed_unless_kept() {
    let w = demo_world();
    let tmp = w.tmp();
    let demo_copies = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("agp-demo-repo-")
            })
            .count()
    };
    let answers = w.file("answers", "allow\ndeny\nallow\ndeny\n");
    let run = |extra: &[&str]| {
        Command::new(AGP)
            .arg("--home")
            .arg(&w.home)
            .args(["run", "--approver-script"])
            .arg(&answers)
            .args(extra)
            .env("HOME", &w.user_home)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert_eq!(demo_copies(), 0);
    // Each call is reported once, by its own line, in order: the channel's notes (session
    // started, call denied) are not repeated on the same terminal.
    let (stdout, stderr) = text(&out);
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains("call.denied ["), "{all}");
    assert!(!all.contains("session.started ["), "{all}");
    assert_eq!(all.matches("wipe the machine").count(), 1, "{all}");
    let numbers: Vec<usize> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(numbers, (1..=13).collect::<Vec<_>>(), "{stdout}");
    // The state database and its WAL files are private.
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let path = w.home.join(name);
        if path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions();
            let mode = std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    let out = run(&["--keep-demo-repo"]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(text(&out).0.contains("agp: kept the demo repository at "));
    assert_eq!(demo_copies(), 1);
}
