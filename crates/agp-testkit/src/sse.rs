//! Server-Sent Event streams in the two wire formats.

use serde_json::{json, Value};

use crate::{anthropic_tool, responses_tool, Turn};

/// A stream of `events`, each named after its `type`.
fn stream(events: &[Value]) -> Vec<u8> {
    let mut out = String::new();
    for data in events {
        out.push_str("event: ");
        out.push_str(data["type"].as_str().unwrap_or_default());
        out.push_str("\ndata: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    }
    out.into_bytes()
}

/// The text a turn answers with (a tool turn the API cannot express gets a placeholder).
fn text_of(turn: &Turn) -> &str {
    match turn {
        Turn::Text(t) => t.as_str(),
        _ => "(no such turn for this API)",
    }
}

/// Anthropic Messages stream: message_start, one content block (start, delta, stop),
/// message_delta with the stop reason, message_stop.
pub(crate) fn anthropic(turn: &Turn, id: u64) -> Vec<u8> {
    let start = json!({"type": "message_start", "message": {
        "id": format!("msg_fake_{id}"), "type": "message", "role": "assistant",
        "model": "claude-fake", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 1}}});
    let (block, delta, stop_reason) = if let Some((name, input)) = anthropic_tool(turn) {
        (
            json!({"type": "tool_use", "id": format!("toolu_fake_{id}"), "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            "tool_use",
        )
    } else {
        let text = text_of(turn);
        (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
            "end_turn",
        )
    };
    stream(&[
        start,
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
        json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
        json!({"type": "message_stop"}),
    ])
}

/// OpenAI Responses stream: response.created, the output item (added, done),
/// response.completed with usage.
pub(crate) fn responses(turn: &Turn, id: u64) -> Vec<u8> {
    let item = if let Some((name, input)) = responses_tool(turn) {
        json!({
    "type": "function_call", "id": format!("fc_fake_{id}"),
    "call_id": format!("call_fake_{id}"), "name": name,
    "arguments": input.to_string(), "status": "completed"})
    } else {
        let text = text_of(turn);
        json!({
            "type": "message", "id": format!("msg_fake_{id}"), "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let response = |status: &str, output: Value| {
        json!({"id": format!("resp_fake_{id}"), "object": "response", "status": status,
               "model": "gpt-fake", "output": output})
    };
    let mut done = response("completed", json!([item]));
    done["usage"] = json!({
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15});
    stream(&[
        json!({"type": "response.created", "response": response("in_progress", json!([]))}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.completed", "response": done}),
    ])
}
