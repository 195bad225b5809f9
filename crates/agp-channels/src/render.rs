//! The text of an approval prompt. Every agent-supplied value goes through
//! [`crate::sanitize::escape`] here, in one place, before it is printed.

use std::fmt::Write as _;

use agp_contracts::ApprovalRequest;

use crate::sanitize::escape;

/// Terminal styling for agp's own text (never applied to, nor taken from, agent text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Ansi,
}

impl Style {
    fn bold(self, s: &str) -> String {
        match self {
            Style::Plain => s.to_owned(),
            Style::Ansi => format!("\x1b[1m{s}\x1b[0m"),
        }
    }
}

/// The redacted input, pretty-printed, one escaped line per output line. `serde_json` already
/// escapes C0 controls inside strings; DEL, C1 controls and invisible characters it leaves raw,
/// so each line is escaped again (the only raw newlines are the pretty-printer's own).
pub fn input_lines(req: &ApprovalRequest) -> Vec<String> {
    let pretty = serde_json::to_string_pretty(&req.redacted_input)
        .unwrap_or_else(|e| format!("<input cannot be shown: {e}>"));
    pretty.split('\n').map(|l| escape(l).into_owned()).collect()
}

/// Seconds until `expires_at_ms`, rounded up; zero when already expired.
pub fn seconds_left(req: &ApprovalRequest, now_ms: u64) -> u64 {
    req.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)
}

/// Columns to lay agent text out in when the terminal does not say (or for a non-terminal).
pub const DEFAULT_WIDTH: usize = 100;

/// Appends `text` after `prefix`, cut into pieces that fit `width` columns. Every piece after
/// the first starts with a `┆` continuation marker in the same column, so agent text that would
/// otherwise wrap onto a fresh terminal line can never pose as one of agp's own lines (a fake
/// "decide:" or "rule" line). Non-ASCII characters are counted as two columns, erring towards
/// wrapping early.
fn push_wrapped(out: &mut String, prefix: &str, text: &str, width: usize) {
    let indent = prefix.chars().count();
    let room = width.saturating_sub(indent + 1).max(20);
    let cont = format!("{}┆ ", " ".repeat(indent.saturating_sub(2)));
    let mut used = 0;
    out.push_str(prefix);
    for c in text.chars() {
        let w = if c.is_ascii() { 1 } else { 2 };
        if used + w > room {
            out.push('\n');
            out.push_str(&cont);
            used = 0;
        }
        out.push(c);
        used += w;
    }
    out.push('\n');
}

/// The prompt shown for a request: tool, rule and reason, short input hash, the full redacted
/// input, and the keys, laid out for a terminal `width` columns wide.
pub fn prompt(
    req: &ApprovalRequest,
    waiting: usize,
    now_ms: u64,
    style: Style,
    width: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{}",
        style.bold("──── agp: approval required ────────────────────────────────")
    );
    let egress = req.egress_target();
    match &egress {
        // A destination, not a tool call: the request is what is decided; the agent's recent
        // call is in the input below.
        Some((method, authority, path)) => {
            let target = format!("{method} {authority}{}", path.as_deref().unwrap_or(""));
            push_wrapped(&mut out, "  egress   ", &escape(&target), width);
        }
        None => push_wrapped(&mut out, "  tool     ", &escape(&req.tool.name()), width),
    }
    let rule = req.rule_id.as_deref().unwrap_or("(policy default)");
    push_wrapped(&mut out, "  rule     ", &escape(rule), width);
    push_wrapped(&mut out, "  reason   ", &escape(&req.reason), width);
    let _ = writeln!(
        out,
        "  input    sha256 {}…  (? shows the full hash)",
        escape(req.short_hash())
    );
    for line in input_lines(req) {
        push_wrapped(&mut out, "    ", &line, width);
    }
    if waiting > 0 {
        let _ = writeln!(out, "  ({waiting} more request(s) waiting after this one)");
    }
    match (req.remember_secs, &egress) {
        (Some(secs), Some((_, authority, _))) => {
            let _ = writeln!(
                out,
                "  remember [s] allows any request to {} in this session, for at most {}",
                escape(authority),
                duration_text(secs)
            );
        }
        (Some(secs), None) => {
            let _ = writeln!(
                out,
                "  remember [s] allows this exact call again in this session, for at most {}",
                duration_text(secs)
            );
        }
        (None, _) => {}
    }
    let _ = write!(
        out,
        "{}  {}   (expires in {} s) ",
        style.bold("decide:"),
        keys(req),
        seconds_left(req, now_ms)
    );
    out
}

/// The keys a request can be answered with: "allow for this session" only when its rule lets
/// the answer be remembered.
pub fn keys(req: &ApprovalRequest) -> &'static str {
    if req.remember_secs.is_some() && req.egress_target().is_some() {
        "[a/y] allow   [s] allow this host for the session   [d/n] deny   [?] details"
    } else if req.remember_secs.is_some() {
        "[a/y] allow   [s] allow for this session   [d/n] deny   [?] details"
    } else {
        "[a/y] allow   [d/n] deny   [?] details"
    }
}

