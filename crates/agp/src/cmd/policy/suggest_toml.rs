//! The suggestion as a policy fragment: rules with comments saying what they cover, and
//! `[[test]]` cases from the journal; checked to load and to pass its own tests before it is
//! printed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use agp_contracts::{Decision, EvalContext, PolicyEngine as _};
use agp_policy::Policy;
use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::history::{History, Recorded};
use super::replay::tool_call;
use super::suggest::{Suggested, Suggestion};

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value as a TOML inline value; `None` for what TOML cannot hold (null).
fn toml_value(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => toml_str(s),
        Value::Array(a) => {
            let items: Option<Vec<String>> = a.iter().map(toml_value).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Object(o) => {
            let items: Option<Vec<String>> = o
                .iter()
                .map(|(k, v)| toml_value(v).map(|v| format!("{} = {v}", toml_str(k))))
                .collect();
            format!("{{ {} }}", items?.join(", "))
        }
    })
}

/// The rules as TOML (also what the engine checks the suggestions with).
pub fn rules_toml(rules: &[Suggested]) -> String {
    let mut out = String::new();
    for r in rules {
        rule_toml(&mut out, r, None);
    }
    out
}

fn rule_toml(out: &mut String, r: &Suggested, comment: Option<&str>) {
    out.push('\n');
    if let Some(c) = comment {
        for line in c.lines() {
            let _ = writeln!(out, "# {line}");
        }
    }
    let matchers: Vec<String> = r.matchers.iter().map(|m| toml_str(m)).collect();
    let _ = writeln!(
        out,
        "[[rule]]\nid = {}\neffect = \"allow\"\nmatch = [{}]\nreason = {}",
        toml_str(&r.id),
        matchers.join(", "),
        toml_str(&format!("suggested from approved {} calls", r.key))
    );
}

/// The fragment's text, and what it holds.
#[derive(Debug, serde::Serialize)]
pub struct Doc {
    pub text: String,
    pub tests: usize,
    /// The project the [[test]] cases were recorded in (`agp policy test --project`).
    pub project: Option<PathBuf>,
}

fn who(c: &Recorded) -> String {
    format!("{} {} (seq {})", c.session, c.call_id, c.seq)
}

/// A `[[test]]` case for `c`, expecting `expect`; `None` when its input cannot be TOML.
fn test_toml(c: &Recorded, name: &str, expect: Decision, project: &Path) -> Option<String> {
    let input = toml_value(&c.input)?;
    let mut t = format!(
        "\n[[test]]\nname = {}\ntool = {}\ninput = {input}\n",
        toml_str(name),
        toml_str(&c.tool)
    );
    let cwd = match c.cwd.strip_prefix(project) {
        Ok(rel) if rel.as_os_str().is_empty() => None,
        Ok(rel) => Some(rel.display().to_string()),
        Err(_) => Some(c.cwd.display().to_string()),
    };
    if let Some(cwd) = cwd {
        let _ = writeln!(t, "cwd = {}", toml_str(&cwd));
    }
    let _ = writeln!(t, "expect = \"{expect}\"");
    Some(t)
}

