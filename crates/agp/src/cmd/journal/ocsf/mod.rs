//! Journal events as OCSF 1.3 events (<https://schema.ocsf.io/1.3.0/>).
//!
//! | agp kind | OCSF class | activity |
//! |---|---|---|
//! | `tool_call.requested`, `policy.decided`, `approval.*`, `tool_call.result` of a non-shell tool, `tool_call.result_mismatch` | API Activity (6003) | by tool: Read/Glob/Grep… Read (2), Write Create (1), Edit… Update (3), others Other (99) |
//! | `tool_call.result` of a shell command (`Bash`) | Process Activity (1007) | Launch (1) |
//! | `egress.allowed` / `egress.denied` / `egress.upstream_failed` | Network Activity (4001) | Open (1) / Refuse (5) / Fail (4) |
//! | anything else (sessions, sandbox, journal, keys, kinds newer than this agp) | Base Event (0) | Other (99) |
//!
//! Every event keeps its place in the signed journal: `metadata.sequence` is its seq,
//! `raw_data` the exact journal line (whose RFC 6962 leaf hash is the evidence's `leaf_hash`),
//! and `unmapped.agp` the kind, session, body and evidence (index, leaf hash, checkpoint). Kinds
//! without a class are exported as Base Events rather than skipped, so a consumer sees every
//! seq and can tell a gap from a filter.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::record::Entry;

pub const OCSF_VERSION: &str = "1.3.0";

const API_ACTIVITY: (u32, &str) = (6003, "API Activity");
const PROCESS_ACTIVITY: (u32, &str) = (1007, "Process Activity");
const NETWORK_ACTIVITY: (u32, &str) = (4001, "Network Activity");
const BASE_EVENT: (u32, &str) = (0, "Base Event");

/// OCSF `severity_id` values used here.
pub mod severity {
    pub const INFORMATIONAL: u8 = 1;
    pub const LOW: u8 = 2;
    pub const MEDIUM: u8 = 3;
    pub const HIGH: u8 = 4;

    pub fn name(id: u8) -> &'static str {
        match id {
            1 => "Informational",
            2 => "Low",
            3 => "Medium",
            4 => "High",
            5 => "Critical",
            6 => "Fatal",
            99 => "Other",
            _ => "Unknown",
        }
    }
}

/// How many commands are remembered for the results that follow their requests.
const REMEMBERED_CALLS: usize = 4096;

/// Maps entries; remembers what later events of the same call or session need (the command of
/// a call for its result, the agent of a session).
#[derive(Default)]
pub struct Mapper {
    commands: HashMap<String, String>,
    order: VecDeque<String>,
    intendants: HashMap<String, String>,
    /// Events per OCSF class name, for the summary.
    pub counts: BTreeMap<&'static str, u64>,
}

/// The severity an entry gets, by kind and body (also used for OTLP log severities).
pub fn severity_of(kind: &str, body: &Value) -> u8 {
    use severity::*;
    match kind {
        // A shadow session ran the call; what the policy would have done is the finding.
        "policy.decided" if body["shadow_verdict"] == "would_deny" => MEDIUM,
        "policy.decided" if body["shadow_verdict"] == "would_require" => LOW,
        "policy.decided" => match body["decision"].as_str() {
            Some("allow") => INFORMATIONAL,
            Some("require") => LOW,
            _ => MEDIUM,
        },
        "approval.denied" | "approval.timeout" | "egress.denied" => MEDIUM,
        "approval.rejected" | "tool_call.result_mismatch" | "gateway.rejected" => HIGH,
        "sandbox.limit_exceeded" | "sandbox.git_metadata_removed" => MEDIUM,
        "session.stopped" | "policy.reload_refused" => MEDIUM,
        "tool_call.result" if body["ok"] == false => LOW,
        "egress.upstream_failed" | "journal.recovered" => LOW,
        _ => INFORMATIONAL,
    }
}

impl Mapper {
    pub fn map(&mut self, e: &Entry) -> Value {
        let body = &e.event["body"];
        self.remember(e);
        let mut o = match e.kind.as_str() {
            "tool_call.requested"
            | "policy.decided"
            | "approval.requested"
            | "approval.granted"
            | "approval.denied"
            | "approval.timeout"
            | "approval.rejected"
            | "approval.vote"
            | "approval.remembered"
            | "tool_call.result_mismatch" => self.api_activity(e),
            "tool_call.result" if is_shell(body) => self.process_activity(e),
            "tool_call.result" => self.api_activity(e),
            "egress.allowed" | "egress.denied" | "egress.upstream_failed" => {
                network_activity(e, self.actor(e))
            }
            _ => base_event(e),
        };
        let class = o["class_name"].as_str().map_or(BASE_EVENT.1, class_name);
        *self.counts.entry(class).or_default() += 1;
        common(&mut o, e);
        o
    }

