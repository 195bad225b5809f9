//! Synthetic rule sets for benchmarks (`agp bench policy` and this crate's criterion bench),
//! so both measure the same policy.

use crate::Policy;

/// `base` (a policy file's text) plus generated rules up to `rules` in all: a mix of effects
/// and matcher kinds, some of them wildcard patterns that every command has to be checked
/// against. When `base` does not parse, all `rules` are generated on top of it.
pub fn synthetic_policy(base: &str, rules: usize) -> String {
    let mut text = base.to_string();
    let base_rules = Policy::from_str(&text, "default").map_or(0, |p| p.rules().len());
    for i in 0..rules.saturating_sub(base_rules) {
        let effect = ["allow", "require", "deny"][i % 3];
        let matcher = match i % 10 {
            0..=5 => format!("Bash(tool{i} *)"),
            6 => format!("Read(/generated/dir{i}/**)"),
            7 => format!("Edit(/generated/out{i}/**)"),
            8 => format!("WebFetch(domain:host{i}.example)"),
            _ => format!("Bash(* --flag{i}*)"),
        };
        text.push_str(&format!(
            "\n[[rule]]\nid = \"gen-{i}\"\neffect = \"{effect}\"\nmatch = [\"{matcher}\"]\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tops_the_base_up_to_the_requested_rule_count() {
        let base = "version = 1\ndefault = \"deny\"\n\n[[rule]]\nid = \"one\"\neffect = \"allow\"\nmatch = [\"Bash(ls)\"]\n";
        let policy = Policy::from_str(&synthetic_policy(base, 500), "synthetic").unwrap();
        assert_eq!(policy.rules().len(), 500);
        assert_eq!(synthetic_policy(base, 1), base);
    }
}
