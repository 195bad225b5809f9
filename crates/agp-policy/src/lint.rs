//! `agp policy check`: problems a policy can load with but should not have.

use agp_contracts::Decision;

use crate::file::{Diagnostic, Location, Policy, Rule};
use agp_contracts::Tool;

use crate::matcher::{Matcher, Spec, ToolSel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub diagnostic: Diagnostic,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.diagnostic;
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            d.source, d.location.line, d.location.col, d.message
        )
    }
}

/// Lints a loaded policy. Load errors (syntax, duplicate ids, bad matchers) are reported by
/// [`Policy::from_str`] already.
pub fn lint(policy: &Policy) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = |loc: &Location, severity, message: String| Finding {
        severity,
        diagnostic: Diagnostic {
            source: policy.source_name().to_string(),
            location: loc.clone(),
            message,
        },
    };
    let rules = policy.rules();
    for (ri, rule) in rules.iter().enumerate() {
        for (mi, m) in rule.matchers.iter().enumerate() {
            let loc = rule.matcher_locations.get(mi).unwrap_or(&rule.location);
            // Known tools parse to their own variant; anything else is a name no harness sends.
            if let ToolSel::Name(Tool::Other(n)) = &m.tool {
                let hint = Tool::known_names()
                    .find(|k| strsim::levenshtein(&k.to_lowercase(), &n.to_lowercase()) <= 2)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                out.push(at(
                    loc,
                    Severity::Error,
                    format!(
                        "unknown tool name `{n}` in rule `{}`{hint}; the rule would never match",
                        rule.id
                    ),
                ));
            }
            if rule.effect == Decision::Allow {
                if let Some(what) = broad(m) {
                    out.push(at(
                        loc,
                        Severity::Warning,
                        format!("rule `{}` allows {what} (`{}`); guards still apply, but consider narrower rules", rule.id, m.source),
                    ));
                }
            }
            if let Spec::Command(_) = &m.spec {
                let inner = m.source.trim_start_matches("Bash(");
                if ["&&", "||", ";", "|", "$("]
                    .iter()
                    .any(|op| inner.contains(op))
                {
                    out.push(at(
                        loc,
                        Severity::Warning,
                        format!(
                            "`{}` contains a shell operator, but rules match each simple command on its own; split it into one matcher per command",
                            m.source
                        ),
                    ));
                }
            }
            if let Some(by) = shadowed_by(rules, ri, m) {
                out.push(at(
                    loc,
                    Severity::Error,
                    format!(
                        "`{}` in rule `{}` can never decide: rule `{}` (line {}) covers it with effect {}",
                        m.source, rule.id, by.id, by.location.line, by.effect
                    ),
                ));
            }
        }
    }
    for t in policy.tests() {
        if let Some(want) = &t.rule {
            let known = rules.iter().any(|r| &r.id == want)
                || crate::guards::GuardId::parse(want).is_some()
                || matches!(want.as_str(), "default" | "schema" | "shell" | "internal");
            if !known {
                out.push(at(
                    &t.location,
                    Severity::Error,
                    format!(
                        "test `{}` expects rule `{want}`, which is neither a rule nor a guard",
                        t.name
                    ),
                ));
            }
        }
    }
    out
}

fn broad(m: &Matcher) -> Option<&'static str> {
    match (&m.tool, &m.spec) {
        (ToolSel::Any, _) => Some("every tool"),
        (ToolSel::Name(Tool::Bash), Spec::All) => Some("every shell command"),
        (_, Spec::Command(_)) if m.source.replace(' ', "") == "Bash(*)" => {
            Some("every shell command")
        }
        (ToolSel::Class(_) | ToolSel::Name(_), Spec::All)
            if matches!(
                Tool::parse_name(&m.tool_name),
                Tool::Write | Tool::Edit | Tool::MultiEdit
            ) =>
        {
            Some("writing any file")
        }
        (_, Spec::Path(_)) => {
            let inner = m
                .source
                .split_once('(')
                .map_or("", |x| x.1)
                .trim_end_matches(')');
            matches!(inner, "//**" | "//" | "~/**" | "~/" | "~")
                .then_some("every path under / or ~")
        }
        _ => None,
    }
}

/// A rule that always wins over `m` wherever `m` matches.
fn shadowed_by<'a>(rules: &'a [Rule], ri: usize, m: &Matcher) -> Option<&'a Rule> {
    let me = &rules[ri];
    rules.iter().enumerate().find_map(|(si, s)| {
        if si == ri {
            return None;
        }
        let wins = s.effect > me.effect || (s.effect == me.effect && si < ri);
        (wins && s.matchers.iter().any(|sm| covers(sm, m))).then_some(s)
    })
}

