//! `agp doctor` on a real home: every check passes on a healthy home, and each problem is a ✗
//! with a fix and exit 1.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const AGP: &str = env!("CARGO_BIN_EXE_agp");

fn agp(home: &Path, args: &[&str]) -> Output {
    Command::new(AGP)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn doctor(home: &Path) -> (i32, Value) {
    let out = agp(home, &["doctor", "--json"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    (out.status.code().unwrap(), report)
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix: {c}"
            );
            c["check"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn doctor_passes_on_a_healthy_home_and_names_each_problem_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");

    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), ["home"]);

    assert!(agp(&home, &["init"]).status.success());
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert!(failed(&report).contains(&"key".to_owned()), "{report}");

    assert!(agp(&home, &["keygen"]).status.success());
    let (code, report) = doctor(&home);
    assert_eq!(code, 0, "{report}");
    assert!(failed(&report).is_empty());
    let human = agp(&home, &["doctor"]);
    assert!(human.status.success());
    assert_eq!(
        String::from_utf8_lossy(&human.stdout).matches('✓').count(),
        6
    );

    // A key readable by others, a broken policy, a tampered journal: each is a ✗.
    let key = home.join("keys/journal.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        home.join("policy.toml"),
        "version = 1\ndefault = \"sometimes\"\n",
    )
    .unwrap();
    let entries = home.join("journal/entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    std::fs::write(
        &entries,
        text.replacen("journal.created", "journal.crEated", 1),
    )
    .unwrap();
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    let bad = failed(&report);
    for check in ["key", "policy", "journal"] {
        assert!(
            bad.contains(&check.to_owned()),
            "{check} not flagged: {report}"
        );
    }
}

#[test]
fn doctor_flags_a_home_configured_without_a_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    assert!(agp(&home, &["init"]).status.success());
    assert!(agp(&home, &["keygen"]).status.success());
    let config = home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[sandbox]\nprovider = \"none\"\n");
    std::fs::write(&config, text).unwrap();
    let (code, report) = doctor(&home);
    assert_eq!(code, 1);
    assert_eq!(failed(&report), ["sandbox"]);
}
