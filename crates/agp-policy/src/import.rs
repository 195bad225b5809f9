//! `agp policy import-claude`: Claude Code `permissions` (allow / ask / deny) → agp rules.

use serde_json::Value;

use crate::matcher::Matcher;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("settings are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("settings have no `permissions` object")]
    NoPermissions,
    #[error("`permissions.{0}` must be a list of strings")]
    NotAList(&'static str),
    #[error("the converted policy does not load (this is a bug): {0}")]
    Invalid(String),
}

/// The result of an import: TOML text, and the entries that could not be converted.
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub skipped: Vec<(String, String)>,
    pub rules: usize,
}

fn quote(s: &str) -> String {
    // JSON string syntax is a subset of TOML basic strings for everything serde_json emits.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Converts Claude Code settings JSON text.
pub fn import_claude(settings: &str, source_name: &str) -> Result<Imported, ImportError> {
    let v: Value = serde_json::from_str(settings)?;
    let perms = v
        .get("permissions")
        .and_then(Value::as_object)
        .ok_or(ImportError::NoPermissions)?;
    let mut out = String::new();
    out.push_str(&format!(
        "# Imported from Claude Code permissions in {source_name} by `agp policy import-claude`.\n\
         # Claude `deny` → agp deny, `ask` → require, `allow` → allow. agp judges every part of a\n\
         # shell command and runs its built-in guards on top of these rules.\n\
         # Note: in Claude Code `/path` is relative to the settings file; in agp it is the project root.\n\nversion = 1\ndefault = \"require\"\n"
    ));
    let mut skipped = Vec::new();
    let mut rules = 0;
    for (key, effect, id) in [
        ("deny", "deny", "claude-deny"),
        ("ask", "require", "claude-ask"),
        ("allow", "allow", "claude-allow"),
    ] {
        let Some(list) = perms.get(key) else { continue };
        let Some(items) = list.as_array() else {
            return Err(ImportError::NotAList(key));
        };
        let mut matchers = Vec::new();
        for item in items {
            let Some(s) = item.as_str() else {
                return Err(ImportError::NotAList(key));
            };
            match Matcher::parse(s) {
                Ok(_) => {
                    if !matchers.contains(&s) {
                        matchers.push(s);
                    }
                }
                Err(e) => skipped.push((s.to_string(), e)),
            }
        }
        if matchers.is_empty() {
            continue;
        }
        rules += 1;
        out.push_str(&format!(
            "\n[[rule]]\nid = \"{id}\"\neffect = \"{effect}\"\nreason = {}\nmatch = [\n",
            quote(&format!("Claude Code permissions.{key}"))
        ));
        for m in matchers {
            out.push_str(&format!("  {},\n", quote(m)));
        }
        out.push_str("]\n");
    }
    if !skipped.is_empty() {
        out.push_str("\n# Not converted:\n");
        for (s, why) in &skipped {
            out.push_str(&format!("#   {} — {}\n", s.replace('\n', " "), why));
        }
    }
    crate::file::Policy::from_str(&out, "imported policy")
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    Ok(Imported {
        toml: out,
        skipped,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_loads() {
        let settings = r#"{"permissions": {
            "allow": ["Bash(npm run test:*)", "Read(~/.zshrc)", "WebFetch(domain:docs.rs)", "mcp__github"],
            "ask": ["Bash(git push:*)"],
            "deny": ["Read(./.env)", "Read(./secrets/**)", "Bash(curl:*)", "Weird(\"x)"]
        }}"#;
        let imported = import_claude(settings, "settings.json").unwrap();
        assert_eq!(imported.rules, 3);
        assert_eq!(imported.skipped.len(), 1);
        let p = crate::file::Policy::from_str(&imported.toml, "x").unwrap();
        assert_eq!(p.rules()[0].id, "claude-deny");
        assert_eq!(p.rules()[0].matchers.len(), 3);
        assert_eq!(p.rules()[2].matchers[0].source, "Bash(npm run test:*)");
        assert!(imported.toml.contains("# Not converted:"));
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(matches!(
            import_claude("{}", "s"),
            Err(ImportError::NoPermissions)
        ));
        assert!(matches!(
            import_claude("{\"permissions\": {\"allow\": \"Bash\"}}", "s"),
            Err(ImportError::NotAList("allow"))
        ));
        assert!(import_claude("not json", "s").is_err());
    }
}
