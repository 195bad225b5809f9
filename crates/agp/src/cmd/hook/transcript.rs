//! Reading a Codex transcript for how a call ended (Codex's hooks do not say).

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// Bytes of a Codex transcript's tail searched for a call's completion.
const TRANSCRIPT_TAIL: u64 = 4 << 20;

/// Whether Codex's transcript records the call `id` as completed with a non-zero exit status
/// or as failed. Unknown (no transcript, no such record) is not a failure.
pub(super) fn codex_call_failed(transcript: &Path, id: &str) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(transcript) else {
        return false;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut text = String::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(TRANSCRIPT_TAIL)))
        .and_then(|_| f.take(TRANSCRIPT_TAIL).read_to_string(&mut text))
        .is_err()
    {
        return false;
    }
    let needle = format!("\"id\":{}", Value::String(id.to_owned()));
    text.lines()
        .rev()
        .filter(|l| l.contains(&needle) && l.contains("item_completed"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["payload"]["item"].clone())
        .find(|item| item["id"] == id)
        .is_some_and(|item| {
            item["status"] == "failed" || item["exit_code"].as_i64().is_some_and(|c| c != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codex_failures_are_read_from_its_transcript() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("rollout.jsonl");
        let line = |id: &str, code: i64, status: &str| {
            json!({"type": "event_msg", "payload": {"type": "item_completed", "item": {
                "type": "CommandExecution", "id": id, "exit_code": code, "status": status}}})
            .to_string()
        };
        std::fs::write(
            &t,
            [
                line("call_1", 0, "completed"),
                line("call_2", 2, "failed"),
                "not json \"id\":\"call_3\" item_completed".into(),
            ]
            .join("\n"),
        )
        .unwrap();
        assert!(!codex_call_failed(&t, "call_1"));
        assert!(codex_call_failed(&t, "call_2"));
        assert!(!codex_call_failed(&t, "call_3"));
        assert!(!codex_call_failed(&d.path().join("none"), "call_2"));
    }
}
