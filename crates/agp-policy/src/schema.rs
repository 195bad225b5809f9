//! Tool input shapes (Claude Code's vocabulary). An input that is not what its tool takes is
//! denied before anything else looks at it.

use agp_contracts::Tool;
use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    NonEmptyStr,
    Num,
    Bool,
    Array,
}

fn field(
    obj: &Map<String, Value>,
    tool: &str,
    name: &str,
    kind: Kind,
    required: bool,
) -> Result<(), String> {
    let Some(v) = obj.get(name) else {
        return if required {
            Err(format!("{tool} input is missing `{name}`"))
        } else {
            Ok(())
        };
    };
    if !required && v.is_null() {
        return Ok(());
    }
    let ok = match kind {
        Kind::Str => v.is_string(),
        Kind::NonEmptyStr => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        Kind::Num => v.is_number(),
        Kind::Bool => v.is_boolean(),
        Kind::Array => v.is_array(),
    };
    if !ok {
        let want = match kind {
            Kind::Str => "a string",
            Kind::NonEmptyStr => "a non-empty string",
            Kind::Num => "a number",
            Kind::Bool => "true or false",
            Kind::Array => "an array",
        };
        return Err(format!(
            "{tool} input `{name}` must be {want}, got {}",
            type_name(v)
        ));
    }
    if let Some(s) = v.as_str() {
        if s.contains('\0') {
            return Err(format!("{tool} input `{name}` contains a NUL byte"));
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(s) if s.trim().is_empty() => "an empty string",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `Ok` when `input` has the shape `tool` takes; otherwise the reason to deny.
pub fn check(tool: &Tool, input: &Value) -> Result<(), String> {
    use Kind::*;
    let Some(obj) = input.as_object() else {
        return Err(format!(
            "{tool} input must be a JSON object, got {}",
            type_name(input)
        ));
    };
    let tool_name = tool.name();
    let f = |name, kind, required| field(obj, &tool_name, name, kind, required);
    match tool {
        Tool::Bash => {
            f("command", NonEmptyStr, true)?;
            f("timeout", Num, false)?;
            f("description", Str, false)?;
            f("run_in_background", Bool, false)
        }
        Tool::Read => {
            f("file_path", NonEmptyStr, true)?;
            f("offset", Num, false)?;
            f("limit", Num, false)
        }
        Tool::Write => {
            f("file_path", NonEmptyStr, true)?;
            f("content", Str, true)
        }
        Tool::Edit => {
            f("file_path", NonEmptyStr, true)?;
            f("old_string", Str, true)?;
            f("new_string", Str, true)?;
            f("replace_all", Bool, false)
        }
        Tool::MultiEdit => {
            f("file_path", NonEmptyStr, true)?;
            f("edits", Array, true)?;
            let edits = obj
                .get("edits")
                .and_then(Value::as_array)
                .map_or(&[][..], |v| v.as_slice());
            if edits.is_empty() {
                return Err("MultiEdit input `edits` must not be empty".into());
            }
            for e in edits {
                let Some(eo) = e.as_object() else {
                    return Err("MultiEdit input `edits` must hold objects".into());
                };
                field(eo, "MultiEdit edit", "old_string", Str, true)?;
                field(eo, "MultiEdit edit", "new_string", Str, true)?;
                field(eo, "MultiEdit edit", "replace_all", Bool, false)?;
            }
            Ok(())
        }
        Tool::Glob => {
            f("pattern", NonEmptyStr, true)?;
            f("path", Str, false)
        }
        Tool::Grep => {
            f("pattern", Str, true)?;
            f("path", Str, false)?;
            f("glob", Str, false)
        }
        Tool::LS => f("path", NonEmptyStr, true),
        Tool::WebFetch => {
            f("url", NonEmptyStr, true)?;
            f("prompt", Str, false)
        }
        Tool::WebSearch => f("query", NonEmptyStr, true),
        Tool::NotebookEdit => {
            f("notebook_path", NonEmptyStr, true)?;
            f("new_source", Str, false)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert!(check(&Tool::parse_name("Bash"), &json!({"command": "ls"})).is_ok());
        assert_eq!(
            check(
                &Tool::parse_name("Bash"),
                &json!({"command": ["rm", "-rf", "/"]})
            )
            .unwrap_err(),
            "Bash input `command` must be a non-empty string, got an array"
        );
        assert!(check(&Tool::parse_name("Bash"), &json!({})).is_err());
        assert!(check(&Tool::parse_name("Bash"), &json!("ls")).is_err());
        assert!(check(&Tool::parse_name("Read"), &json!({"file_path": "a\u{0}b"})).is_err());
        assert!(check(&Tool::parse_name("Write"), &json!({"file_path": "a"})).is_err());
        assert!(check(
            &Tool::parse_name("MultiEdit"),
            &json!({"file_path": "a", "edits": [{"old_string": "a"}]})
        )
        .is_err());
        assert!(check(
            &Tool::parse_name("MultiEdit"),
            &json!({"file_path": "a", "edits": [{"old_string": "a", "new_string": "b"}]})
        )
        .is_ok());
        assert!(check(&Tool::parse_name("mcp__x__y"), &json!({"anything": 1})).is_ok());
        assert!(check(&Tool::parse_name("mcp__x__y"), &json!(null)).is_err());
    }
}
