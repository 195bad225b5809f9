//! The policy file (`policy.toml`): parsing with exact locations, validation, and the loaded
//! [`Policy`]. A policy with any error never loads, not even partly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use agp_contracts::{ApprovalSpec, Decision};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::guards::GuardId;
use crate::matcher::Matcher;

/// A place in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

impl Location {
    pub fn of(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { line, col }
    }
}

/// One problem in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub source: String,
    pub location: Location,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.source, self.location.line, self.location.col, self.message
        )
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl PolicyError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid(d) => d,
            PolicyError::Read { .. } => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawDecision {
    Allow,
    Require,
    Deny,
}

impl From<RawDecision> for Decision {
    fn from(d: RawDecision) -> Self {
        match d {
            RawDecision::Allow => Decision::Allow,
            RawDecision::Require => Decision::Require,
            RawDecision::Deny => Decision::Deny,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Option<Spanned<i64>>,
    default: Option<Spanned<RawDecision>>,
    guards: Option<BTreeMap<String, Spanned<bool>>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default, rename = "test")]
    tests: Vec<Spanned<RawTest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    effect: Spanned<RawDecision>,
    #[serde(rename = "match")]
    matchers: Spanned<Vec<Spanned<String>>>,
    reason: Option<String>,
    approvers: Option<Spanned<Vec<String>>>,
    quorum: Option<Spanned<u32>>,
    remember: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Option<String>,
    tool: Spanned<String>,
    input: serde_json::Value,
    cwd: Option<String>,
    expect: Spanned<RawDecision>,
    rule: Option<String>,
}

/// A rule of the policy.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub effect: Decision,
    pub matchers: Vec<Matcher>,
    pub reason: Option<String>,
    pub approval: Option<ApprovalSpec>,
    /// Where the rule and each matcher are, for lints.
    pub location: Location,
    pub matcher_locations: Vec<Location>,
}

