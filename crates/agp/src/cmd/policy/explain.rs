//! `agp policy explain`: the verdict for one tool call and why, part by part.

use std::path::Path;

use agp_contracts::Verdict;
use anyhow::{Context, Result};

use super::{context, load, policy_path, ExplainArgs};
use crate::exit::Exit;
use crate::home::Home;

pub(super) fn explain(home: &Home, a: &ExplainArgs) -> Result<Exit> {
    let path = policy_path(home, a.policy.as_deref())?;
    let policy = match load(&path, Exit::CannotRun)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let input: serde_json::Value =
        serde_json::from_str(&a.input).context("--input is not valid JSON")?;
    let ctx = context(home, &a.place)?;
    let cwd = match &a.cwd {
        Some(c) if c.is_absolute() => c.clone(),
        Some(c) => std::env::current_dir()
            .context("cannot determine the current directory")?
            .join(c),
        None => ctx.project_root.clone(),
    };
    let verdict = agp_policy::explain::explain_call(&policy, &ctx, &a.tool, input, Some(&cwd));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_verdict(&verdict, &path);
    }
    Ok(Exit::Ok)
}

fn print_verdict(v: &Verdict, path: &Path) {
    println!("decision: {}", v.decision);
    println!("reason:   {}", v.reason);
    println!(
        "decided by: {}",
        v.rule_id.as_deref().unwrap_or("the policy default")
    );
    if let Some(part) = &v.deciding_part {
        println!("deciding part: {part}");
    }
    if let Some(a) = &v.approval {
        let who = if a.approvers.is_empty() {
            "any approver".to_string()
        } else {
            a.approvers.join(", ")
        };
        let remember = a
            .remember_secs
            .map(|s| format!(", remembered for {s}s in the session"))
            .unwrap_or_default();
        println!("approval: {} of {who}{remember}", a.quorum);
    }
    println!("policy:   {} (sha256 {})", path.display(), v.policy_sha256);
    println!("parts:");
    for p in &v.parts {
        println!(
            "  {:<7} {}  [{}] {}",
            p.decision.as_str(),
            p.part,
            p.rule_id.as_deref().unwrap_or("default"),
            p.reason
        );
    }
}
