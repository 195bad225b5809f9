//! The scripted intendant's script: tool calls in Claude Code's tool vocabulary.
//!
//! ```yaml
//! calls:
//!   - tool: Bash
//!     input: { command: "ls -la", description: "list the repo" }
//!     expect: allow            # optional self-check: allow | deny | approved
//!   - tool: Write
//!     input: { file_path: notes.txt, content: "hello\n" }
//! ```
//!
//! The document is either a mapping with `calls` or a bare list of calls, in YAML or JSON
//! (chosen by the file extension; `.json` is JSON, anything else YAML, and JSON is valid YAML).
//! Relative `file_path`/`path` values are resolved against the repository and `~/` against the
//! home directory, as a real agent sends absolute paths. Every problem is reported with the
//! file, the call's number (1-based) and what is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod tool;

pub use tool::{
    resolve_path, BashInput, EditInput, GlobInput, GrepInput, ReadInput, Tool, WriteInput,
};
use tool::{validate, TOOLS};

/// A parsed, validated script.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub calls: Vec<ScriptCall>,
}

/// One call of the script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptCall {
    /// 1-based position in the script.
    pub index: usize,
    /// Optional label shown in the output.
    pub name: Option<String>,
    pub tool: Tool,
    pub expect: Option<Expect>,
}

/// The decision the script expects, for the demo's own self-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Allowed by policy without asking anyone.
    Allow,
    /// Denied, by policy, a guard, an approver, a timeout or a missing approver.
    Deny,
    /// Allowed after an approver granted it.
    Approved,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Approved => "approved",
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A script that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script {path}: {message}")]
    Read { path: String, message: String },
    #[error("script {path}: {message}")]
    Document { path: String, message: String },
    #[error("script {path}: call {index}{tool}: {message}")]
    Call {
        path: String,
        /// 1-based.
        index: usize,
        /// ` (Bash)` when the tool is known, else empty.
        tool: String,
        message: String,
    },
}

/// Fields every call may carry besides the tool's own.
const CALL_KEYS: [&str; 4] = ["tool", "input", "expect", "name"];

impl Script {
    /// Reads and validates the script at `path`.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScriptError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`; `path` names the source in errors and picks the syntax.
    pub fn parse(path: &Path, text: &str) -> Result<Script, ScriptError> {
        let shown = path.display().to_string();
        let doc_err = |message: String| ScriptError::Document {
            path: shown.clone(),
            message,
        };
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let doc: Value = if is_json {
            serde_json::from_str(text).map_err(|e| doc_err(format!("invalid JSON: {e}")))?
        } else {
            serde_norway::from_str(text).map_err(|e| doc_err(format!("invalid YAML: {e}")))?
        };
        let items = match doc {
            Value::Array(items) => items,
            Value::Object(mut map) => {
                if let Some(key) = map.keys().find(|k| k.as_str() != "calls") {
                    return Err(doc_err(format!(
                        "unknown top-level key {key:?} (expected only \"calls\")"
                    )));
                }
                match map.remove("calls") {
                    Some(Value::Array(items)) => items,
                    Some(_) => return Err(doc_err("\"calls\" must be a list".into())),
                    None => return Err(doc_err("missing \"calls\"".into())),
                }
            }
            Value::Null => return Err(doc_err("the script is empty".into())),
            _ => {
                return Err(doc_err(
                    "expected a list of calls, or a mapping with \"calls\"".into(),
                ))
            }
        };
        if items.is_empty() {
            return Err(doc_err("the script has no calls".into()));
        }
        let calls = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| parse_call(&shown, i + 1, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Script {
            path: path.to_owned(),
            calls,
        })
    }
}

