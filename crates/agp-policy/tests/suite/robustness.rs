//! Arbitrary command lines never crash the engine, and a call is allowed only when every part
//! is.

use super::support as common;

use agp_contracts::Decision;
use agp_policy::Policy;
use proptest::prelude::*;
use serde_json::json;

fn shellish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "ls",
        "rm",
        "-rf",
        "/",
        "~",
        "$HOME",
        "$(",
        ")",
        "`",
        "'",
        "\"",
        "\\",
        "|",
        "||",
        "&&",
        ";",
        "&",
        ">",
        ">>",
        "<",
        "<<EOF\nx\nEOF\n",
        "<(",
        "{",
        "}",
        "(",
        "*",
        "?",
        "[",
        "]",
        "$'\\x41'",
        "eval",
        "sh -c",
        "sudo",
        "env",
        "xargs",
        "find . -exec",
        "\\;",
        "curl x",
        "bash",
        "#",
        "\n",
        " ",
        " ",
        " ",
        "cat .env",
        "git push -f",
        "=",
        "PATH=",
        "echo",
        "a",
        "b.txt",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

fn fixture() -> &'static (common::World, Policy) {
    static FIXTURE: std::sync::OnceLock<(common::World, Policy)> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let policy = Policy::from_str(common::DEFAULT_POLICY, "policy.toml").unwrap();
        (common::World::new(), policy)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_commands_are_judged_without_panicking(cmd in shellish()) {
        let (world, policy) = fixture();
        // `evaluate_call` has no panic guard, so a panic fails the test.
        let v = policy.evaluate_call(&world.call("Bash", json!({ "command": cmd })), &world.ctx);
        prop_assert!(!v.parts.is_empty());
        let strictest = v.parts.iter().map(|p| p.decision).max().unwrap();
        prop_assert_eq!(v.decision, strictest);
        if v.decision == Decision::Allow {
            prop_assert!(v.parts.iter().all(|p| p.decision == Decision::Allow));
        }
        if v.decision == Decision::Require {
            prop_assert!(v.approval.is_some());
        }
    }

    #[test]
    fn arbitrary_bytes_parse(cmd in "\\PC{0,200}") {
        let _ = agp_policy::shell::analyze(&cmd);
    }
}
