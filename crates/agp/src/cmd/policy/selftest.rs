//! `agp policy test`: run the policy's own [[test]] cases.

use std::path::Path;

use anyhow::Result;

use super::{context, load_as, Place};
use crate::exit::Exit;
use crate::home::Home;

pub(super) fn test(home: &Home, path: &Path, place: &Place, json: bool) -> Result<Exit> {
    let policy = match load_as(path, Exit::Bad, json)? {
        Ok(p) => p,
        Err(exit) => return Ok(exit),
    };
    let ctx = context(home, place)?;
    let outcomes = agp_policy::selftest::run_tests(&policy, &ctx);
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    if json {
        let out = serde_json::json!({
            "file": path,
            "ok": failed == 0,
            "passed": outcomes.len() - failed,
            "failed": failed,
            "tests": outcomes.iter().map(|o| serde_json::json!({
                "name": o.test.name,
                "line": o.test.location.line,
                "decision": o.verdict.decision.to_string(),
                "ok": o.failure.is_none(),
                "failure": o.failure,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if failed > 0 { Exit::Bad } else { Exit::Ok });
    }
    if outcomes.is_empty() {
        println!("{}: no [[test]] cases", path.display());
        return Ok(Exit::Ok);
    }
    for o in &outcomes {
        match &o.failure {
            None => println!("ok    {} ({})", o.test.name, o.verdict.decision),
            Some(why) => {
                println!(
                    "FAIL  {} ({}:{}): {why}",
                    o.test.name,
                    path.display(),
                    o.test.location.line
                );
            }
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    Ok(if failed > 0 { Exit::Bad } else { Exit::Ok })
}