    /// Learns what later events need from `e` (a call's command, a session's agent).
    pub fn remember(&mut self, e: &Entry) {
        let body = &e.event["body"];
        if e.kind == "session.started" {
            if let (Some(s), Some(i)) = (e.session.as_deref(), body["intendant"].as_str()) {
                self.intendants.insert(s.to_string(), i.to_string());
            }
        }
        if e.kind == "tool_call.requested" {
            if let (Some(id), Some(cmd)) =
                (body["call_id"].as_str(), body["input"]["command"].as_str())
            {
                if self.order.len() >= REMEMBERED_CALLS {
                    if let Some(old) = self.order.pop_front() {
                        self.commands.remove(&old);
                    }
                }
                self.order.push_back(id.to_string());
                self.commands.insert(id.to_string(), cmd.to_string());
            }
        }
    }

    /// The agent of the session: who asks for the tool calls.
    fn actor(&self, e: &Entry) -> Value {
        let mut actor = Map::new();
        let agent = e
            .session
            .as_deref()
            .and_then(|s| self.intendants.get(s))
            .map_or("agent", String::as_str);
        actor.insert("app_name".into(), agent.into());
        if let Some(s) = &e.session {
            actor.insert("session".into(), json!({"uid": s}));
        }
        Value::Object(actor)
    }

    fn api_activity(&self, e: &Entry) -> Value {
        let body = &e.event["body"];
        let tool = tool_name(body);
        let (activity_id, activity_name) = crud(&tool);
        let mut api = json!({
            "operation": tool,
            "service": {"name": "agp gateway"},
        });
        if let Some(id) = body["call_id"].as_str() {
            api["request"] = json!({"uid": id});
        }
        let mut actor = self.actor(e);
        match e.kind.as_str() {
            "approval.granted" => {
                if let Some(first) = body["by"].as_array().and_then(|b| b.first()) {
                    actor["user"] = approver(first);
                }
            }
            "approval.denied" | "approval.vote" if body["by"].is_object() => {
                actor["user"] = approver(&body["by"]);
            }
            "approval.remembered" => {
                if let Some(first) = body["by"].as_array().and_then(|b| b.first()) {
                    actor["user"] = approver(first);
                }
            }
            "approval.rejected" => {
                actor["user"] = json!({"uid": body["user"]["id"], "name": body["user"]["name"]});
            }
            "policy.decided" => {
                actor["authorizations"] = json!([{
                    "decision": body["decision"],
                    "policy": {
                        "uid": body["policy_sha256"],
                        "name": body["rule_id"].as_str().unwrap_or("default"),
                        "desc": body["reason"],
                    },
                }]);
            }
            _ => {}
        }
        if e.kind == "tool_call.result" {
            let mut response = Map::new();
            if let Some(code) = body["exit_code"].as_i64() {
                response.insert("code".into(), code.into());
            }
            if let Some(err) = body["error"].as_str() {
                response.insert("error".into(), err.into());
            }
            if !response.is_empty() {
                api["response"] = Value::Object(response);
            }
        }
        let mut o = json!({
            "class_uid": API_ACTIVITY.0,
            "class_name": API_ACTIVITY.1,
            "category_uid": 6,
            "category_name": "Application Activity",
            "activity_id": activity_id,
            "activity_name": activity_name,
            "actor": actor,
            "api": api,
            "src_endpoint": endpoint(e),
        });
        if let Some(path) = body["input"]["file_path"]
            .as_str()
            .or(body["input"]["path"].as_str())
        {
            o["resources"] = json!([{"name": path, "type": "file"}]);
        }
        disposition(&mut o, &e.kind, body);
        o
    }

