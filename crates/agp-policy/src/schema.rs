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

/// One field of a tool's input: name, kind, required.
type Field = (&'static str, Kind, bool);

/// The fields of one `MultiEdit` edit.
const EDIT: &[Field] = &[
    ("old_string", Kind::Str, true),
    ("new_string", Kind::Str, true),
    ("replace_all", Kind::Bool, false),
];

/// The fields each tool takes, in the order they are checked (the first problem is the
/// reason given). Tools not listed take any object.
fn fields(tool: &Tool) -> &'static [Field] {
    use Kind::*;
    match tool {
        Tool::Bash => &[
            ("command", NonEmptyStr, true),
            ("timeout", Num, false),
            ("description", Str, false),
            ("run_in_background", Bool, false),
        ],
        Tool::Read => &[
            ("file_path", NonEmptyStr, true),
            ("offset", Num, false),
            ("limit", Num, false),
        ],
        Tool::Write => &[("file_path", NonEmptyStr, true), ("content", Str, true)],
        Tool::Edit => &[
            ("file_path", NonEmptyStr, true),
            ("old_string", Str, true),
            ("new_string", Str, true),
            ("replace_all", Bool, false),
        ],
        Tool::MultiEdit => &[("file_path", NonEmptyStr, true), ("edits", Array, true)],
        Tool::Glob => &[("pattern", NonEmptyStr, true), ("path", Str, false)],
        Tool::Grep => &[
            ("pattern", Str, true),
            ("path", Str, false),
            ("glob", Str, false),
        ],
        Tool::LS => &[("path", NonEmptyStr, true)],
        Tool::WebFetch => &[("url", NonEmptyStr, true), ("prompt", Str, false)],
        Tool::WebSearch => &[("query", NonEmptyStr, true)],
        Tool::NotebookEdit => &[
            ("notebook_path", NonEmptyStr, true),
            ("new_source", Str, false),
        ],
        _ => &[],
    }
}

/// `Ok` when `input` has the shape `tool` takes; otherwise the reason to deny.
pub fn check(tool: &Tool, input: &Value) -> Result<(), String> {
    let Some(obj) = input.as_object() else {
        return Err(format!(
            "{tool} input must be a JSON object, got {}",
            type_name(input)
        ));
    };
    let tool_name = tool.name();
    for &(name, kind, required) in fields(tool) {
        field(obj, &tool_name, name, kind, required)?;
    }
    if *tool == Tool::MultiEdit {
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
            for &(name, kind, required) in EDIT {
                field(eo, "MultiEdit edit", name, kind, required)?;
            }
        }
    }
    Ok(())
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
