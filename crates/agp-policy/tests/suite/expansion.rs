//! Words agp cannot resolve while parsing are expanded at judgment time where that is sound,
//! and otherwise never allowed: checked against real files with the default policy.

use super::support as common;

use agp_contracts::{Decision, Verdict};
use agp_policy::Policy;

fn judge(world: &common::World, command: &str) -> Verdict {
    let policy =
        Policy::from_str(common::DEFAULT_POLICY, "policy.toml").expect("default policy loads");
    world.bash(&policy, command)
}

#[test]
fn session_values_and_the_lines_own_variables_are_expanded() {
    let world = common::World::new();
    std::fs::write(world.home.join(".agp/keys/journal.key"), "k").expect("key");
    for (command, decision, rule) in [
        (
            "cat $HOME/.ssh/id_rsa",
            Decision::Require,
            "protected-paths",
        ),
        (
            "cat ${HOME}/.aws/credentials",
            Decision::Require,
            "protected-paths",
        ),
        ("cat ~/.ss?/id_*", Decision::Require, "protected-paths"),
        ("cat ~/.agp/keys/*", Decision::Deny, "protected-paths"),
        (
            "cat {.env,Cargo.toml}",
            Decision::Require,
            "protected-paths",
        ),
        ("f=.env; cat \"$f\"", Decision::Require, "protected-paths"),
        (
            "for f in ~/.ssh/*; do cat \"$f\"; done",
            Decision::Require,
            "protected-paths",
        ),
        ("cat ~+/.env", Decision::Require, "protected-paths"),
        ("cat $X/id_rsa", Decision::Require, "shell"),
        ("cat ~-/x", Decision::Require, "shell"),
        ("read f < list; cat \"$f\"", Decision::Require, "shell"),
        ("echo .env | xargs cat", Decision::Require, "shell"),
        (
            "cat ~/.ag$X/keys/journal.key",
            Decision::Deny,
            "protected-paths",
        ),
        (
            "echo x > .git/hooks/$HOOK",
            Decision::Deny,
            "protected-paths",
        ),
        ("echo x > ~/.ssh/$F", Decision::Deny, "protected-paths"),
        ("echo x > ~+/.git/config", Decision::Deny, "protected-paths"),
        ("env", Decision::Require, "protected-paths"),
        (
            "printenv GITHUB_TOKEN",
            Decision::Require,
            "protected-paths",
        ),
        (
            "cat /proc/self/environ",
            Decision::Require,
            "protected-paths",
        ),
    ] {
        let v = judge(&world, command);
        assert_eq!(v.decision, decision, "{command}: {}", v.reason);
        // The part that reads the file carries the judgment (another part may decide too).
        assert!(
            v.parts
                .iter()
                .any(|p| p.decision == decision && p.rule_id.as_deref() == Some(rule)),
            "{command}: {:?}",
            v.parts
        );
    }
    for command in [
        "f=src/main.rs; cat \"$f\"",
        "for f in src/*.rs; do head \"$f\"; done",
        "cat \"$PWD/src/main.rs\"",
        "cat ./src/*.rs",
        "find src -name '*.rs' | xargs wc -l",
        "echo $SOMETHING",
    ] {
        let v = judge(&world, command);
        assert_eq!(v.decision, Decision::Allow, "{command}: {}", v.reason);
    }
}

#[test]
fn runners_outside_the_project_are_not_the_projects_tests() {
    let world = common::World::new();
    for command in [
        "cd /tmp && cargo test",
        "env -C /tmp make",
        "cd .. && npm test",
    ] {
        let v = judge(&world, command);
        assert_eq!(v.decision, Decision::Require, "{command}: {}", v.reason);
    }
    assert_eq!(
        judge(&world, "cd src && cargo test").decision,
        Decision::Allow
    );
}
