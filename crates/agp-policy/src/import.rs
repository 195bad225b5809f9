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

/// The result of an import: TOML text, the entries that could not be converted, and settings
/// that were changed or dropped on the way (each one line for the user).
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub skipped: Vec<(String, String)>,
    pub rules: usize,
    pub warnings: Vec<String>,
}

fn quote(s: &str) -> String {
    // JSON string syntax is a subset of TOML basic strings for everything serde_json emits.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// File tools that Claude Code confines to the working directories when named bare: in agp a
/// bare name would match every file on the machine.
const PROJECT_FILE_TOOLS: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];

/// One Claude list, in precedence order (deny, then ask, then allow).
struct List {
    key: &'static str,
    effect: &'static str,
    id: &'static str,
    matchers: Vec<String>,
}

/// Converts Claude Code settings JSON text.
pub fn import_claude(settings: &str, source_name: &str) -> Result<Imported, ImportError> {
    let v: Value = serde_json::from_str(settings)?;
    let perms = v
        .get("permissions")
        .and_then(Value::as_object)
        .ok_or(ImportError::NoPermissions)?;
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in perms {
        match key.as_str() {
            "allow" | "ask" | "deny" => {}
            "additionalDirectories" => warnings.push(format!(
                "permissions.additionalDirectories ({value}) not converted: agp's sandbox gives the \
                 agent only its repository; name other directories in rules with absolute \
                 paths (e.g. Read(//srv/docs/**))"
            )),
            "defaultMode" => warnings.push(format!(
                "permissions.defaultMode ({value}) not converted: agp asks or denies by its \
                 rules, and calls no rule matches require approval (default = \"require\")"
            )),
            other => warnings.push(format!(
                "permissions.{other} not converted: agp has no such setting"
            )),
        }
    }
    let mut lists = Vec::new();
    for (key, effect, id) in [
        ("deny", "deny", "claude-deny"),
        ("ask", "require", "claude-ask"),
        ("allow", "allow", "claude-allow"),
    ] {
        let Some(list) = perms.get(key) else { continue };
        let Some(items) = list.as_array() else {
            return Err(ImportError::NotAList(key));
        };
        let mut matchers: Vec<String> = Vec::new();
        for item in items {
            let Some(s) = item.as_str() else {
                return Err(ImportError::NotAList(key));
            };
            // Only an allow is narrowed: a bare deny or ask keeps covering every file.
            let s = if key == "allow" && PROJECT_FILE_TOOLS.contains(&s) {
                let scoped = format!("{s}(/**)");
                warnings.push(format!(
                    "permissions.{key}: `{s}` converted to `{scoped}`: Claude Code applies a \
                     bare `{s}` to the project only, agp would apply it to every file"
                ));
                scoped
            } else {
                s.to_owned()
            };
            match Matcher::parse(&s) {
                Ok(_) => {
                    if !matchers.contains(&s) {
                        matchers.push(s);
                    }
                }
                Err(e) => skipped.push((s, e)),
            }
        }
        lists.push(List {
            key,
            effect,
            id,
            matchers,
        });
    }
    // An entry a stricter list already covers never decides (in Claude Code either: deny wins
    // over ask over allow); `policy check` calls that an error, so such entries are left out,
    // each with a word.
    loop {
        let (out, origin) = render(&lists, &skipped, source_name);
        let policy = crate::file::Policy::from_str(&out, "imported policy")
            .map_err(|e| ImportError::Invalid(e.to_string()))?;
        let errors: Vec<_> = crate::lint::lint(&policy)
            .into_iter()
            .filter(|f| f.severity == crate::lint::Severity::Error)
            .collect();
        if errors.is_empty() {
            let rules = lists.iter().filter(|l| !l.matchers.is_empty()).count();
            return Ok(Imported {
                toml: out,
                skipped,
                rules,
                warnings,
            });
        }
        let mut removed = false;
        for f in errors {
            let Some(&(list, index)) = origin.get(&f.diagnostic.location.line) else {
                return Err(ImportError::Invalid(f.diagnostic.to_string()));
            };
            let why = lists
                .iter()
                .enumerate()
                .find(|(i, o)| {
                    *i != list && f.diagnostic.message.contains(&format!("rule `{}`", o.id))
                })
                .map_or_else(
                    || f.diagnostic.message.clone(),
                    |(_, o)| {
                        format!(
                            "permissions.{} covers it, so it would never decide (in Claude Code \
                         either: deny wins over ask over allow)",
                            o.key
                        )
                    },
                );
            let l = &mut lists[list];
            if index < l.matchers.len() {
                let m = l.matchers.remove(index);
                warnings.push(format!("permissions.{}: `{m}` left out: {why}", l.key));
                removed = true;
                // Indices after this one moved: lint again before removing more.
                break;
            }
        }
        if !removed {
            return Err(ImportError::Invalid("lint errors remain".into()));
        }
    }
}

