//! Block Kit rendering of session root messages, approval messages and their final states.
//! Everything shown comes from the already-redacted request; text is escaped so an agent
//! cannot inject mentions, links or formatting into what approvers read.

use agp_contracts::events::{Event, SessionStarted};
use agp_contracts::{ApprovalOutcome, ApprovalRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const ACTION_ALLOW: &str = "agp_allow";
pub const ACTION_DENY: &str = "agp_deny";
pub const ACTION_DETAILS: &str = "agp_details";
/// "Allow for this session": only on approvals whose rule has `remember`.
pub const ACTION_ALLOW_SESSION: &str = "agp_allow_session";
/// The session root message's Stop button (the kill switch); its value is the session id.
pub const ACTION_STOP: &str = "agp_stop";

/// Slack's limit on a section's text is 3000 characters; stay below it after escaping.
const SECTION_CHARS: usize = 2800;
/// Slack allows 50 blocks in a message.
const MAX_DETAIL_SECTIONS: usize = 45;

/// What each button carries. The nonce is the binding (the record it names says which call);
/// the input hash lets a click on a stale or altered button be told apart from an unknown one.
/// Fixed size, whatever the call id, so it always fits Slack's 2000-character limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonValue {
    pub v: u8,
    pub n: String,
    pub h: String,
}

impl ButtonValue {
    /// Exactly what `serde_json::to_string` writes for this struct (a test holds it to that),
    /// spelled out so that encoding has no error case.
    pub fn encode(&self) -> String {
        format!(
            "{{\"v\":{},\"n\":{},\"h\":{}}}",
            self.v,
            Value::from(self.n.as_str()),
            Value::from(self.h.as_str())
        )
    }
    pub fn decode(s: &str) -> Option<Self> {
        serde_json::from_str::<Self>(s).ok().filter(|b| b.v == 1)
    }
}

/// Escapes Slack mrkdwn control characters (`&`, `<`, `>`): no `<!channel>`, no links.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text fit for a ``` code block: escaped, and a run of three backticks cannot close it.
fn code(s: &str) -> String {
    escape(s).replace("```", "`\u{200b}``")
}

/// Short agent-controlled fields (tool, rule, ids) clipped so a block stays within Slack's
/// limits whatever the agent sent.
fn clip(s: &str, max: usize) -> String {
    match truncate_chars(s, max) {
        (head, true) => format!("{head}…"),
        (all, false) => all.to_owned(),
    }
}

