//! `agp policy import-claude`: Claude Code permissions as agp rules.

use std::path::Path;

use anyhow::{Context, Result};

use crate::exit::Exit;

pub(super) fn import(settings: &Path, output: Option<&Path>, json: bool) -> Result<Exit> {
    let text = std::fs::read_to_string(settings)
        .with_context(|| format!("cannot read {}", settings.display()))?;
    let imported = agp_policy::import::import_claude(&text, &settings.display().to_string())
        .with_context(|| format!("cannot import {}", settings.display()))?;
    if let Some(out) = output {
        crate::cmd::init::write_file(out, &imported.toml, false)?;
    }
    if json {
        let doc = serde_json::json!({
            "settings": settings,
            "output": output,
            "rules": imported.rules,
            "toml": imported.toml,
            "skipped": imported.skipped.iter()
                .map(|(entry, why)| serde_json::json!({"entry": entry, "why": why}))
                .collect::<Vec<_>>(),
            "warnings": imported.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Exit::Ok);
    }
    for (entry, why) in &imported.skipped {
        eprintln!("agp: warning: not converted: {entry}: {why}");
    }
    for warning in &imported.warnings {
        eprintln!("agp: warning: {warning}");
    }
    if let Some(out) = output {
        eprintln!(
            "wrote {} rule(s) to {} (check it with `agp policy check {}`)",
            imported.rules,
            out.display(),
            out.display()
        );
    } else {
        print!("{}", imported.toml);
    }
    Ok(Exit::Ok)
}