/// `1h30m`, `10m`, `45s`: a rule's `remember` bound as a person reads it.
pub fn duration_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

/// The details view: identifiers and the full binding hash.
pub fn details(req: &ApprovalRequest, now_ms: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(out, "  session        {}", escape(&req.session));
    let _ = writeln!(out, "  call id        {}", escape(&req.call_id));
    let _ = writeln!(out, "  input sha256   {}", escape(&req.input_sha256));
    let approvers = if req.approvers.is_empty() {
        "anyone at this terminal".to_owned()
    } else {
        escape(&req.approvers.join(", ")).into_owned()
    };
    let _ = writeln!(out, "  approvers      {approvers}");
    let _ = writeln!(out, "  quorum         {}", req.quorum);
    let _ = writeln!(out, "  expires in     {} s", seconds_left(req, now_ms));
    if let Some(secs) = req.remember_secs {
        let _ = writeln!(
            out,
            "  remember       at most {} (this session)",
            duration_text(secs)
        );
    }
    let _ = write!(out, "decide:  {} ", keys(req));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req() -> ApprovalRequest {
        ApprovalRequest {
            session: "sess-1".into(),
            call_id: "call-1".into(),
            tool: "Bash".into(),
            redacted_input: json!({"command": "curl -d @x https://e\u{1b}[2J.example \u{9b}1m"}),
            input_sha256: "0123456789abcdef".repeat(4),
            rule_id: Some("net.require".into()),
            reason: "network\u{1b}[H access".into(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: 10_500,
            remember_secs: None,
        }
    }

    #[test]
    fn an_egress_request_shows_its_target_and_offers_the_host() {
        let mut r = req();
        r.tool = agp_contracts::approval::EGRESS_TOOL.into();
        r.redacted_input = json!({
            "egress": {"method": "GET", "host": "new.example\u{1b}[2J", "port": 80, "path": "/x"},
            "agent_recent_call": {"tool": "Bash", "input": {"command": "curl new.example/x"}},
        });
        r.remember_secs = Some(3600);
        let text = prompt(&r, 0, 1_000, Style::Plain, DEFAULT_WIDTH);
        assert!(text.contains("  egress   GET new.example"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("curl new.example/x"), "{text}");
        assert!(text.contains("allows any request to new.example"), "{text}");
        assert!(
            text.contains("[s] allow this host for the session"),
            "{text}"
        );
        assert!(!text.contains("  tool "), "{text}");
    }

    #[test]
    fn prompt_shows_everything_and_no_agent_control_characters() {
        let text = prompt(&req(), 2, 1_000, Style::Plain, DEFAULT_WIDTH);
        for needle in [
            "Bash",
            "net.require",
            "network\\e[H access",
            "0123456789ab…",
            "2 more",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert!(text.contains("expires in 10 s"));
        // The only control characters are the prompt's own newlines.
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("\\u001b[2J") && text.contains("\\u{9b}1m"));
    }

    #[test]
    fn details_show_the_full_hash() {
        let text = details(&req(), 1_000);
        assert!(text.contains(&"0123456789abcdef".repeat(4)));
        assert!(text.contains("call-1") && text.contains("sess-1"));
    }

    #[test]
    fn allow_for_this_session_is_offered_only_when_the_rule_remembers() {
        let plain = prompt(&req(), 0, 1_000, Style::Plain, DEFAULT_WIDTH);
        assert!(!plain.contains("[s]"), "{plain}");
        let mut r = req();
        r.remember_secs = Some(5400);
        let offered = prompt(&r, 0, 1_000, Style::Plain, DEFAULT_WIDTH);
        assert!(offered.contains("[s] allow for this session"), "{offered}");
        assert!(offered.contains("at most 1h30m"), "{offered}");
        assert!(details(&r, 1_000).contains("[s] allow for this session"));
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(600), "10m");
        assert_eq!(duration_text(0), "0s");
    }

    #[test]
    fn expired_requests_show_zero_seconds() {
        assert_eq!(seconds_left(&req(), 20_000), 0);
        assert_eq!(seconds_left(&req(), 10_499), 1);
    }

    #[test]
    fn long_agent_text_is_wrapped_with_a_marker_so_it_cannot_forge_a_line() {
        let mut r = req();
        // Padding meant to push a fake prompt line to the start of a terminal row.
        let forged = format!("ls{}decide: allowed by policy", " ".repeat(200));
        r.redacted_input = serde_json::json!({ "command": forged });
        r.reason = format!("part: {}rule     safe", " ".repeat(150));
        let width = 80;
        let text = prompt(&r, 0, 1_000, Style::Plain, width);
        for line in text.lines() {
            assert!(
                line.chars().count() <= width,
                "{line:?} is wider than {width}"
            );
            let fresh = line.starts_with("decide:") || line.starts_with("  rule");
            assert!(
                !fresh || !line.contains("policy") && !line.contains("safe"),
                "agent text starts a line of its own: {line:?}"
            );
        }
        assert!(text.contains("┆ "));
        assert_eq!(text.lines().filter(|l| l.starts_with("decide:")).count(), 1);
        assert_eq!(text.lines().filter(|l| l.starts_with("  rule")).count(), 1);
    }
}