fn truncate_chars(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

pub fn pretty_input(request: &ApprovalRequest) -> String {
    serde_json::to_string_pretty(&request.redacted_input)
        .unwrap_or_else(|_| request.redacted_input.to_string())
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": Value::String(text)})
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

fn summary_blocks(request: &ApprovalRequest, preview_chars: usize) -> Vec<Value> {
    let input = pretty_input(request);
    let (shown, cut) = truncate_chars(&input, preview_chars.min(SECTION_CHARS - 100));
    let mut preview = format!("```{}```", code(shown));
    if cut {
        preview.push_str("\n_(truncated: press Details to see the whole input)_");
    }
    let rule = request
        .rule_id
        .as_deref()
        .map_or_else(|| "(none)".into(), |r| format!("`{}`", code(&clip(r, 200))));
    let headline = match request.egress_target() {
        // A destination, not a tool call: the request itself is the headline, the agent's
        // recent call (in the input below) says what it was doing.
        Some((method, authority, path)) => format!(
            "*Egress request:* `{} {}{}`\n*Reason:* {}",
            code(&clip(&method, 40)),
            code(&clip(&authority, 300)),
            code(&clip(path.as_deref().unwrap_or(""), 1000)),
            escape(&clip(&request.reason, 1000))
        ),
        None => format!(
            "*Approval needed:* `{}`\n*Rule:* {}\n*Reason:* {}",
            code(&clip(&request.tool.name(), 200)),
            rule,
            escape(&clip(&request.reason, 1000))
        ),
    };
    vec![
        section(headline),
        section(preview),
        json!({"type": "context", "elements": [mrkdwn(format!(
            "input sha256 `{}` · call `{}` · session `{}` · needs {} approval(s) · expires {}",
            code(request.short_hash()),
            code(&clip(&request.call_id, 100)),
            code(&clip(&request.session, 100)),
            request.quorum.max(1),
            format_ms(request.expires_at_ms),
        ))]}),
    ]
}

/// The message as posted: summary plus Allow / Deny / Details.
pub fn approval_blocks(
    request: &ApprovalRequest,
    nonce: &str,
    preview_chars: usize,
    votes: &[agp_contracts::Approver],
) -> Value {
    let value = ButtonValue {
        v: 1,
        n: nonce.to_owned(),
        h: request.input_sha256.clone(),
    }
    .encode();
    let mut blocks = summary_blocks(request, preview_chars);
    if !votes.is_empty() {
        blocks.push(section(format!(
            "Allowed so far ({} of {}): {}",
            votes.len(),
            request.quorum.max(1),
            names(votes)
        )));
    }
    let mut buttons = vec![button("Allow", ACTION_ALLOW, &value, Some("primary"))];
    if let Some(secs) = request.remember_secs {
        let egress = request.egress_target();
        let (what, label) = match &egress {
            Some((_, authority, _)) => (
                format!(
                    "_Allow this host for the session_: any request to `{}` is not asked about \
                     again in this session for at most {}",
                    code(&clip(authority, 300)),
                    duration_text(secs)
                ),
                "Allow this host for the session",
            ),
            None => (
                format!(
                    "_Allow for this session_: the same call (tool, directory, input, rule) is \
                     not asked again in this session for at most {}",
                    duration_text(secs)
                ),
                "Allow for this session",
            ),
        };
        blocks.push(json!({"type": "context", "elements": [mrkdwn(what)]}));
        buttons.push(button(label, ACTION_ALLOW_SESSION, &value, None));
    }
    buttons.push(button("Deny", ACTION_DENY, &value, Some("danger")));
    buttons.push(button("Details", ACTION_DETAILS, &value, None));
    blocks.push(json!({
        "type": "actions",
        "block_id": "agp_decision",
        "elements": buttons,
    }));
    Value::Array(blocks)
}

fn button(text: &str, action_id: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

/// `1h30m`, `10m`, `45s`.
fn duration_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

fn names(votes: &[agp_contracts::Approver]) -> String {
    votes
        .iter()
        .map(|a| format!("{} (<@{}>)", escape(&a.name), escape(&a.id)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line stating the outcome, also used as the notification text.
pub fn outcome_text(outcome: &ApprovalOutcome, at_ms: u64) -> String {
    let at = format_ms(at_ms);
    match outcome {
        ApprovalOutcome::Granted { by } => {
            format!(":white_check_mark: *Allowed* by {} at {at}", names(by))
        }
        ApprovalOutcome::GrantedForSession { by } => format!(
            ":white_check_mark: *Allowed for this session* by {} at {at}: the same call is not \
             asked again in this session, within the rule's bound",
            names(by)
        ),
        ApprovalOutcome::Denied { by, .. } => format!(
            ":no_entry: *Denied* by {} at {at}",
            names(std::slice::from_ref(by))
        ),
        ApprovalOutcome::Timeout => {
            format!(":hourglass: *Timed out* at {at}: nobody decided in time, the call was denied")
        }
        ApprovalOutcome::Unavailable { reason } => {
            format!(
                ":warning: *Not decided* ({}): the call was denied",
                escape(reason)
            )
        }
    }
}

/// The final message: summary and outcome, no buttons.
pub fn decided_blocks(
    request: &ApprovalRequest,
    outcome: &ApprovalOutcome,
    at_ms: u64,
    preview_chars: usize,
) -> Value {
    let mut blocks = summary_blocks(request, preview_chars);
    blocks.push(section(outcome_text(outcome, at_ms)));
    Value::Array(blocks)
}

/// The whole redacted input, split over as many sections as needed (ephemeral "Details").
pub fn details_blocks(request: &ApprovalRequest) -> Value {
    let input = pretty_input(request);
    let mut blocks = vec![section(format!(
        "*Full input of* `{}` (call `{}`, sha256 `{}`):",
        code(&clip(&request.tool.name(), 200)),
        code(&clip(&request.call_id, 100)),
        code(&request.input_sha256)
    ))];
    let chars: Vec<char> = input.chars().collect();
    // Escaping can grow the text; chunk conservatively so each section stays under the limit.
    let chunk = SECTION_CHARS / 5;
    let mut chunks = chars.chunks(chunk);
    for part in chunks.by_ref().take(MAX_DETAIL_SECTIONS) {
        let s: String = part.iter().collect();
        blocks.push(section(format!("```{}```", code(&s))));
    }
    if chunks.next().is_some() {
        blocks.push(section(format!(
            "_(input too long for Slack: first {} of {} characters shown)_",
            chunk * MAX_DETAIL_SECTIONS,
            chars.len()
        )));
    }
    Value::Array(blocks)
}

/// The root message of a session, from the `session.started` projection body (a body that
/// is not one shows every field as unknown).
pub fn session_root_blocks(session: &str, body: &Value) -> (String, Value) {
    let started = SessionStarted::from_body(body).ok();
    let field = |get: fn(&SessionStarted) -> Option<String>| {
        started
            .as_ref()
            .and_then(get)
            .map_or_else(|| "(unknown)".into(), |v| escape(&v))
    };
    let text = format!("agp session {}", escape(session));
    let blocks = json!([
        section(format!(":robot_face: *agp session* `{}`", code(session))),
        {"type": "section", "fields": [
            mrkdwn(format!("*Agent:*\n{}", field(|s| Some(s.intendant.clone())))),
            mrkdwn(format!("*Repo:*\n{}", field(|s| Some(s.repo.to_string_lossy().into_owned())))),
            mrkdwn(format!("*Task:*\n{}", field(|s| s.task.clone()))),
            mrkdwn(format!("*Started by:*\n{}", field(|s| s.started_by.clone()))),
        ]},
        {"type": "actions", "block_id": "agp_session", "elements": [
            button("Stop session", ACTION_STOP, session, Some("danger")),
        ]},
    ]);
    (text, blocks)
}

/// A projected event (session end, denial, ...) as a thread reply.
pub fn projection_blocks(kind: &str, body: &Value) -> (String, Value) {
    let text = format!("agp: {}", escape(kind));
    let mut lines = Vec::new();
    if let Some(obj) = body.as_object() {
        for (k, v) in obj.iter().take(20) {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let (shown, cut) = truncate_chars(&shown, 300);
            lines.push(format!(
                "*{}:* {}{}",
                escape(k),
                escape(shown),
                if cut { "…" } else { "" }
            ));
        }
    }
    let mut blocks = vec![section(format!("*{}*", escape(kind)))];
    if !lines.is_empty() {
        let joined = lines.join("\n");
        let (joined, _) = truncate_chars(&joined, SECTION_CHARS);
        blocks.push(section(joined.to_owned()));
    }
    (text, Value::Array(blocks))
}

/// UTC time for people: `2026-11-25 03:17:36 UTC`.
pub fn format_ms(ms: u64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_value_encodes_as_serde_writes_it() {
        for (n, h) in [("n-1", "ab12"), ("", ""), ("quote\" back\\ \u{1} é", "\n")] {
            let b = ButtonValue {
                v: 1,
                n: n.into(),
                h: h.into(),
            };
            assert_eq!(b.encode(), serde_json::to_string(&b).unwrap());
            assert_eq!(ButtonValue::decode(&b.encode()), Some(b));
        }
    }

    fn req(input: Value) -> ApprovalRequest {
        ApprovalRequest {
            session: "s1".into(),
            call_id: "c1".into(),
            tool: "Bash".into(),
            redacted_input: input,
            input_sha256: "0123456789abcdef".repeat(4),
            rule_id: Some("shell.rm".into()),
            reason: "deletes <!channel> files".into(),
            approvers: vec![],
            quorum: 1,
            expires_at_ms: 1_700_000_000_000,
            remember_secs: None,
        }
    }

    fn all_text(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn approval_has_three_styled_buttons_bound_by_value() {
        let b = approval_blocks(&req(json!({"command": "ls"})), "nonce1", 600, &[]);
        let actions = b.as_array().unwrap().last().unwrap();
        let els = actions["elements"].as_array().unwrap();
        assert_eq!(els.len(), 3);
        assert_eq!(els[0]["style"], "primary");
        assert_eq!(els[1]["style"], "danger");
        assert!(els[2].get("style").is_none());
        let v = ButtonValue::decode(els[0]["value"].as_str().unwrap()).unwrap();
        assert_eq!(v.n, "nonce1");
        assert_eq!(v.h, "0123456789abcdef".repeat(4));
        assert!(all_text(&b).contains("0123456789ab"));
        assert!(all_text(&b).contains("shell.rm"));
    }

    #[test]
    fn an_egress_request_shows_the_request_and_offers_the_host_for_the_session() {
        let mut r = req(json!({
            "egress": {"method": "POST", "host": "new.example", "port": 443, "path": "/up"},
            "agent_recent_call": {"call_id": "c9", "tool": "Bash", "input": {"command": "curl <x>"}},
        }));
        r.tool = agp_contracts::approval::EGRESS_TOOL.into();
        r.reason = "new.example:443 is not on the egress allowlist".into();
        r.remember_secs = Some(3600);
        let b = approval_blocks(&r, "n", 600, &[]);
        let text = all_text(&b);
        assert!(
            text.contains("*Egress request:* `POST new.example:443/up`"),
            "{text}"
        );
        assert!(text.contains("curl &lt;x&gt;"), "{text}");
        assert!(text.contains("Allow this host for the session"), "{text}");
        assert!(!text.contains("*Approval needed:*"), "{text}");
        // A tool call keeps its own wording.
        let mut call = r.clone();
        call.tool = "Bash".into();
        let text = all_text(&approval_blocks(&call, "n", 600, &[]));
        assert!(text.contains("*Approval needed:*"), "{text}");
        assert!(!text.contains("Allow this host"), "{text}");
    }

    #[test]
    fn huge_agent_fields_still_fit_slack_limits() {
        let mut r = req(json!({"command": "ls"}));
        r.tool = "T".repeat(10_000).into();
        r.call_id = "c".repeat(10_000);
        r.reason = "r".repeat(10_000);
        r.rule_id = Some("x".repeat(10_000));
        let b = approval_blocks(&r, &"n".repeat(64), 600, &[]);
        for block in b.as_array().unwrap() {
            let t = block["text"]["text"]
                .as_str()
                .or(block["elements"][0]["text"].as_str());
            if let Some(t) = t {
                assert!(t.chars().count() <= 3000, "{}", t.len());
            }
            for e in block["elements"].as_array().into_iter().flatten() {
                if let Some(v) = e["value"].as_str() {
                    assert!(v.len() <= 2000);
                }
            }
        }
    }

    #[test]
    fn agent_text_cannot_mention_or_break_out_of_code() {
        let b = approval_blocks(&req(json!({"command": "echo ```<@U1> &"})), "n", 600, &[]);
        let t = all_text(&b);
        assert!(!t.contains("<!channel>"));
        assert!(!t.contains("<@U1>"));
        assert!(t.contains("&lt;!channel&gt;"));
        assert!(!t.contains("echo ```"));
    }

    #[test]
    fn long_input_is_truncated_and_details_shows_all_of_it() {
        let long = "x".repeat(5000) + "END";
        let r = req(json!({"content": long}));
        let b = approval_blocks(&r, "n", 600, &[]);
        assert!(all_text(&b).contains("truncated"));
        assert!(!all_text(&b).contains("END"));
        let d = details_blocks(&r);
        assert!(all_text(&d).contains("END"));
        for s in d.as_array().unwrap() {
            assert!(s["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        }
    }

    #[test]
    fn decided_message_has_no_buttons_and_names_the_decider() {
        let by = agp_contracts::Approver {
            id: "U1".into(),
            name: "Alice".into(),
            via: "slack".into(),
        };
        let b = decided_blocks(
            &req(json!({})),
            &ApprovalOutcome::Denied { by, reason: None },
            1_700_000_000_000,
            600,
        );
        assert!(b.as_array().unwrap().iter().all(|x| x["type"] != "actions"));
        assert!(all_text(&b).contains("Denied"));
        assert!(all_text(&b).contains("Alice"));
        assert!(all_text(&b).contains("2023-11-14 22:13:20 UTC"));
    }
}
