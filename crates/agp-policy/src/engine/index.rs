//! Rule lookup tables built once per policy.

use std::collections::HashMap;

use agp_contracts::{Decision, Tool};

use crate::file::{Policy, Rule};
use crate::matcher::{FileClass, Spec};
use crate::shell::basename;

/// Rule lookup tables built once per policy, so a 500-rule policy costs a hash lookup per
/// command rather than a scan.
#[derive(Debug, Clone, Default)]
pub struct RuleIndex {
    pub(super) bash_by_word: HashMap<String, Vec<usize>>,
    pub(super) bash_any: Vec<usize>,
    pub(super) read_rules: Vec<usize>,
    pub(super) write_rules: Vec<usize>,
    /// Read-class rules that deny or require (checked against paths a command mentions).
    pub(super) read_restrict: Vec<usize>,
    /// Rules with a `WebFetch(domain:…)` matcher.
    pub(super) domain_rules: Vec<usize>,
    /// For file tools and WebFetch: the rules with a matcher that applies to the tool.
    pub(super) by_tool: HashMap<Tool, Vec<usize>>,
}

const INDEXED_TOOLS: &[Tool] = &[
    Tool::Read,
    Tool::Glob,
    Tool::Grep,
    Tool::LS,
    Tool::NotebookRead,
    Tool::Write,
    Tool::Edit,
    Tool::MultiEdit,
    Tool::NotebookEdit,
    Tool::WebFetch,
];

/// Two ascending index lists merged, without duplicates.
pub(super) fn merged<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
                x
            }
            (Some(&x), Some(&y)) if x < y => {
                i += 1;
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => return None,
        };
        Some(next)
    })
}

impl RuleIndex {
    pub fn build(rules: &[Rule]) -> Self {
        let mut ix = RuleIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let mut any_bash = false;
            for m in &rule.matchers {
                if m.applies_to_tool(&Tool::Bash) {
                    match &m.spec {
                        Spec::Command(p) => match &p.first_word {
                            Some(w) => {
                                let list =
                                    ix.bash_by_word.entry(basename(w).to_string()).or_default();
                                if list.last() != Some(&i) {
                                    list.push(i);
                                }
                            }
                            None => any_bash = true,
                        },
                        _ => any_bash = true,
                    }
                }
                if m.applies_to_class(FileClass::Read) {
                    push_once(&mut ix.read_rules, i);
                    if rule.effect != Decision::Allow {
                        push_once(&mut ix.read_restrict, i);
                    }
                }
                if m.applies_to_class(FileClass::Write) {
                    push_once(&mut ix.write_rules, i);
                }
                if matches!(m.spec, Spec::Domain(_)) {
                    push_once(&mut ix.domain_rules, i);
                }
            }
            if any_bash {
                ix.bash_any.push(i);
            }
            for t in INDEXED_TOOLS {
                if rule.matchers.iter().any(|m| m.applies_to_tool(t)) {
                    ix.by_tool.entry(t.clone()).or_default().push(i);
                }
            }
        }
        ix
    }
}

fn push_once(v: &mut Vec<usize>, i: usize) {
    if v.last() != Some(&i) {
        v.push(i);
    }
}

impl Policy {
    /// Candidate rules for a tool call (indexed for file tools and WebFetch).
    pub(super) fn tool_rules(&self, tool: &Tool) -> Box<dyn Iterator<Item = usize> + '_> {
        if INDEXED_TOOLS.contains(tool) {
            Box::new(self.index.by_tool.get(tool).into_iter().flatten().copied())
        } else {
            Box::new(0..self.rules.len())
        }
    }
}
