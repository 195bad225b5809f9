//! The typed report journals byte for byte what agp journaled when `session.integrity` carried
//! it as loose JSON, and reads the bodies journaled then. The literals are bodies the daemon
//! wrote before the report had a type (`agp-daemon`'s integrity tests, captured from its
//! journal): a scan, and a check whose blocking task panicked.

use super::*;
use crate::events::{check_body, Event, SessionIntegrity};
use serde_json::Value;

const SCANNED: &str = r#"{"by_session":1,"findings_total":2,"not_neutralized":0,"quarantine":"/tmp/.tmpCCMRgQ/home/quarantine/s-9a6925711b414749","report":{"baseline":true,"complete":true,"elapsed_ms":1,"entries_scanned":2,"findings":[{"action":"quarantined","detail":"a fifo","kind":"fifo","origin":"new","path":"planted","to":"/tmp/.tmpCCMRgQ/home/quarantine/s-9a6925711b414749/planted"},{"action":"kept","detail":"a fifo","kind":"fifo","origin":"pre_existing","path":"before"}],"incomplete":[],"root":"/tmp/.tmpCCMRgQ/repo"},"session":"s-9a6925711b414749"}"#;

const FAILED: &str = r#"{"report":{"complete":false,"findings":[],"incomplete":["the check failed: task 18 panicked with message \"captured failure\""]},"session":"s-1ff17d573c59fd48"}"#;

fn text(body: &SessionIntegrity) -> String {
    serde_json::to_string(&body.to_body()).unwrap()
}

fn old(literal: &str) -> Value {
    serde_json::from_str(literal).unwrap()
}

#[test]
fn a_scan_report_is_journaled_byte_for_byte_as_before() {
    let q = "/tmp/.tmpCCMRgQ/home/quarantine/s-9a6925711b414749";
    let written = SessionIntegrity {
        session: "s-9a6925711b414749".into(),
        findings_total: Some(2),
        by_session: Some(1),
        not_neutralized: Some(0),
        quarantine: Some(q.into()),
        report: Report {
            root: Some("/tmp/.tmpCCMRgQ/repo".into()),
            complete: true,
            incomplete: vec![],
            entries_scanned: Some(2),
            elapsed_ms: Some(1),
            baseline: Some(true),
            findings: vec![
                Finding {
                    path: "planted".into(),
                    kind: Kind::Fifo,
                    detail: "a fifo".into(),
                    origin: Origin::New,
                    action: Action::Quarantined {
                        to: format!("{q}/planted"),
                    },
                },
                Finding {
                    path: "before".into(),
                    kind: Kind::Fifo,
                    detail: "a fifo".into(),
                    origin: Origin::PreExisting,
                    action: Action::Kept,
                },
            ],
        },
    };
    assert_eq!(text(&written), SCANNED);
    assert_eq!(SessionIntegrity::from_body(&old(SCANNED)).unwrap(), written);
}

#[test]
fn a_failed_check_is_journaled_byte_for_byte_as_before() {
    let written = SessionIntegrity {
        session: "s-1ff17d573c59fd48".into(),
        findings_total: None,
        by_session: None,
        not_neutralized: None,
        quarantine: None,
        report: Report::failed(r#"task 18 panicked with message "captured failure""#),
    };
    assert_eq!(text(&written), FAILED);
    assert_eq!(SessionIntegrity::from_body(&old(FAILED)).unwrap(), written);
}

/// Journals written before the type read through it, and pass the typed-body check that
/// journal readers apply (parse, then serialize back to the same JSON).
#[test]
fn bodies_of_an_old_journal_read_as_the_typed_report() {
    for literal in [SCANNED, FAILED] {
        let body = old(literal);
        check_body(SessionIntegrity::KIND, &body).unwrap();
        assert_eq!(
            serde_json::to_string(&SessionIntegrity::from_body(&body).unwrap().to_body()).unwrap(),
            literal
        );
    }
    let scanned = SessionIntegrity::from_body(&old(SCANNED)).unwrap().report;
    assert!(scanned.complete);
    assert_eq!((scanned.by_session(), scanned.not_neutralized()), (1, 0));
    assert_eq!(
        scanned.findings[0].action,
        Action::Quarantined {
            to: "/tmp/.tmpCCMRgQ/home/quarantine/s-9a6925711b414749/planted".into()
        }
    );
    assert_eq!(scanned.findings[1].origin, Origin::PreExisting);

    let failed = SessionIntegrity::from_body(&old(FAILED)).unwrap().report;
    assert!(!failed.complete && failed.findings.is_empty() && failed.root.is_none());
    assert_eq!(
        failed.incomplete,
        [r#"the check failed: task 18 panicked with message "captured failure""#]
    );
}

/// Every action and kind serializes as the snake_case names journals hold, the action's
/// members flattened into the finding.
#[test]
fn every_action_is_flattened_into_its_finding() {
    let cases = [
        (Action::Kept, r#""action":"kept""#),
        (Action::Reported, r#""action":"reported""#),
        (Action::BitsCleared, r#""action":"bits_cleared""#),
        (
            Action::CapabilityRemoved,
            r#""action":"capability_removed""#,
        ),
        (
            Action::Quarantined { to: "/q/p".into() },
            r#""action":"quarantined","to":"/q/p""#,
        ),
        (
            Action::Removed {
                why: "EXDEV".into(),
            },
            r#""action":"removed","why":"EXDEV""#,
        ),
        (
            Action::NotNeutralized {
                error: "EPERM".into(),
            },
            r#""action":"not_neutralized","error":"EPERM""#,
        ),
    ];
    for (action, members) in cases {
        let finding = Finding {
            path: "p".into(),
            kind: Kind::RepoGitConfig,
            detail: "d".into(),
            origin: Origin::Changed,
            action,
        };
        let json = serde_json::to_string(&finding).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"path":"p","kind":"repo_git_config","detail":"d","origin":"changed",{members}}}"#
            )
        );
        let back: Finding = serde_json::from_str(&json).unwrap();
        assert_eq!(back, finding);
    }
}

/// A report from a newer agp with a kind this one does not know is refused, not misread: the
/// readers then show the body as it is.
#[test]
fn a_finding_of_an_unknown_kind_is_refused() {
    let newer = serde_json::json!({"session": "s", "report": {"complete": true, "findings": [
        {"path": "p", "kind": "a_kind_from_a_newer_agp", "detail": "d", "origin": "new",
         "action": "kept"}]}});
    assert!(SessionIntegrity::from_body(&newer).is_err());
}
