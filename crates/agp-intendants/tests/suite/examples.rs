//! The shipped demo script must stay valid and keep exercising every path the README promises.

use std::path::{Path, PathBuf};

use agp_intendants::{Expect, Script, Tool};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn demo_script_is_valid_and_covers_allow_require_and_deny() {
    let script = Script::load(&examples().join("demo.yaml")).unwrap();
    let count = |e: Expect| script.calls.iter().filter(|c| c.expect == Some(e)).count();
    assert!(count(Expect::Allow) >= 3);
    assert!(count(Expect::Approved) >= 1);
    assert!(count(Expect::Deny) >= 4);
    assert!(script
        .calls
        .iter()
        .all(|c| c.expect.is_some() && c.name.is_some()));

    let bash: Vec<&str> = script
        .calls
        .iter()
        .filter_map(|c| match &c.tool {
            Tool::Bash(b) => Some(b.command.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        bash.iter().any(|c| c.contains("&&") && c.contains("| sh")),
        "compound bypass"
    );
    let writes_secret = script
        .calls
        .iter()
        .any(|c| matches!(&c.tool, Tool::Write(w) if w.content.contains("AKIA")));
    assert!(writes_secret, "a secret in input");
}

#[test]
fn demo_answers_cover_every_require_call() {
    let script = Script::load(&examples().join("demo.yaml")).unwrap();
    let text = std::fs::read_to_string(examples().join("demo.answers")).unwrap();
    let answers: Vec<agp_channels::ScriptAnswer> = text
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| agp_channels::ScriptAnswer::parse(l).unwrap())
        .collect();
    // The approved call is answered `allow`, and the require call meant to be denied `deny`.
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0], agp_channels::ScriptAnswer::Allow);
    assert!(matches!(answers[1], agp_channels::ScriptAnswer::Deny(_)));
    assert!(script
        .calls
        .iter()
        .any(|c| c.expect == Some(Expect::Approved)));
}

#[test]
fn demo_repo_is_in_place() {
    let repo = examples().join("demo-repo");
    for file in [
        "README.md",
        "src/wordcount/core.py",
        "tests/test_core.py",
        "notes.txt",
    ] {
        assert!(repo.join(file).is_file(), "{file}");
    }
}
