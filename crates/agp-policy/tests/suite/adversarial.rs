//! The adversarial corpus of issue 9: hundreds of hostile commands (code smuggled through
//! allowed programs, writes hidden by option placement, secret reads through paths agp does not
//! resolve, environment that redirects programs, project tooling pointed elsewhere) that neither
//! a permissive user policy nor the default policy may allow, and everyday commands the default
//! policy must allow. Failures are reported grouped by class, each with its verdict and reason.

use super::support as common;

use std::collections::BTreeMap;

use agp_contracts::Decision;
use agp_policy::Policy;

const HOSTILE: &str = include_str!("../adversarial/hostile.txt");
const BENIGN: &str = include_str!("../adversarial/benign.txt");
const PERMISSIVE: &str = include_str!("../adversarial/permissive.toml");

/// `(line number, class, command)` of a `CLASS | COMMAND` corpus file.
fn entries(text: &str) -> Vec<(usize, &str, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            let (class, cmd) = l
                .split_once(" | ")
                .unwrap_or_else(|| panic!("line {}: want `CLASS | COMMAND`", n + 1));
            (n + 1, class.trim(), cmd)
        })
        .collect()
}

/// A world with agp's own home populated, so globs over it find the signing key.
fn world() -> common::World {
    let w = common::World::new();
    std::fs::write(w.home.join(".agp/keys/journal.key"), "k").expect("write key");
    std::fs::write(w.home.join(".agp/policy.toml"), "version = 1").expect("write policy");
    w
}

fn command(world: &common::World, raw: &str) -> String {
    raw.replace("\\n", "\n")
        .replace("@HOME@", &world.home.display().to_string())
        .replace("@PROJ@", &world.project.display().to_string())
}

/// Failures grouped by class; `wrong` counts distinct corpus lines (a hostile line can fail
/// under both policies).
fn report(
    kind: &str,
    total: usize,
    wrong: usize,
    failures: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut out = format!("{wrong} of {total} {kind} commands judged wrongly, by class:\n");
    for (class, list) in failures {
        out.push_str(&format!("  {class}: {} findings\n", list.len()));
    }
    for (class, list) in failures {
        out.push_str(&format!("\n== {class} ==\n"));
        for f in list {
            out.push_str(f);
            out.push('\n');
        }
    }
    out
}

/// Judges every command of the corpus `kind` (`kind.txt`, at least `min` of them) under
/// each policy; a verdict for which `judged_wrongly` holds is a failure, reported by class.
fn check_corpus(
    kind: &str,
    text: &str,
    min: usize,
    policies: &[(&str, Policy)],
    judged_wrongly: impl Fn(Decision) -> bool,
) {
    let world = world();
    let corpus = entries(text);
    assert!(corpus.len() >= min, "only {} {kind} commands", corpus.len());
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut wrong = std::collections::BTreeSet::new();
    for (line, class, raw) in &corpus {
        let cmd = command(&world, raw);
        for (name, policy) in policies {
            let v = world.bash(policy, &cmd);
            if judged_wrongly(v.decision) {
                wrong.insert(*line);
                failures.entry(class.to_string()).or_default().push(format!(
                    "  {kind}.txt:{line} [{name}] `{raw}` → {}",
                    common::outcome(&v)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        report(kind, corpus.len(), wrong.len(), &failures)
    );
}

fn default_policy() -> Policy {
    Policy::from_str(common::DEFAULT_POLICY, "policy.toml").expect("default policy loads")
}

#[test]
fn no_hostile_command_is_allowed() {
    let permissive =
        Policy::from_str(PERMISSIVE, "permissive.toml").expect("permissive policy loads");
    check_corpus(
        "hostile",
        HOSTILE,
        300,
        &[("permissive", permissive), ("default", default_policy())],
        |d| d == Decision::Allow,
    );
}

#[test]
fn everyday_commands_are_allowed_by_default() {
    check_corpus(
        "benign",
        BENIGN,
        60,
        &[("default", default_policy())],
        |d| d != Decision::Allow,
    );
}
