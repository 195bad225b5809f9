//! The shell corpus: hundreds of benign and hostile commands with the verdict the default
//! policy must give (including bypass attempts through quoting, wrappers, substitutions,
//! interpreters and redirections).

use super::support as common;

use agp_contracts::Decision;
use agp_policy::Policy;

fn parse_decision(s: &str) -> Decision {
    match s {
        "allow" => Decision::Allow,
        "require" => Decision::Require,
        "deny" => Decision::Deny,
        other => panic!("bad decision {other}"),
    }
}

#[test]
fn corpus_verdicts() {
    let world = common::World::new();
    let policy =
        Policy::from_str(common::DEFAULT_POLICY, "policy.toml").expect("default policy loads");
    let corpus = include_str!("../corpus.txt");
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, line) in corpus.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (want, command) = line.split_once(" | ").expect("DECISION | COMMAND");
        let command = command.replace("\\n", "\n");
        let want = parse_decision(want.trim());
        let verdict = world.bash(&policy, &command);
        count += 1;
        if verdict.decision != want {
            failures.push(format!(
                "line {}: `{command}`: want {want}, got {} ({:?}: {})",
                n + 1,
                verdict.decision,
                verdict.rule_id,
                verdict.reason
            ));
        }
    }
    assert!(count >= 200, "corpus has only {count} commands");
    assert!(
        failures.is_empty(),
        "{} of {count} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