    fn process_activity(&self, e: &Entry) -> Value {
        let body = &e.event["body"];
        let mut process = Map::new();
        if let Some(cmd) = body["call_id"]
            .as_str()
            .and_then(|id| self.commands.get(id))
        {
            process.insert("cmd_line".into(), cmd.as_str().into());
            if let Some(program) = cmd.split_whitespace().next() {
                process.insert("name".into(), program.into());
            }
        }
        if !process.contains_key("name") {
            process.insert("name".into(), tool_name(body).into());
        }
        let mut o = json!({
            "class_uid": PROCESS_ACTIVITY.0,
            "class_name": PROCESS_ACTIVITY.1,
            "category_uid": 1,
            "category_name": "System Activity",
            "activity_id": 1,
            "activity_name": "Launch",
            "actor": self.actor(e),
            "process": process,
            "device": device(e),
        });
        if let Some(code) = body["exit_code"].as_i64() {
            o["exit_code"] = code.into();
        }
        disposition(&mut o, &e.kind, body);
        o
    }
}

fn network_activity(e: &Entry, actor: Value) -> Value {
    let body = &e.event["body"];
    let (activity_id, activity_name) = match e.kind.as_str() {
        "egress.allowed" => (1, "Open"),
        "egress.denied" => (5, "Refuse"),
        _ => (4, "Fail"),
    };
    let mut dst = Map::new();
    if let Some(h) = body["host"].as_str() {
        dst.insert("hostname".into(), h.into());
    }
    if let Some(p) = body["port"].as_u64() {
        dst.insert("port".into(), p.into());
    }
    let mut actor = actor;
    if let Some(pid) = body["peer_pid"].as_i64() {
        actor["process"] = json!({"pid": pid});
    }
    let mut o = json!({
        "class_uid": NETWORK_ACTIVITY.0,
        "class_name": NETWORK_ACTIVITY.1,
        "category_uid": 4,
        "category_name": "Network Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "actor": actor,
        "src_endpoint": endpoint(e),
        "dst_endpoint": dst,
        "connection_info": {"direction_id": 2, "direction": "Outbound", "protocol_name": "tcp"},
    });
    if let Some(m) = body["method"].as_str().filter(|m| *m != "CONNECT") {
        o["http_request"] = json!({"http_method": m});
    }
    disposition(&mut o, &e.kind, body);
    o
}

fn base_event(e: &Entry) -> Value {
    json!({
        "class_uid": BASE_EVENT.0,
        "class_name": BASE_EVENT.1,
        "category_uid": 0,
        "category_name": "Uncategorized",
        "activity_id": 99,
        "activity_name": e.kind,
    })
}

fn class_name(name: &str) -> &'static str {
    [API_ACTIVITY, PROCESS_ACTIVITY, NETWORK_ACTIVITY]
        .into_iter()
        .find(|c| c.1 == name)
        .map_or(BASE_EVENT.1, |c| c.1)
}

/// Fields every class carries: type, severity, time, metadata, the journal evidence.
fn common(o: &mut Value, e: &Entry) {
    let body = &e.event["body"];
    let class_uid = o["class_uid"].as_u64().unwrap_or(0);
    let activity_id = o["activity_id"].as_u64().unwrap_or(0);
    let activity_label = if activity_id == 99 {
        "Other".to_string()
    } else {
        o["activity_name"].as_str().unwrap_or("Unknown").to_string()
    };
    o["type_uid"] = (class_uid * 100 + activity_id).into();
    o["type_name"] = format!(
        "{}: {activity_label}",
        o["class_name"].as_str().unwrap_or("Base Event")
    )
    .into();
    let sev = severity_of(&e.kind, body);
    o["severity_id"] = sev.into();
    o["severity"] = severity::name(sev).into();
    o["time"] = i64::try_from(e.time_nanos / 1_000_000).unwrap_or(0).into();
    o["message"] = message(e).into();
    let mut profiles = Vec::new();
    if o.get("action_id").is_some() {
        profiles.push("security_control");
    }
    if o.get("device").is_some() {
        profiles.push("host");
    }
    let mut metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "agp",
            "vendor_name": "agp",
            "version": env!("CARGO_PKG_VERSION"),
            "feature": {"name": "journal export"},
        },
        "uid": format!("{}#{}", e.checkpoint.origin, e.seq),
        "sequence": e.seq,
        "event_code": e.kind,
        "log_name": "agp journal",
        "log_provider": e.checkpoint.origin,
        "original_time": e.event["ts"],
        "profiles": profiles,
    });
    if let Some(id) = body["call_id"].as_str() {
        metadata["correlation_uid"] = id.into();
    } else if let Some(s) = &e.session {
        metadata["correlation_uid"] = s.as_str().into();
    }
    o["metadata"] = metadata;
    o["raw_data"] = String::from_utf8_lossy(&e.line).into_owned().into();
    o["unmapped"] = json!({"agp": {
        "seq": e.seq,
        "kind": e.kind,
        "session": e.session,
        "body": body,
        "evidence": e.evidence(),
    }});
}