/// The policy text, and for each line holding a matcher: which list and entry it came from.
fn render(
    lists: &[List],
    skipped: &[(String, String)],
    source_name: &str,
) -> (String, std::collections::HashMap<usize, (usize, usize)>) {
    let mut out = format!(
        "# Imported from Claude Code permissions in {source_name} by `agp policy import-claude`.\n\
         # Claude `deny` → agp deny, `ask` → require, `allow` → allow. agp judges every part of a\n\
         # shell command and runs its built-in guards on top of these rules.\n\
         # Note: in Claude Code `/path` is relative to the settings file; in agp it is the project root.\n\nversion = 1\ndefault = \"require\"\n"
    );
    let mut origin = std::collections::HashMap::new();
    for (li, l) in lists.iter().enumerate() {
        if l.matchers.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "\n[[rule]]\nid = \"{}\"\neffect = \"{}\"\nreason = {}\nmatch = [\n",
            l.id,
            l.effect,
            quote(&format!("Claude Code permissions.{}", l.key))
        ));
        for (mi, m) in l.matchers.iter().enumerate() {
            origin.insert(out.lines().count() + 1, (li, mi));
            out.push_str(&format!("  {},\n", quote(m)));
        }
        out.push_str("]\n");
    }
    if !skipped.is_empty() {
        out.push_str("\n# Not converted:\n");
        for (s, why) in skipped {
            out.push_str(&format!("#   {} — {}\n", s.replace('\n', " "), why));
        }
    }
    (out, origin)
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
    fn output_passes_lint_and_says_what_it_changed() {
        let settings = r#"{"permissions": {
            "allow": ["Edit", "Bash(ls:*)", "Bash(npm run test:*)", "Read"],
            "ask": ["Bash(npm run test:*)"],
            "deny": ["Bash(ls:*)"],
            "additionalDirectories": ["../docs"],
            "defaultMode": "acceptEdits"
        }}"#;
        let imported = import_claude(settings, "settings.json").unwrap();
        let p = crate::file::Policy::from_str(&imported.toml, "x").unwrap();
        let errors: Vec<_> = crate::lint::lint(&p)
            .into_iter()
            .filter(|f| f.severity == crate::lint::Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let allow = &p.rules().iter().find(|r| r.id == "claude-allow").unwrap();
        let sources: Vec<_> = allow.matchers.iter().map(|m| m.source.as_str()).collect();
        assert_eq!(sources, ["Edit(/**)", "Read"]);
        let w = imported.warnings.join("\n");
        assert!(w.contains("additionalDirectories"), "{w}");
        assert!(w.contains("defaultMode"), "{w}");
        assert!(w.contains("`Edit` converted to `Edit(/**)`"), "{w}");
        assert!(w.contains("`Bash(ls:*)` left out"), "{w}");
        assert!(w.contains("`Bash(npm run test:*)` left out"), "{w}");
    }

    #[test]
    fn a_bare_file_tool_is_narrowed_only_where_it_allows() {
        for (settings, kept) in [
            (r#"{"permissions": {"deny": ["Write"]}}"#, "Write"),
            (r#"{"permissions": {"ask": ["Edit"]}}"#, "Edit"),
        ] {
            let imported = import_claude(settings, "settings.json").unwrap();
            let p = crate::file::Policy::from_str(&imported.toml, "x").unwrap();
            let sources: Vec<_> = p
                .rules()
                .iter()
                .flat_map(|r| r.matchers.iter().map(|m| m.source.as_str()))
                .collect();
            assert_eq!(sources, [kept]);
            assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
        }
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
