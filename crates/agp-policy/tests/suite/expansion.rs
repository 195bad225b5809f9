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
    use Decision::{Deny, Require};
    const PROTECTED: &str = "protected-paths";
    const AGP_SELF: &str = "agp-self";
    const SHELL: &str = "shell";
    let world = common::World::new();
    std::fs::write(world.home.join(".agp/keys/journal.key"), "k").expect("key");
    for (command, decision, rule) in [
        ("cat $HOME/.ssh/id_rsa", Require, PROTECTED),
        ("cat ${HOME}/.aws/credentials", Require, PROTECTED),
        ("cat ~/.ss?/id_*", Require, PROTECTED),
        ("cat ~/.agp/keys/*", Deny, AGP_SELF),
        ("cat {.env,Cargo.toml}", Require, PROTECTED),
        ("f=.env; cat \"$f\"", Require, PROTECTED),
        ("for f in ~/.ssh/*; do cat \"$f\"; done", Require, PROTECTED),
        ("cat ~+/.env", Require, PROTECTED),
        ("cat $X/id_rsa", Require, SHELL),
        ("cat ~-/x", Require, SHELL),
        ("read f < list; cat \"$f\"", Require, SHELL),
        ("echo .env | xargs cat", Require, SHELL),
        ("cat ~/.ag$X/keys/journal.key", Deny, AGP_SELF),
        ("echo x > .git/hooks/$HOOK", Deny, PROTECTED),
        ("echo x > ~/.ssh/$F", Deny, PROTECTED),
        ("echo x > ~+/.git/config", Deny, PROTECTED),
        ("env", Require, PROTECTED),
        ("printenv GITHUB_TOKEN", Require, PROTECTED),
        ("cat /proc/self/environ", Require, PROTECTED),
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