fn same_tools(a: &Matcher, b: &Matcher) -> bool {
    match (&a.tool, &b.tool) {
        (ToolSel::Any, _) => true,
        (ToolSel::Name(x), ToolSel::Name(y)) => x == y,
        (ToolSel::Class(x), ToolSel::Class(y)) => x == y,
        (ToolSel::Glob(_), ToolSel::Glob(_) | ToolSel::Name(_)) => {
            a.tool_name.ends_with('*') && b.tool_name.starts_with(a.tool_name.trim_end_matches('*'))
        }
        _ => false,
    }
}

/// Does `a` match at least everything `b` matches? (Conservative: `false` when unsure.)
fn covers(a: &Matcher, b: &Matcher) -> bool {
    if !same_tools(a, b) {
        return false;
    }
    let inner = |m: &Matcher| {
        m.source
            .split_once('(')
            .map(|x| x.1.trim_end_matches(')').trim().to_string())
            .unwrap_or_default()
    };
    match (&a.spec, &b.spec) {
        (Spec::All, _) => true,
        (_, Spec::All) => false,
        (Spec::Command(_), Spec::Command(_)) => {
            let norm = |s: String| match s.strip_suffix(":*") {
                Some(p) => format!("{} *", p.trim_end()),
                None => s,
            };
            let (ai, bi) = (norm(inner(a)), norm(inner(b)));
            if ai == bi {
                return true;
            }
            // `P *` covers `P` and `P …`; `P*` covers anything starting with `P`.
            match ai.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => {
                    if let Some(word) = prefix.strip_suffix(' ') {
                        bi == word || bi.starts_with(prefix)
                    } else {
                        bi.starts_with(prefix)
                    }
                }
                _ => false,
            }
        }
        (Spec::Path(_), Spec::Path(_)) => {
            let (ai, bi) = (inner(a), inner(b));
            ai == bi
                || ai.strip_suffix("**").is_some_and(|p| {
                    p.ends_with('/')
                        && bi.starts_with(p)
                        && bi.starts_with("//") == p.starts_with("//")
                })
        }
        (Spec::Domain(x), Spec::Domain(y)) => {
            x == y || (x.starts_with("*.") && y.ends_with(&x[1..]))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str) -> Vec<String> {
        lint(&Policy::from_str(text, "p.toml").unwrap())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn shadowed_unknown_and_broad() {
        let text = "[[rule]]\nid = \"git\"\neffect = \"deny\"\nmatch = [\"Bash(git *)\"]\n\
                    [[rule]]\nid = \"status\"\neffect = \"allow\"\nmatch = [\"Bash(git status)\", \"Bassh\"]\n\
                    [[rule]]\nid = \"all\"\neffect = \"allow\"\nmatch = [\"Bash\"]\n";
        let f = findings(text);
        assert!(f.iter().any(|l| l.starts_with("p.toml:8:10: error: `Bash(git status)` in rule `status` can never decide: rule `git`")), "{f:#?}");
        assert!(
            f.iter().any(
                |l| l.starts_with("p.toml:8:30: error: unknown tool name `Bassh`")
                    && l.contains("did you mean `Bash`")
            ),
            "{f:#?}"
        );
        assert!(
            f.iter()
                .any(|l| l
                    .starts_with("p.toml:12:10: warning: rule `all` allows every shell command")),
            "{f:#?}"
        );
    }

    #[test]
    fn later_allow_is_not_shadowed_by_earlier_narrower_rule() {
        let text = "[[rule]]\nid = \"a\"\neffect = \"require\"\nmatch = [\"Bash(npm test)\"]\n\
                    [[rule]]\nid = \"b\"\neffect = \"deny\"\nmatch = [\"Bash(npm *)\"]\n\
                    [[rule]]\nid = \"c\"\neffect = \"allow\"\nmatch = [\"Read(/src/**)\"]\n\
                    [[rule]]\nid = \"d\"\neffect = \"require\"\nmatch = [\"Read(/src/a/**)\"]\n";
        let f = findings(text);
        assert_eq!(
            f.iter().filter(|l| l.contains("can never decide")).count(),
            1,
            "{f:#?}"
        );
        assert!(f[0].contains("rule `a`"), "{f:#?}");
    }

    #[test]
    fn tests_must_name_real_rules() {
        let text = "[[rule]]\nid = \"a\"\neffect = \"allow\"\nmatch = [\"Read\"]\n\
                    [[test]]\ntool = \"Read\"\ninput = { file_path = \"x\" }\nexpect = \"allow\"\nrule = \"b\"\n";
        let f = findings(text);
        assert!(
            f.iter()
                .any(|l| l.starts_with("p.toml:5:1: error: test `test #1` expects rule `b`")),
            "{f:#?}"
        );
    }

    #[test]
    fn default_policy_is_clean() {
        let text = include_str!("../../agp/assets/policy.toml");
        let f = findings(text);
        assert!(f.iter().all(|l| !l.contains("error")), "{f:#?}");
    }
}