/// Status, and for decisions the security-control outcome (`action_id`, `disposition_id`).
fn disposition(o: &mut Value, kind: &str, body: &Value) {
    let status = |o: &mut Value, ok: bool, detail: Option<&str>| {
        o["status_id"] = if ok { 1 } else { 2 }.into();
        o["status"] = if ok { "Success" } else { "Failure" }.into();
        if let Some(d) = detail {
            o["status_detail"] = d.into();
        }
    };
    // action_id 1 Allowed / 2 Denied / 99 Other; disposition_id 1 Allowed / 2 Blocked / 99 Other.
    let control = |o: &mut Value, allowed: Option<bool>, label: &str| {
        let (action_id, disposition_id, action, disp) = match allowed {
            Some(true) => (1, 1, "Allowed", "Allowed"),
            Some(false) => (2, 2, "Denied", "Blocked"),
            None => (99, 99, label, label),
        };
        o["action_id"] = action_id.into();
        o["action"] = action.into();
        o["disposition_id"] = disposition_id.into();
        o["disposition"] = disp.into();
    };
    // A decision that settles the call: its control outcome and its status agree.
    let settled = |o: &mut Value, allowed: bool, detail: Option<&str>| {
        control(o, Some(allowed), "");
        status(o, allowed, detail);
    };
    let reason = body["reason"].as_str();
    match kind {
        "policy.decided" => match body["decision"].as_str() {
            Some("allow") => settled(o, true, reason),
            Some("require") => control(o, None, "Approval required"),
            _ => settled(o, false, reason),
        },
        "approval.requested" => control(o, None, "Approval requested"),
        // One vote of a quorum decides nothing by itself; the outcome is its own event.
        "approval.vote" => control(o, None, "Vote"),
        "approval.remembered" | "approval.granted" => settled(o, true, None),
        "approval.denied" | "approval.timeout" | "approval.rejected" => settled(o, false, reason),
        "egress.allowed" => settled(o, true, reason),
        "egress.denied" => settled(o, false, reason),
        "egress.upstream_failed" => status(o, false, body["error"].as_str()),
        "tool_call.result" => {
            let detail = if body["timed_out"] == true {
                Some("timed out")
            } else {
                body["error"].as_str()
            };
            status(o, body["ok"] == true, detail);
        }
        "tool_call.result_mismatch" => status(o, false, reason),
        _ => {}
    }
}

fn message(e: &Entry) -> String {
    let body = &e.event["body"];
    let call = body["call_id"]
        .as_str()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let tool = body["tool"]
        .as_str()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let detail = body["decision"]
        .as_str()
        .or(body["vote"].as_str())
        .or(body["reason"].as_str())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let shadow = body["shadow_verdict"]
        .as_str()
        .map(|v| format!(" (shadow: {v}, not enforced)"))
        .unwrap_or_default();
    format!("agp {}{call}{tool}{detail}{shadow}", e.kind)
}

fn tool_name(body: &Value) -> String {
    match &body["tool"] {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".to_string(),
        other => other.to_string(),
    }
}

fn is_shell(body: &Value) -> bool {
    matches!(
        body["tool"].as_str(),
        Some("Bash" | "shell" | "local_shell")
    )
}

/// The CRUD activity of a tool, Other (99, named after the tool) when it is none of them.
fn crud(tool: &str) -> (u32, String) {
    match tool {
        "Read" | "Glob" | "Grep" | "LS" | "NotebookRead" | "WebFetch" | "WebSearch" => {
            (2, "Read".into())
        }
        "Write" => (1, "Create".into()),
        "Edit" | "MultiEdit" | "NotebookEdit" | "apply_patch" => (3, "Update".into()),
        other => (99, other.to_string()),
    }
}

fn approver(a: &Value) -> Value {
    json!({"uid": a["id"], "name": a["name"]})
}

/// Where the call came from: the agent's session.
fn endpoint(e: &Entry) -> Value {
    match &e.session {
        Some(s) => json!({"name": "agent session", "uid": s}),
        None => json!({"name": "agp"}),
    }
}

/// The host profile's device: agp does not journal the host name, so the journal's origin
/// (which names the agp home) stands for it.
fn device(e: &Entry) -> Value {
    json!({"type_id": 0, "type": "Unknown", "name": e.checkpoint.origin})
}

#[cfg(test)]
mod tests;