pub fn fragment(
    s: &Suggestion,
    calls: &[Recorded],
    policy_path: &Path,
    ctx: &dyn Fn(&Recorded) -> EvalContext,
) -> Result<Doc> {
    // Tests come from the project most of the decisions were made in: they name its files.
    let mut repos: BTreeMap<&Path, usize> = BTreeMap::new();
    for &i in s.approved.iter().chain(&s.denied) {
        if let Some(r) = &calls[i].repo {
            *repos.entry(r.as_path()).or_default() += 1;
        }
    }
    let project = repos
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, _)| p.to_path_buf());
    let alone = Policy::from_str(&rules_toml(&s.rules), "suggestions")
        .context("the suggested rules do not load")?;
    let mut tests = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(project) = &project {
        let mut add = |i: usize, approved: bool| {
            let c = &calls[i];
            if c.repo.as_deref() != Some(project) {
                return;
            }
            let v = alone.evaluate(&tool_call(c), &ctx(c));
            if approved && v.decision != Decision::Allow
                || !seen.insert((c.tool.clone(), c.input.to_string()))
            {
                return;
            }
            // Approved calls the fragment alone does not allow need rules of the policy too (they
            // were skipped above): a test of the fragment alone would say nothing about them.
            let name = if approved {
                format!("approved in the journal: {}", who(c))
            } else {
                format!("{} in the journal: {}", c.outcome.label(), who(c))
            };
            if let Some(t) = test_toml(c, &name, v.decision, project) {
                tests.push(t);
            }
        };
        for &i in &s.approved {
            add(i, true);
        }
        for &i in &s.denied {
            add(i, false);
        }
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Rules suggested by `agp policy suggest` from {} approved and {} denied call(s) in the \
         journal,\n# for {} (add them to it after review: they allow without asking).\n# \
         Each rule allows no more than a program plus its subcommand, or the exact approved \
         commands and paths.",
        s.approved.len(),
        s.denied.len(),
        policy_path.display()
    );
    if let Some(p) = &project {
        let _ = writeln!(
            text,
            "# The [[test]] cases were recorded in {0}: `agp policy test --project {0} FILE`.",
            p.display()
        );
    }
    if s.rules.is_empty() {
        text.push_str("# No rule to suggest (see the notes on standard error or with --json).\n");
    }
    for r in &s.rules {
        let sources: Vec<String> = r.sources.iter().take(3).map(|&i| who(&calls[i])).collect();
        let mut comment = format!(
            "covers {} approved call{} (e.g. {})",
            r.covers,
            if r.covers == 1 { "" } else { "s" },
            sources.join(", ")
        );
        if let Some(n) = &r.narrowed {
            let _ = write!(comment, "\n{n}");
        }
        rule_toml(&mut text, r, Some(&comment));
    }
    for (r, why) in &s.dropped {
        let _ = writeln!(text, "\n# not suggested: {} ({why})", r.matchers.join(", "));
    }
    let kept = tests.len();
    for t in &tests {
        text.push_str(t);
    }
    // The fragment must load and pass its own tests, as `agp policy test` runs them.
    let loaded = Policy::from_str(&text, "suggestions")
        .map_err(|e| anyhow::anyhow!("the suggested fragment does not load (a bug): {e}"))?;
    if let Some(p) = &project {
        let probe = calls
            .iter()
            .find(|c| c.repo.as_deref() == Some(p.as_path()))
            .map(ctx);
        if let Some(probe) = probe {
            let failed: Vec<String> = agp_policy::selftest::run_tests(&loaded, &probe)
                .into_iter()
                .filter_map(|o| o.failure.map(|f| format!("{}: {f}", o.test.name)))
                .collect();
            if !failed.is_empty() {
                bail!(
                    "the suggested fragment fails its own tests (a bug): {}",
                    failed.join("; ")
                );
            }
        }
    }
    Ok(Doc {
        text,
        tests: kept,
        project,
    })
}

pub fn print(s: &Suggestion, doc: &Doc, history: &History, json: bool) -> Result<()> {
    let calls = &history.calls;
    if json {
        let out = serde_json::json!({
            "journal": history.trust,
            "approved": s.approved.len(),
            "denied": s.denied.len(),
            "rules": s.rules,
            "dropped": s.dropped.iter().map(|(r, why)| serde_json::json!({
                "matchers": r.matchers, "key": r.key, "why": why,
            })).collect::<Vec<_>>(),
            "skipped": s.skipped,
            "still_required": s.still_required,
            "tests": doc.tests,
            "project": doc.project,
            "fragment": doc.text,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print!("{}", doc.text);
    eprintln!(
        "agp: journal {} verified; {} approved and {} denied call(s) read; {} rule(s) suggested, \
         {} [[test]] case(s)",
        history.trust.journal.display(),
        s.approved.len(),
        s.denied.len(),
        s.rules.len(),
        doc.tests
    );
    for (r, why) in &s.dropped {
        eprintln!("agp: not suggested: {} ({why})", r.matchers.join(", "));
    }
    for n in s.skipped.iter().chain(&s.still_required) {
        eprintln!(
            "agp: {} {} (seq {}): {}",
            n.session, n.call_id, n.seq, n.why
        );
    }
    let _ = calls;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_survive_the_trip_through_toml() {
        let input = serde_json::json!({
            "command": "printf '%s\\n' \"a b\" \\ \t done\u{1}",
            "n": 3, "f": 1.5, "flag": true, "list": ["x", 2], "nested": {"k e y": "v"},
        });
        let text = format!("input = {}\n", toml_value(&input).unwrap());
        let back: toml::Value = toml::from_str(&text).unwrap();
        let back = serde_json::to_value(&back["input"]).unwrap();
        assert_eq!(back, input);
        assert!(toml_value(&serde_json::json!({"a": null})).is_none());
    }
}
