//! `agp policy check`: parse and lint a policy.

use std::path::Path;

use agp_policy::lint::Severity;
use agp_policy::Policy;
use anyhow::Result;

use super::{finding_json, load_as};
use crate::exit::Exit;

/// The docs promise a policy that defaults to require or deny: a call no rule foresaw must never
/// run unasked.
fn default_allow(path: &Path, policy: &Policy) -> Option<agp_policy::Diagnostic> {
    if policy.default_decision() != agp_contracts::Decision::Allow {
        return None;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (line, col) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let t = l.trim_start();
            (t.starts_with("default") && t.contains('=')).then(|| (i + 1, l.len() - t.len() + 1))
        })
        .unwrap_or((1, 1));
    Some(agp_policy::Diagnostic {
        source: path.display().to_string(),
        location: agp_policy::file::Location { line, col },
        message: "default = \"allow\" lets every call no rule matches run without asking; \
                  agp policies default to \"require\" (ask a human) or \"deny\": set \
                  default = \"require\""
            .into(),
    })
}

pub(super) fn check(path: &Path, json: bool) -> Result<Exit> {
    let policy = match load_as(path, Exit::Bad, json)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let mut findings: Vec<(Severity, agp_policy::Diagnostic)> = agp_policy::lint::lint(&policy)
        .into_iter()
        .map(|f| (f.severity, f.diagnostic))
        .collect();
    if let Some(d) = default_allow(path, &policy) {
        findings.insert(0, (Severity::Error, d));
    }
    let errors = findings
        .iter()
        .filter(|(s, _)| *s == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let level = |s: &Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    if json {
        let out = serde_json::json!({
            "file": path,
            "ok": errors == 0,
            "valid": true,
            "rules": policy.rules().len(),
            "tests": policy.tests().len(),
            "default": policy.default_decision().to_string(),
            "sha256": policy.sha256(),
            "errors": errors,
            "warnings": warnings,
            "findings": findings.iter().map(|(s, d)| finding_json(level(s), d)).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if errors > 0 { Exit::Bad } else { Exit::Ok });
    }
    for (severity, d) in &findings {
        eprintln!("agp: {}: {d}", level(severity));
    }
    if errors > 0 {
        eprintln!(
            "agp: error: {}: {errors} error(s), {warnings} warning(s)",
            path.display()
        );
        return Ok(Exit::Bad);
    }
    println!(
        "{}: ok ({} rules, {} tests, default {}, {warnings} warning(s)); sha256 {}",
        path.display(),
        policy.rules().len(),
        policy.tests().len(),
        policy.default_decision(),
        policy.sha256()
    );
    Ok(Exit::Ok)
}
