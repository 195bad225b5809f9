//! One line per journal event in `agp sessions show`, read through the kind's type in
//! `agp_contracts::events` (the types the writers use), never by guessing member names.

use agp_contracts::events::{
    ApprovalDenied, ApprovalGranted, ApprovalRemembered, ApprovalRequested, ApprovalTimeout,
    ApprovalVote, EgressAllowed, EgressDenied, Event, GatewayRejected, PolicyDecided,
    SandboxPreflight, SessionEnded, SessionIntegrity, SessionReaped, SessionStarted,
    SessionStopped, ToolCallRequested, ToolCallResult, ToolCallResultMismatch,
};
use serde_json::Value;

/// One line describing an event. A kind without a line of its own (newer ones included) shows
/// its body; so does a body that does not read as its kind's type, saying so: never nothing.
pub(super) fn describe(kind: &str, body: &Value) -> String {
    match line(kind, body) {
        Some(Ok(line)) => line,
        Some(Err(e)) => format!(
            "(not a {kind} body as this agp knows it: {e}) {}",
            raw(body)
        ),
        None => raw(body),
    }
}

/// The body as canonical JSON, cut to a line.
fn raw(body: &Value) -> String {
    let text =
        agp_contracts::canonical::to_canonical_string(body).unwrap_or_else(|_| body.to_string());
    if text.chars().count() > 100 {
        text.chars().take(99).collect::<String>() + "…"
    } else {
        text
    }
}

type Line = Option<Result<String, serde_json::Error>>;

/// `show` applied to the body read as `T`.
fn read<T: Event>(
    body: &Value,
    show: impl FnOnce(T) -> String,
) -> Result<String, serde_json::Error> {
    T::from_body(body).map(show)
}

/// The kind's own line, `None` for a kind without one.
fn line(kind: &str, body: &Value) -> Line {
    let line = match kind {
        SessionStarted::KIND => read(body, |e: SessionStarted| {
            format!(
                "{} session, intendant {}, repo {}",
                e.mode.unwrap_or_default(),
                e.intendant,
                e.repo.display()
            )
        }),
        SessionEnded::KIND => read(body, |e: SessionEnded| e.status),
        SessionStopped::KIND => read(body, |e: SessionStopped| {
            let ended = if e.ended.is_empty() {
                "nothing was running".to_owned()
            } else {
                format!("ended: {}", e.ended.join(", "))
            };
            format!(
                "by {} via {}{}; {ended}; {} approval(s) cancelled",
                e.by.name,
                e.by.via,
                e.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
                e.cancelled_approvals.len()
            )
        }),
        ApprovalVote::KIND => read(body, |e: ApprovalVote| {
            format!(
                "{} {} by {} ({} of {})",
                e.call_id, e.vote, e.by.id, e.have, e.need
            )
        }),
        ApprovalRemembered::KIND => read(body, |e: ApprovalRemembered| {
            let by: Vec<&str> = e.by.iter().map(|a| a.id.as_str()).collect();
            format!(
                "{} allowed for this session by {} (rule {}, until {})",
                e.call_id,
                by.join(", "),
                e.rule_id.as_deref().unwrap_or("none"),
                super::fmt_ms(e.expires_at_ms)
            )
        }),
        SessionReaped::KIND => read(body, |e: SessionReaped| match (e.status, e.reason) {
            (None, _) => "lease expired".to_owned(),
            (Some(status), None) => status,
            (Some(status), Some(reason)) => format!("{status}: {reason}"),
        }),
        EgressAllowed::KIND => read(body, |e: EgressAllowed| {
            egress(&e.method, e.host.as_deref(), e.port, &e.reason)
        }),
        EgressDenied::KIND => read(body, |e: EgressDenied| {
            egress(&e.method, e.host.as_deref(), e.port, &e.reason)
        }),
        SandboxPreflight::KIND => read(body, preflight),
        ToolCallRequested::KIND => read(body, |e: ToolCallRequested| {
            let short: String = e.input.to_string().chars().take(80).collect();
            format!("{} {} {short}", e.call_id, e.tool)
        }),
        PolicyDecided::KIND => read(body, |e: PolicyDecided| {
            // Unenforced: what agp did, then what the policy would have done.
            let unenforced = match (e.mode, e.shadow_verdict) {
                (Some(mode), Some(would)) => format!(" [{mode}: {would}, not enforced]"),
                (Some(mode), None) => format!(" [{mode}: not judged]"),
                (None, _) => String::new(),
            };
            format!(
                "{} {}{unenforced} ({}): {}",
                e.call_id,
                e.decision.as_str(),
                e.rule_id.as_deref().unwrap_or("default"),
                e.reason
            )
        }),
        ApprovalRequested::KIND => read(body, |e: ApprovalRequested| {
            format!("{} asked via {}", e.call_id, e.channel)
        }),
        ApprovalGranted::KIND => read(body, |e: ApprovalGranted| {
            let by: Vec<&str> = e.by.iter().map(|a| a.id.as_str()).collect();
            let remembered = if e.remembered == Some(true) {
                " (remembered)"
            } else {
                ""
            };
            format!("{} by {}{remembered}", e.call_id, by.join(", "))
        }),
        ApprovalDenied::KIND => read(body, |e: ApprovalDenied| {
            format!(
                "{} by {}: {}",
                e.call_id,
                e.by.as_ref().map_or("nobody", |a| a.id.as_str()),
                e.reason.unwrap_or_default()
            )
        }),
        ApprovalTimeout::KIND => read(body, |e: ApprovalTimeout| {
            let waited = e
                .waited_ms
                .map_or_else(|| "?".to_owned(), |ms| ms.to_string());
            format!("{} after {waited} ms", e.call_id)
        }),
        ToolCallResult::KIND => read(body, |e: ToolCallResult| {
            let exit = e
                .exit_code
                .flatten()
                .map_or_else(|| "null".to_owned(), |c| c.to_string());
            format!(
                "{} ok={} exit={exit} output_sha256={}",
                e.call_id,
                e.ok,
                e.output_sha256.get(..12).unwrap_or("")
            )
        }),
        GatewayRejected::KIND => read(body, |e: GatewayRejected| {
            format!("{}: {}", e.code, e.message)
        }),
        ToolCallResultMismatch::KIND => read(body, |e: ToolCallResultMismatch| {
            format!("{} NOT LINKED: {}", e.call_id, e.reason)
        }),
        SessionIntegrity::KIND => read(body, |e: SessionIntegrity| {
            format!(
                "{} finding(s), {} by the session, {} not neutralized{}",
                e.report.findings.len(),
                e.by_session.unwrap_or(0),
                e.not_neutralized.unwrap_or(0),
                if e.report.complete {
                    ""
                } else {
                    ", scan INCOMPLETE"
                }
            )
        }),
        _ => return None,
    };
    Some(line)
}

