//! "Allow for this session" with the real binary: a scripted `agp run` whose approver answers
//! `allow-session`. The identical call is then granted as remembered, a different one is asked
//! again, and a rule without `remember` never remembers, whatever the answer.

use super::support::looping::{bash_calls_yaml, git_world, journal, run_scripted};

const POLICY: &str = r#"
version = 1
default = "allow"

[guards]
destructive = false
"protected-paths" = false
secrets = false
"supply-chain" = false
"network-egress" = false
privilege = false

[[rule]]
id = "touch-needs-a-human"
effect = "require"
match = ["Bash(touch *)"]
remember = "10m"
reason = "touching files needs a human"

[[rule]]
id = "mkdir-needs-a-human"
effect = "require"
match = ["Bash(mkdir *)"]
reason = "making directories needs a human, every time"
"#;

#[test]
fn an_answer_for_the_session_covers_only_the_same_call_of_a_remembering_rule() {
    let w = git_world();
    let policy = w.dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let script = w.dir.path().join("calls.yaml");
    std::fs::write(
        &script,
        bash_calls_yaml(&[
            "touch a",
            "touch a",
            "touch b",
            "mkdir d1",
            "mkdir d1 || true",
        ]),
    )
    .unwrap();
    // touch a: for the session; touch a again: not asked; touch b: asked, once;
    // mkdir: "for the session" is a plain grant there; the next mkdir is asked and denied.
    let answers = w.dir.path().join("answers.txt");
    std::fs::write(&answers, "allow-session\nallow\nallow-session\ndeny\n").unwrap();
    let out = run_scripted(
        &w.home,
        &w.user_home,
        &script,
        &w.repo,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--approver-script",
            answers.to_str().unwrap(),
        ],
    );
    let j = journal(&w.home);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        j.iter().filter(|e| e["kind"] == kind).collect()
    };
    assert_eq!(of("approval.requested").len(), 4, "{out:?}\n{j:#?}");
    let remembered = of("approval.remembered");
    assert_eq!(remembered.len(), 1, "{j:#?}");
    assert_eq!(remembered[0]["body"]["rule_id"], "touch-needs-a-human");
    assert_eq!(remembered[0]["body"]["call_id"], "call-1");
    let reused: Vec<_> = of("approval.granted")
        .into_iter()
        .filter(|e| e["body"]["remembered"] == true)
        .collect();
    assert_eq!(reused.len(), 1, "{j:#?}");
    assert_eq!(reused[0]["body"]["call_id"], "call-2");
    assert!(w.repo.join("a").exists() && w.repo.join("b").exists());
    assert!(w.repo.join("d1").is_dir());
    assert_eq!(of("approval.denied").len(), 1);
}