fn parse_call(path: &str, index: usize, item: Value) -> Result<ScriptCall, ScriptError> {
    let fail = |tool: Option<&str>, message: String| ScriptError::Call {
        path: path.to_owned(),
        index,
        tool: tool.map(|t| format!(" ({t})")).unwrap_or_default(),
        message,
    };
    let Value::Object(mut map) = item else {
        return Err(fail(
            None,
            "a call must be a mapping with \"tool\" and \"input\"".into(),
        ));
    };
    let tool_name = match map.get("tool") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(fail(None, "\"tool\" must be a string".into())),
        None => return Err(fail(None, "missing \"tool\"".into())),
    };
    let tool = Some(tool_name.as_str());
    if !TOOLS.contains(&tool_name.as_str()) {
        return Err(fail(
            None,
            format!(
                "unknown tool {tool_name:?} (the scripted intendant speaks {})",
                TOOLS.join(", ")
            ),
        ));
    }
    if let Some(key) = map.keys().find(|k| !CALL_KEYS.contains(&k.as_str())) {
        return Err(fail(
            tool,
            format!("unknown key {key:?} (a call has tool, input, expect, name)"),
        ));
    }
    let name = match map.remove("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(fail(tool, "\"name\" must be a string".into())),
    };
    let expect = match map.remove("expect") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value::<Expect>(v).map_err(|_| {
            fail(
                tool,
                "\"expect\" must be one of allow, deny, approved".into(),
            )
        })?),
    };
    let input = match map.remove("input") {
        Some(Value::Object(m)) => Value::Object(m),
        Some(_) => return Err(fail(tool, "\"input\" must be a mapping".into())),
        None => return Err(fail(tool, "missing \"input\"".into())),
    };
    let mut tagged = Map::new();
    tagged.insert("tool".into(), Value::String(tool_name.clone()));
    tagged.insert("input".into(), input);
    let parsed: Tool = serde_json::from_value(Value::Object(tagged))
        .map_err(|e| fail(tool, format!("invalid input: {e}")))?;
    validate(&parsed).map_err(|m| fail(tool, m))?;
    // The daemon binds approvals to the canonical form of the input; refuse here, with the
    // call's number, what it would refuse later (integers beyond 2^53).
    let input = parsed.resolved_input(Path::new("/"), Path::new("/"));
    agp_contracts::canonical::to_canonical_string(&input)
        .map_err(|e| fail(tool, format!("input cannot be hashed: {e}")))?;
    Ok(ScriptCall {
        index,
        name,
        tool: parsed,
        expect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(name: &str, text: &str) -> Result<Script, ScriptError> {
        Script::parse(Path::new(name), text)
    }

    #[test]
    fn parses_every_tool_from_yaml() {
        let script = parse(
            "demo.yaml",
            r#"
calls:
  - tool: Bash
    input: {command: "ls -la", description: list}
    expect: allow
  - tool: Read
    input: {file_path: README.md}
  - tool: Write
    input: {file_path: notes/todo.txt, content: "x\n"}
    expect: deny
    name: write a note
  - tool: Edit
    input: {file_path: src/lib.rs, old_string: a, new_string: b, replace_all: true}
    expect: approved
  - tool: Glob
    input: {pattern: "**/*.rs", path: src}
  - tool: Grep
    input: {pattern: "fn main", path: ., "-i": true, output_mode: content, "-C": 2}
"#,
        )
        .unwrap();
        assert_eq!(script.calls.len(), 6);
        assert_eq!(script.calls[0].expect, Some(Expect::Allow));
        assert_eq!(script.calls[2].name.as_deref(), Some("write a note"));
        assert_eq!(script.calls[3].expect, Some(Expect::Approved));
        assert_eq!(script.calls[5].index, 6);
        let grep = script.calls[5]
            .tool
            .resolved_input(Path::new("/repo"), Path::new("/home/u"));
        assert_eq!(
            grep,
            json!({"pattern": "fn main", "path": "/repo", "-i": true, "output_mode": "content", "-C": 2})
        );
    }

    #[test]
    fn json_and_bare_lists_work_too() {
        let script = parse(
            "demo.json",
            r#"[{"tool": "Bash", "input": {"command": "true"}}]"#,
        )
        .unwrap();
        assert_eq!(script.calls[0].tool.name(), "Bash");
        assert!(parse("x.yaml", "- tool: Read\n  input: {file_path: a}\n").is_ok());
    }

    #[test]
    fn every_script_tool_is_sent_as_the_shared_tool_of_the_same_name() {
        let inputs = [
            ("Bash", r#"{"command": "true"}"#),
            ("Read", r#"{"file_path": "a"}"#),
            ("Write", r#"{"file_path": "a", "content": ""}"#),
            (
                "Edit",
                r#"{"file_path": "a", "old_string": "x", "new_string": "y"}"#,
            ),
            ("Glob", r#"{"pattern": "*"}"#),
            ("Grep", r#"{"pattern": "x"}"#),
        ];
        assert_eq!(inputs.map(|(n, _)| n), TOOLS);
        for (name, input) in inputs {
            let calls = format!(r#"[{{"tool": "{name}", "input": {input}}}]"#);
            let script = parse("t.json", &calls).unwrap();
            let tool = &script.calls[0].tool;
            assert_eq!(tool.wire(), agp_contracts::Tool::parse_name(name));
            assert_eq!(tool.wire().to_string(), tool.name());
        }
    }

    fn call_error(text: &str) -> String {
        parse("s.yaml", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_call_and_the_problem() {
        let two = "calls:\n  - tool: Bash\n    input: {command: ls}\n  - ";
        let cases = [
            (
                format!("{two}tool: Rm\n    input: {{}}"),
                "call 2: unknown tool \"Rm\"",
            ),
            (
                format!("{two}tool: Bash\n    input: {{}}"),
                "call 2 (Bash): invalid input: missing field `command`",
            ),
            (
                format!("{two}tool: Bash\n    input: {{command: ls, cmd: x}}"),
                "call 2 (Bash): invalid input: unknown field `cmd`",
            ),
            (
                format!("{two}tool: Bash\n    input: {{command: \"  \"}}"),
                "call 2 (Bash): \"command\" must not be empty",
            ),
            (
                format!(
                    "{two}tool: Edit\n    input: {{file_path: a, old_string: x, new_string: x}}"
                ),
                "call 2 (Edit): \"old_string\" and \"new_string\" must differ",
            ),
            (
                format!("{two}tool: Bash\n    input: {{command: ls}}\n    expect: maybe"),
                "call 2 (Bash): \"expect\" must be one of",
            ),
            (
                format!("{two}tool: Bash\n    input: {{command: ls}}\n    expct: deny"),
                "call 2 (Bash): unknown key \"expct\"",
            ),
            (
                format!("{two}tool: Bash\n    input: ls"),
                "call 2 (Bash): \"input\" must be a mapping",
            ),
            (
                format!("{two}tool: Read"),
                "call 2 (Read): missing \"input\"",
            ),
            (
                format!("{two}just a string"),
                "call 2: a call must be a mapping",
            ),
            (
                format!("{two}tool: Grep\n    input: {{pattern: x, output_mode: lines}}"),
                "call 2 (Grep): \"output_mode\"",
            ),
            (
                format!("{two}tool: Read\n    input: {{file_path: a, limit: -1}}"),
                "call 2 (Read): invalid input",
            ),
            (
                format!("{two}tool: Read\n    input: {{file_path: a, limit: 1.5}}"),
                "call 2 (Read): invalid input",
            ),
            (
                format!("{two}tool: Bash\n    input: {{command: ls, timeout: 18014398509481984}}"),
                "call 2 (Bash): input cannot be hashed",
            ),
        ];
        for (text, want) in cases {
            let got = call_error(&text);
            assert!(got.starts_with("script s.yaml: "), "{got}");
            assert!(got.contains(want), "want {want:?} in {got:?}");
        }
    }

    #[test]
    fn document_errors_are_reported() {
        assert!(call_error("").contains("empty"));
        assert!(call_error("calls: []").contains("no calls"));
        assert!(call_error("calls: {}").contains("must be a list"));
        assert!(call_error("steps: []").contains("unknown top-level key \"steps\""));
        assert!(call_error("calls: [").contains("invalid YAML"));
        assert!(parse("s.json", "{")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        let missing = Script::load(Path::new("/nonexistent/agp-script.yaml")).unwrap_err();
        assert!(matches!(missing, ScriptError::Read { .. }));
    }
}
