//! One sealed journal entry, parsed, with the evidence that lets anyone check it offline.

use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::source::{CheckpointInfo, Sealed};

pub struct Entry {
    pub seq: u64,
    pub kind: String,
    pub session: Option<String>,
    /// The entry's `ts` in nanoseconds since the Unix epoch.
    pub time_nanos: i128,
    /// The whole journal line, parsed.
    pub event: Value,
    /// The exact line: its RFC 8785 form is `event`, its leaf hash `leaf_hash`.
    pub line: Vec<u8>,
    pub leaf_hash: String,
    pub checkpoint: Arc<CheckpointInfo>,
}

impl Entry {
    pub fn parse(s: Sealed) -> Result<Self> {
        let event: Value = serde_json::from_slice(&s.line)
            .with_context(|| format!("entry seq {} is not JSON", s.seq))?;
        let ts = event["ts"].as_str().unwrap_or_default();
        let time_nanos = parse_time(ts)
            .with_context(|| format!("entry seq {} has no RFC 3339 time", s.seq))?
            .unix_timestamp_nanos();
        Ok(Self {
            seq: s.seq,
            kind: event["kind"].as_str().unwrap_or_default().to_string(),
            session: event["session"].as_str().map(str::to_string),
            time_nanos,
            event,
            line: s.line,
            leaf_hash: hex::encode(s.leaf),
            checkpoint: s.checkpoint,
        })
    }

    /// Entry index and RFC 6962 leaf hash (SHA-256 of 0x00 and the exact line), and the signed
    /// checkpoint whose tree holds it: with the journal's verifier key and the lines up to the
    /// checkpoint's size, `agp journal verify-proof` or any RFC 6962 verifier checks it.
    pub fn evidence(&self) -> Value {
        json!({
            "index": self.seq,
            "leaf_hash": self.leaf_hash,
            "checkpoint": {
                "origin": self.checkpoint.origin,
                "size": self.checkpoint.size,
                "root": self.checkpoint.root_base64(),
                "note": self.checkpoint.note,
            },
        })
    }

    /// The `jsonl` record: the event as journaled, with its evidence.
    pub fn jsonl(&self) -> Value {
        json!({
            "seq": self.seq,
            "ts": self.event["ts"],
            "kind": self.kind,
            "session": self.session,
            "event": self.event,
            "evidence": self.evidence(),
        })
    }
}

pub fn parse_time(ts: &str) -> Result<OffsetDateTime> {
    Ok(OffsetDateTime::parse(ts, &Rfc3339)?)
}

/// `--since`: an RFC 3339 time, or a span back from now (`90s`, `15m`, `2h`, `7d`).
pub fn parse_since(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Ok(t) = parse_time(text) {
        return Ok(t);
    }
    let bad = || {
        anyhow::anyhow!(
            "--since {text:?} is neither an RFC 3339 time (2026-01-31T09:00:00Z) nor a span \
             back from now (90s, 15m, 2h, 7d)"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let span = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => return Err(bad()),
    };
    now.checked_sub(span).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_and_spans_back_from_now() {
        let now = parse_time("2026-03-01T12:00:00Z").unwrap();
        assert_eq!(
            parse_since("2026-02-01T00:00:00.5Z", now).unwrap(),
            parse_time("2026-02-01T00:00:00.5Z").unwrap()
        );
        assert_eq!(
            parse_since("90s", now).unwrap(),
            parse_time("2026-03-01T11:58:30Z").unwrap()
        );
        assert_eq!(
            parse_since("2h", now).unwrap(),
            parse_time("2026-03-01T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("1d", now).unwrap(),
            parse_time("2026-02-28T12:00:00Z").unwrap()
        );
        for bad in ["", "h", "3w", "-2h", "yesterday", "2026-13-01T00:00:00Z"] {
            let e = parse_since(bad, now).unwrap_err().to_string();
            assert!(e.contains("--since"), "{bad}: {e}");
        }
    }
}