fn egress(method: &str, host: Option<&str>, port: Option<u16>, reason: &str) -> String {
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let host = host.filter(|h| !h.is_empty()).unwrap_or("(no host)");
    format!("{method} {host}{port}: {reason}")
}

/// The daemon journals `{report, isolation}` (or `passed: false` and the `error`); `agp run`
/// for a live agent journals the report's own members.
fn preflight(e: SandboxPreflight) -> String {
    let passed = e
        .report
        .as_ref()
        .map(|r| r.passed)
        .or(e.passed)
        .unwrap_or(false);
    let on = e
        .report
        .as_ref()
        .and_then(|r| r.target.as_ref())
        .or(e.target.as_ref())
        .map(|t| {
            format!(
                " ({} on {} {}, image {})",
                t.runtime, t.engine, t.engine_version, t.image
            )
        })
        .unwrap_or_default();
    let provider = e
        .isolation
        .map(|i| i.provider)
        .or_else(|| e.report.map(|r| r.provider))
        .or(e.provider)
        .unwrap_or_else(|| "unknown provider".to_owned());
    format!(
        "{provider}: {}{on}",
        if passed { "passed" } else { "FAILED" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::approval::Approver;
    use agp_contracts::events::{IntendantWiringVerified, TOOL_CALL_RESULT};
    use agp_contracts::sandbox::{Isolation, PreflightCheck, PreflightReport, SandboxTarget};
    use agp_contracts::{Decision, Tool};
    use serde_json::json;

    fn isolation(provider: &str) -> Isolation {
        Isolation {
            provider: provider.into(),
            network_isolated: true,
            filesystem_isolated: true,
            pid_isolated: true,
            caveats: Vec::new(),
        }
    }

    fn docker_report() -> PreflightReport {
        PreflightReport {
            provider: "docker".into(),
            target: Some(SandboxTarget {
                runtime: "runsc".into(),
                image: "i@sha256:ab".into(),
                engine: "docker".into(),
                engine_version: "20.10.24".into(),
            }),
            ..report(true)
        }
    }

    fn report(passed: bool) -> PreflightReport {
        PreflightReport {
            provider: "bubblewrap".into(),
            passed,
            checks: vec![PreflightCheck {
                name: "network".into(),
                passed,
                detail: String::new(),
            }],
            duration_ms: 3,
            target: None,
        }
    }

    fn approver(id: &str) -> Approver {
        Approver {
            id: id.into(),
            name: id.into(),
            via: "terminal".into(),
        }
    }

    /// Each kind with a line of its own, written the way its writers write it.
    #[test]
    fn every_described_kind_reads_its_typed_body() {
        let egress = EgressAllowed {
            method: "CONNECT".into(),
            reason: "model API".into(),
            host: Some("api.anthropic.com".into()),
            port: Some(443),
            peer_pid: None,
        };
        let mut started = SessionStarted::new("scripted", "/r");
        started.mode = Some("gate".into());
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                SessionStarted::KIND,
                started.to_body(),
                "gate session, intendant scripted, repo /r",
            ),
            (
                SessionEnded::KIND,
                SessionEnded {
                    session: "s".into(),
                    status: "completed".into(),
                    lease_held: true,
                }
                .to_body(),
                "completed",
            ),
            (
                EgressAllowed::KIND,
                egress.to_body(),
                "CONNECT api.anthropic.com:443: model API",
            ),
            (
                EgressDenied::KIND,
                EgressDenied {
                    method: "GET".into(),
                    reason: "no host".into(),
                    host: None,
                    port: None,
                    peer_pid: None,
                }
                .to_body(),
                "GET (no host): no host",
            ),
            (
                SandboxPreflight::KIND,
                SandboxPreflight::flat(report(true)).to_body(),
                "bubblewrap: passed",
            ),
            (
                SandboxPreflight::KIND,
                SandboxPreflight::proven("s", isolation("bubblewrap"), report(false)).to_body(),
                "bubblewrap: FAILED",
            ),
            (
                SandboxPreflight::KIND,
                SandboxPreflight::failed("s", isolation("bubblewrap"), "no bwrap".into()).to_body(),
                "bubblewrap: FAILED",
            ),
            (
                SandboxPreflight::KIND,
                SandboxPreflight::proven("s", isolation("docker"), docker_report()).to_body(),
                "docker: passed (runsc on docker 20.10.24, image i@sha256:ab)",
            ),
            (
                SandboxPreflight::KIND,
                SandboxPreflight::flat(docker_report()).to_body(),
                "docker: passed (runsc on docker 20.10.24, image i@sha256:ab)",
            ),
            (
                ToolCallRequested::KIND,
                ToolCallRequested {
                    call_id: "c1".into(),
                    tool_use_id: None,
                    tool: Tool::Bash,
                    input: json!({"command": "ls"}),
                    input_sha256: Some("ab".into()),
                    input_error: None,
                    cwd: "/r".into(),
                    mode: "gate".into(),
                }
                .to_body(),
                r#"c1 Bash {"command":"ls"}"#,
            ),
            (
                PolicyDecided::KIND,
                PolicyDecided {
                    call_id: "c1".into(),
                    tool: Tool::Bash,
                    input_sha256: Some("ab".into()),
                    decision: Decision::Deny,
                    reason: "no".into(),
                    rule_id: None,
                    deciding_part: None,
                    policy_sha256: "p".into(),
                    parts: None,
                    mode: None,
                    shadow_verdict: None,
                }
                .to_body(),
                "c1 deny (default): no",
            ),
            (
                ApprovalRequested::KIND,
                ApprovalRequested {
                    call_id: "c1".into(),
                    tool: Tool::Bash,
                    input_sha256: "ab".into(),
                    rule_id: None,
                    reason: "r".into(),
                    channel: "terminal".into(),
                    approvers: Vec::new(),
                    quorum: 1,
                    expires_at_ms: 0,
                }
                .to_body(),
                "c1 asked via terminal",
            ),
            (
                ApprovalGranted::KIND,
                ApprovalGranted {
                    call_id: "c1".into(),
                    input_sha256: "ab".into(),
                    by: vec![approver("tty:a"), approver("tty:b")],
                    channel: "terminal".into(),
                    remembered: Some(true),
                    waited_ms: None,
                }
                .to_body(),
                "c1 by tty:a, tty:b (remembered)",
            ),
            (
                ApprovalDenied::KIND,
                ApprovalDenied {
                    call_id: "c1".into(),
                    input_sha256: "ab".into(),
                    by: None,
                    reason: Some("no approver".into()),
                    channel: "terminal".into(),
                    waited_ms: None,
                    unavailable: Some(true),
                    cancelled: None,
                }
                .to_body(),
                "c1 by nobody: no approver",
            ),
            (
                ApprovalTimeout::KIND,
                ApprovalTimeout {
                    call_id: "c1".into(),
                    input_sha256: "ab".into(),
                    channel: "terminal".into(),
                    waited_ms: Some(300_000),
                    recovered: None,
                    reason: None,
                }
                .to_body(),
                "c1 after 300000 ms",
            ),
            (
                GatewayRejected::KIND,
                GatewayRejected {
                    code: "bad_token".into(),
                    message: "no".into(),
                    call_id: None,
                    peer: Value::Null,
                }
                .to_body(),
                "bad_token: no",
            ),
        ];
        for (kind, body, want) in cases {
            assert_eq!(describe(kind, &body), want, "{kind} {body}");
        }
    }

    #[test]
    fn stops_votes_and_answers_for_the_session_are_described() {
        let alice = Approver {
            id: "U1".into(),
            name: "alice".into(),
            via: "slack".into(),
        };
        let stopped = SessionStopped {
            session: "s".into(),
            by: alice.clone(),
            reason: Some("runaway".into()),
            ended: vec!["agent".into()],
            cancelled_approvals: vec!["c1".into()],
            peer: None,
        };
        assert_eq!(
            describe(SessionStopped::KIND, &stopped.to_body()),
            "by alice via slack (runaway); ended: agent; 1 approval(s) cancelled"
        );
        let vote = ApprovalVote {
            call_id: "c1".into(),
            input_sha256: "ab".into(),
            by: alice.clone(),
            vote: "allow".into(),
            channel: "slack".into(),
            have: 1,
            need: 2,
        };
        assert_eq!(
            describe(ApprovalVote::KIND, &vote.to_body()),
            "c1 allow by U1 (1 of 2)"
        );
        let remembered = ApprovalRemembered {
            call_id: "c1".into(),
            tool: Tool::Bash,
            cwd: "/r".into(),
            input_sha256: "ab".into(),
            rule_id: Some("r1".into()),
            policy_sha256: "cd".into(),
            by: vec![alice],
            channel: "slack".into(),
            expires_at_ms: 0,
        };
        assert_eq!(
            describe(ApprovalRemembered::KIND, &remembered.to_body()),
            "c1 allowed for this session by U1 (rule r1, until 1970-01-01 00:00:00Z)"
        );
    }

    #[test]
    fn results_show_the_exit_status_or_null() {
        let result = |exit_code| ToolCallResult {
            call_id: "c1".into(),
            tool: Tool::Bash,
            input_sha256: "ab".into(),
            ok: true,
            exit_code,
            timed_out: None,
            error: None,
            output: String::new(),
            truncated: false,
            output_bytes: None,
            output_sha256: "0123456789abcdef".into(),
            reported_by: "agent".into(),
        };
        for (exit_code, want) in [
            (Some(Some(0)), "exit=0"),
            (Some(None), "exit=null"),
            (None, "exit=null"),
        ] {
            let shown = describe(TOOL_CALL_RESULT, &result(exit_code).to_body());
            assert_eq!(
                shown,
                format!("c1 ok=true {want} output_sha256=0123456789ab")
            );
        }
    }

    #[test]
    fn a_reaped_session_without_a_status_was_a_lease_that_expired() {
        let reaped = |status: Option<&str>, reason: Option<&str>| SessionReaped {
            session: "s".into(),
            intendant: "scripted".into(),
            lease_owner: "host:1".into(),
            fencing_token: 1,
            last_heartbeat_ms: 0,
            status: status.map(str::to_owned),
            reason: reason.map(str::to_owned),
        };
        let shown = |e: SessionReaped| describe(SessionReaped::KIND, &e.to_body());
        assert_eq!(shown(reaped(None, None)), "lease expired");
        assert_eq!(shown(reaped(Some("interrupted"), None)), "interrupted");
        assert_eq!(
            shown(reaped(Some("interrupted"), Some("agp run is gone"))),
            "interrupted: agp run is gone"
        );
    }

    #[test]
    fn other_kinds_and_unreadable_bodies_show_the_body() {
        let wiring = IntendantWiringVerified {
            intendant: "codex".into(),
            method: "m".into(),
        };
        assert_eq!(
            describe(IntendantWiringVerified::KIND, &wiring.to_body()),
            r#"{"intendant":"codex","method":"m"}"#
        );
        assert_eq!(describe("newer.kind", &json!({"a": 1})), r#"{"a":1}"#);
        // A body that is not its kind's shape is shown, and said to be so, never guessed at.
        let odd = describe(SessionReaped::KIND, &json!({"session": "s"}));
        assert!(
            odd.starts_with("(not a session.reaped body as this agp knows it: missing field")
                && odd.ends_with(r#") {"session":"s"}"#),
            "{odd}"
        );
        let long = describe("newer.kind", &json!({"text": "x".repeat(200)}));
        assert_eq!(long.chars().count(), 100);
        assert!(long.ends_with('…'));
    }
}
