//! The tool result as the harness reports it, reduced to what the journal records.

use serde_json::Value;

/// The tool's output as text (the harness's `tool_response`: a string or an object), and whether
/// the tool reported success.
pub(super) fn tool_output(response: &Value) -> (bool, String) {
    let text = match response {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let failed = response["is_error"] == true
        || response["interrupted"] == true
        || response["success"] == false
        || response["exit_code"].as_i64().is_some_and(|c| c != 0)
        || response["exitCode"].as_i64().is_some_and(|c| c != 0);
    (!failed, text)
}

/// What a PostToolUseFailure event says went wrong (`error`, else the tool's response).
pub(super) fn failure_output(input: &Value) -> String {
    match (&input["error"], &input["tool_response"]) {
        (Value::String(e), _) => e.clone(),
        (Value::Null, Value::Null) => String::new(),
        (Value::Null, r) => tool_output(r).1,
        (e, _) => e.to_string(),
    }
}

pub(super) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_are_truncated_on_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert!(!tool_output(&json!({"interrupted": true})).0);
        assert!(!tool_output(&json!({"exit_code": 1})).0);
        assert!(tool_output(&json!("plain")).0);
    }
}