/// A `[[test]]` case carried by the policy.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    pub name: String,
    pub tool: String,
    pub input: serde_json::Value,
    /// Working directory, relative to the project root unless absolute.
    pub cwd: Option<String>,
    pub expect: Decision,
    /// Expected deciding rule or guard id, when given.
    pub rule: Option<String>,
    pub location: Location,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) source_name: String,
    pub(crate) text: String,
    pub(crate) sha256: String,
    pub(crate) default: Decision,
    pub(crate) rules: Vec<Rule>,
    pub(crate) disabled_guards: HashSet<GuardId>,
    pub(crate) tests: Vec<PolicyTest>,
    pub(crate) index: crate::engine::RuleIndex,
    pub(crate) base_cache: crate::engine::BaseCache,
    /// The file this policy was loaded from and every link of its symlink chain, as the
    /// engine resolves written paths: writing one of them is rewriting the policy in force.
    /// Empty for a policy parsed from text.
    pub(crate) files: std::sync::Arc<[PathBuf]>,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut policy = Self::from_str(&text, &path.display().to_string())?;
        policy.files = policy_files(path).into();
        Ok(policy)
    }

    /// Parses and validates policy text; `source_name` names it in error messages.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, source_name: &str) -> Result<Self, PolicyError> {
        let diag = |span: Range<usize>, message: String| Diagnostic {
            source: source_name.to_string(),
            location: Location::of(text, span.start),
            message,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            PolicyError::Invalid(vec![diag(
                e.span().unwrap_or(0..0),
                e.message().trim().to_string(),
            )])
        })?;
        let mut errors = Vec::new();
        if let Some(v) = &raw.version {
            if *v.get_ref() != 1 {
                errors.push(diag(
                    v.span(),
                    format!(
                        "unsupported policy version {} (this agp reads version 1)",
                        v.get_ref()
                    ),
                ));
            }
        }
        let default = raw
            .default
            .as_ref()
            .map_or(Decision::Require, |d| Decision::from(*d.get_ref()));
        let mut disabled_guards = HashSet::new();
        for (name, on) in raw.guards.iter().flatten() {
            match GuardId::parse(name) {
                Some(id) if !*on.get_ref() && !id.can_be_disabled() => errors.push(diag(
                    on.span(),
                    format!(
                        "the `{name}` guard cannot be switched off: it keeps agp's own home, \
                         signing keys and the policy in force out of the agent's hands"
                    ),
                )),
                Some(id) => {
                    if !*on.get_ref() {
                        disabled_guards.insert(id);
                    }
                }
                None => errors.push(diag(
                    on.span(),
                    format!(
                        "unknown guard `{name}` (known: {})",
                        GuardId::ALL
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        let mut rules = Vec::new();
        let mut seen_ids: HashMap<String, Location> = HashMap::new();
        for raw_rule in &raw.rules {
            let span = raw_rule.span();
            let r = raw_rule.get_ref();
            let id = r.id.get_ref().trim().to_string();
            if id.is_empty() {
                errors.push(diag(r.id.span(), "rule id must not be empty".into()));
            } else if let Some(prev) = seen_ids.get(&id) {
                errors.push(diag(
                    r.id.span(),
                    format!(
                        "duplicate rule id `{id}` (first defined at line {})",
                        prev.line
                    ),
                ));
            } else {
                seen_ids.insert(id.clone(), Location::of(text, r.id.span().start));
            }
            if GuardId::parse(&id).is_some()
                || matches!(id.as_str(), "schema" | "shell" | "default")
            {
                errors.push(diag(
                    r.id.span(),
                    format!("rule id `{id}` is reserved for a built-in check"),
                ));
            }
            let effect = Decision::from(*r.effect.get_ref());
            if r.matchers.get_ref().is_empty() {
                errors.push(diag(
                    r.matchers.span(),
                    format!("rule `{id}` has an empty `match` list"),
                ));
            }
            let mut matchers = Vec::new();
            let mut matcher_locations = Vec::new();
            for m in r.matchers.get_ref() {
                match Matcher::parse(m.get_ref()) {
                    Ok(parsed) => {
                        matchers.push(parsed);
                        matcher_locations.push(Location::of(text, m.span().start));
                    }
                    Err(e) => errors.push(diag(m.span(), e)),
                }
            }
            let approval = if effect == Decision::Require {
                let quorum = r.quorum.as_ref().map_or(1, |q| *q.get_ref());
                if quorum == 0 {
                    if let Some(q) = &r.quorum {
                        errors.push(diag(q.span(), "quorum must be at least 1".into()));
                    }
                }
                let approvers = r
                    .approvers
                    .as_ref()
                    .map(|a| a.get_ref().clone())
                    .unwrap_or_default();
                if !approvers.is_empty() && (quorum as usize) > approvers.len() {
                    if let Some(q) = &r.quorum {
                        errors.push(diag(
                            q.span(),
                            format!(
                                "quorum {quorum} is larger than the {} listed approvers",
                                approvers.len()
                            ),
                        ));
                    }
                }
                let remember_secs = match &r.remember {
                    Some(d) => match parse_duration(d.get_ref()) {
                        Ok(secs) => Some(secs),
                        Err(e) => {
                            errors.push(diag(d.span(), e));
                            None
                        }
                    },
                    None => None,
                };
                Some(ApprovalSpec {
                    approvers,
                    quorum: quorum.max(1),
                    remember_secs,
                })
            } else {
                let extras = [
                    ("approvers", r.approvers.as_ref().map(toml::Spanned::span)),
                    ("quorum", r.quorum.as_ref().map(toml::Spanned::span)),
                    ("remember", r.remember.as_ref().map(toml::Spanned::span)),
                ];
                for (name, span) in extras {
                    if let Some(span) = span {
                        errors.push(diag(
                            span,
                            format!("`{name}` only applies to rules with effect = \"require\""),
                        ));
                    }
                }
                None
            };
            rules.push(Rule {
                id,
                effect,
                matchers,
                reason: r.reason.clone(),
                approval,
                location: Location::of(text, span.start),
                matcher_locations,
            });
        }
        let mut tests = Vec::new();
        for (i, t) in raw.tests.iter().enumerate() {
            let tr = t.get_ref();
            if !tr.input.is_object() {
                errors.push(diag(t.span(), "test `input` must be a table".into()));
            }
            tests.push(PolicyTest {
                name: tr
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("test #{}", i + 1)),
                tool: tr.tool.get_ref().clone(),
                input: tr.input.clone(),
                cwd: tr.cwd.clone(),
                expect: Decision::from(*tr.expect.get_ref()),
                rule: tr.rule.clone(),
                location: Location::of(text, t.span().start),
            });
        }
        if !errors.is_empty() {
            return Err(PolicyError::Invalid(errors));
        }
        let index = crate::engine::RuleIndex::build(&rules);
        Ok(Self {
            source_name: source_name.to_string(),
            text: text.to_string(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            default,
            rules,
            disabled_guards,
            tests,
            index,
            base_cache: Default::default(),
            files: std::sync::Arc::from(Vec::new()),
        })
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    pub fn default_decision(&self) -> Decision {
        self.default
    }
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    pub fn tests(&self) -> &[PolicyTest] {
        &self.tests
    }
    pub fn guard_enabled(&self, id: GuardId) -> bool {
        !id.can_be_disabled() || !self.disabled_guards.contains(&id)
    }
}

/// Longest symlink chain followed (as the kernel's own bound).
const MAX_LINKS: usize = 40;

/// `path` and every link its symlinks lead through, each with its directory canonical (as a
/// written path is judged), and the file the chain ends at.
fn policy_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut current = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for _ in 0..MAX_LINKS {
        let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
            break;
        };
        files.push(crate::paths::canonicalize_lenient(dir).join(name));
        let Ok(target) = std::fs::read_link(&current) else {
            break;
        };
        current = dir.join(target);
    }
    files.push(crate::paths::canonicalize_lenient(path));
    files.sort();
    files.dedup();
    files
}

/// `90s`, `30m`, `2h`, `1d`, `1h30m` → seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("bad duration `{text}` (use e.g. 90s, 30m, 8h, 1d, 1h30m)");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line_and_column() {
        let text = "default = \"require\"\n\n[[rule]]\nid = \"a\"\neffect = \"alow\"\nmatch = [\"Bash\"]\n";
        let err = Policy::from_str(text, "p.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("p.toml:5:10: "), "{msg}");
        assert!(msg.contains("alow"), "{msg}");

        let text = "[[rule]]\nid = \"a\"\neffect = \"allow\"\nmatch = [\"Bash(ls\"]\n";
        let msg = Policy::from_str(text, "p.toml").unwrap_err().to_string();
        assert!(msg.starts_with("p.toml:4:10: "), "{msg}");

        let text = "[[rule]]\nid = \"a\"\neffect = \"allow\"\nmatch = [\"Read\"]\n[[rule]]\nid = \"a\"\neffect = \"deny\"\nmatch = [\"Bash\"]\n";
        let msg = Policy::from_str(text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("p.toml:6:6: duplicate rule id `a`"), "{msg}");

        let text = "[guards]\nnope = false\n";
        let msg = Policy::from_str(text, "p.toml").unwrap_err().to_string();
        assert!(msg.contains("p.toml:2:8: unknown guard `nope`"), "{msg}");

        let text = "[[rule]]\nid = \"a\"\neffect = \"allow\"\nmatch = [\"Bash\"]\nquorum = 2\n";
        assert!(Policy::from_str(text, "p").is_err());
        let text = "bogus = 1\n";
        assert!(Policy::from_str(text, "p")
            .unwrap_err()
            .to_string()
            .starts_with("p:1:1: "));
    }

    #[test]
    fn loads_a_complete_policy() {
        let text = r#"
version = 1
default = "deny"
[guards]
network-egress = false
[[rule]]
id = "ask-push"
effect = "require"
match = ["Bash(git push *)"]
approvers = ["alice", "bob"]
quorum = 2
remember = "1h30m"
[[test]]
tool = "Bash"
input = { command = "git push" }
expect = "require"
"#;
        let p = Policy::from_str(text, "p").unwrap();
        assert_eq!(p.default_decision(), Decision::Deny);
        assert!(!p.guard_enabled(GuardId::NetworkEgress));
        let spec = p.rules()[0].approval.clone().unwrap();
        assert_eq!(spec.quorum, 2);
        assert_eq!(spec.remember_secs, Some(5400));
        assert_eq!(p.tests().len(), 1);
        assert_eq!(p.sha256().len(), 64);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1d2h"), Ok(93600));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
    }
}
