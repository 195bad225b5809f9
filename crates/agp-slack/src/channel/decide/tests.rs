//! The click decision, one row per exit.

use super::*;
use serde_json::json;

const NOW: u64 = 1_000_000;
const BOT: &str = "UBOT";

fn record(quorum: u32) -> PendingRecord {
    let mut r = crate::pending::tests::record("n1", "c1");
    r.request.quorum = quorum;
    r.request.expires_at_ms = NOW + 60_000;
    r.message_ts = Some("2.0".into());
    r
}

fn click(action: &str) -> Click {
    Click {
        user_id: "U1".into(),
        action: action.into(),
        button: Some(ButtonValue {
            v: 1,
            n: "n1".into(),
            h: "ab".repeat(32),
        }),
        channel_id: "C1".into(),
        message_ts: "2.0".into(),
        thread_ts: Some("1.0".into()),
    }
}

fn person(id: &str) -> UserInfo {
    UserInfo {
        id: id.into(),
        name: format!("{id} name"),
        is_bot: false,
        deleted: false,
    }
}

fn approver(id: &str) -> Approver {
    Approver {
        id: id.into(),
        name: format!("{id} name"),
        via: via::SLACK.into(),
    }
}

/// One click and everything known about it; each row of the table changes one thing.
struct Case {
    click: Click,
    user: Option<UserInfo>,
    configured: Option<bool>,
    record: Option<PendingRecord>,
    now_ms: u64,
}

impl Case {
    /// A configured approver allowing a live, posted approval that needs two approvals.
    fn allow() -> Case {
        Case {
            click: click(ACTION_ALLOW),
            user: Some(person("U1")),
            configured: Some(true),
            record: Some(record(2)),
            now_ms: NOW,
        }
    }

    fn decide(&self) -> ClickOutcome {
        decide(&Facts {
            click: &self.click,
            user: self.user.as_ref(),
            configured: self.configured,
            record: self.record.as_ref(),
            bot_user: BOT,
            now_ms: self.now_ms,
        })
    }
}

/// What a row expects, short enough to read as a table.
#[derive(Debug, PartialEq)]
enum Expect {
    Reject(RejectReason),
    Details,
    Counted(usize, usize),
    Granted(Vec<String>),
    Denied(String),
}

fn summary(outcome: &ClickOutcome) -> Expect {
    match outcome {
        ClickOutcome::Reject(r) => Expect::Reject(r.reason),
        ClickOutcome::Details { .. } => Expect::Details,
        ClickOutcome::Counted { have, need, .. } => Expect::Counted(*have, *need),
        ClickOutcome::Decided {
            outcome: ApprovalOutcome::Granted { by },
            ..
        } => Expect::Granted(by.iter().map(|a| a.id.clone()).collect()),
        ClickOutcome::Decided {
            outcome: ApprovalOutcome::Denied { by, .. },
            ..
        } => Expect::Denied(by.id.clone()),
        ClickOutcome::Decided { outcome, .. } => panic!("clicks never decide {outcome:?}"),
    }
}

#[test]
fn every_exit_of_a_click() {
    use RejectReason::*;
    type Edit = fn(&mut Case);
    let table: &[(&str, Edit, Expect)] = &[
        ("first of two approvals", |_| {}, Expect::Counted(1, 2)),
        (
            "approval reaching the quorum",
            |c| c.record.as_mut().unwrap().votes.push(approver("U2")),
            Expect::Granted(vec!["U2".into(), "U1".into()]),
        ),
        (
            "quorum zero means one",
            |c| c.record.as_mut().unwrap().request.quorum = 0,
            Expect::Granted(vec!["U1".into()]),
        ),
        (
            "deny wins at once",
            |c| c.click.action = ACTION_DENY.into(),
            Expect::Denied("U1".into()),
        ),
        (
            "deny after others approved",
            |c| {
                c.click.action = ACTION_DENY.into();
                c.record.as_mut().unwrap().votes.push(approver("U2"));
            },
            Expect::Denied("U1".into()),
        ),
        (
            "second approval by the same person",
            |c| c.record.as_mut().unwrap().votes.push(approver("U1")),
            Expect::Reject(DuplicateVote),
        ),
        (
            "details for anyone who is a person",
            |c| {
                c.click.action = ACTION_DETAILS.into();
                c.configured = None;
            },
            Expect::Details,
        ),
        (
            "button value that is not agp's",
            |c| c.click.button = None,
            Expect::Reject(UnknownNonce),
        ),
        (
            "nonce with no record",
            |c| c.record = None,
            Expect::Reject(UnknownNonce),
        ),
        (
            "users.info failed",
            |c| c.user = None,
            Expect::Reject(LookupFailed),
        ),
        (
            "users.info describes someone else",
            |c| c.user = Some(person("U9")),
            Expect::Reject(LookupFailed),
        ),
        (
            "approver group lookup failed",
            |c| c.configured = None,
            Expect::Reject(LookupFailed),
        ),
        (
            "not a configured approver",
            |c| c.configured = Some(false),
            Expect::Reject(NotApprover),
        ),
        (
            "configured, but not on the request's approver list",
            |c| c.record.as_mut().unwrap().request.approvers = vec!["U2".into()],
            Expect::Reject(NotApprover),
        ),
        (
            "on the request's approver list",
            |c| c.record.as_mut().unwrap().request.approvers = vec!["U1".into()],
            Expect::Counted(1, 2),
        ),
        (
            "approver list matches ids exactly",
            |c| c.record.as_mut().unwrap().request.approvers = vec!["u1".into()],
            Expect::Reject(NotApprover),
        ),
        (
            "deactivated account",
            |c| c.user.as_mut().unwrap().deleted = true,
            Expect::Reject(NotApprover),
        ),
        (
            "a bot",
            |c| c.user.as_mut().unwrap().is_bot = true,
            Expect::Reject(Bot),
        ),
        (
            "a bot asking for details",
            |c| {
                c.click.action = ACTION_DETAILS.into();
                c.user.as_mut().unwrap().is_bot = true;
            },
            Expect::Reject(Bot),
        ),
        (
            "agp's own bot user",
            |c| {
                c.click.user_id = BOT.into();
                c.user = Some(person(BOT));
            },
            Expect::Reject(Bot),
        ),
        (
            "wrong input hash",
            |c| c.click.button.as_mut().unwrap().h = "cd".repeat(32),
            Expect::Reject(Mismatch),
        ),
        (
            "button from another message",
            |c| c.click.message_ts = "3.0".into(),
            Expect::Reject(Mismatch),
        ),
        (
            "button shown in another channel",
            |c| c.click.channel_id = "C2".into(),
            Expect::Reject(Mismatch),
        ),
        (
            "click before the message ts is stored",
            |c| c.record.as_mut().unwrap().message_ts = None,
            Expect::Reject(Mismatch),
        ),
        (
            "at the expiry",
            |c| c.now_ms = NOW + 60_000,
            Expect::Reject(Expired),
        ),
        (
            "timed out already",
            |c| c.record.as_mut().unwrap().outcome = Some(ApprovalOutcome::Timeout),
            Expect::Reject(Expired),
        ),
        (
            "replayed after a grant",
            |c| {
                c.record.as_mut().unwrap().outcome = Some(ApprovalOutcome::Granted {
                    by: vec![approver("U2")],
                });
            },
            Expect::Reject(Replayed),
        ),
        (
            "replayed after being closed unposted",
            |c| {
                c.record.as_mut().unwrap().outcome = Some(ApprovalOutcome::Unavailable {
                    reason: "down".into(),
                });
            },
            Expect::Reject(Replayed),
        ),
        (
            "replayed details",
            |c| {
                c.click.action = ACTION_DETAILS.into();
                c.record.as_mut().unwrap().outcome = Some(ApprovalOutcome::Timeout);
            },
            Expect::Reject(Expired),
        ),
        // Several things wrong at once: the reason is the first in the documented order.
        (
            "mismatch before expiry",
            |c| {
                c.click.message_ts = "3.0".into();
                c.now_ms = u64::MAX;
            },
            Expect::Reject(Mismatch),
        ),
        (
            "expiry before replay",
            |c| {
                c.now_ms = u64::MAX;
                c.record.as_mut().unwrap().outcome = Some(ApprovalOutcome::Granted {
                    by: vec![approver("U2")],
                });
            },
            Expect::Reject(Expired),
        ),
        (
            "failed lookup before an unknown nonce",
            |c| {
                c.user = None;
                c.record = None;
            },
            Expect::Reject(LookupFailed),
        ),
        (
            "a bot that is not an approver",
            |c| {
                c.user.as_mut().unwrap().is_bot = true;
                c.configured = Some(false);
            },
            Expect::Reject(Bot),
        ),
    ];
    for (name, edit, expect) in table {
        let mut case = Case::allow();
        edit(&mut case);
        let before = case.record.clone();
        let got = case.decide();
        assert_eq!(&summary(&got), expect, "{name}");
        assert_eq!(case.record, before, "{name}: deciding changed the record");
    }
}

#[test]
fn a_refusal_names_the_clicker_and_the_call_it_knows_of() {
    let mut case = Case::allow();
    case.configured = Some(false);
    let ClickOutcome::Reject(r) = case.decide() else {
        panic!("expected a refusal")
    };
    assert_eq!(
        r.journal_body(),
        json!({
            "channel": "slack",
            "reason": "not_an_approver",
            "user": {"id": "U1", "name": "U1 name"},
            "action": ACTION_ALLOW,
            "call_id": "c1",
            "input_sha256": "ab".repeat(32),
        })
    );
    assert_eq!(r.session.as_deref(), Some("s1"));

    // Nothing looked up: neither who clicked nor which call.
    let mut case = Case::allow();
    case.click.button = None;
    case.user = None;
    case.record = None;
    let ClickOutcome::Reject(r) = case.decide() else {
        panic!("expected a refusal")
    };
    assert_eq!(
        (r.user_name, r.session, r.call_id, r.input_sha256),
        (None, None, None, None)
    );

    // users.info failed: the call is named, the clicker only by the id Slack sent.
    let mut case = Case::allow();
    case.user = None;
    let ClickOutcome::Reject(r) = case.decide() else {
        panic!("expected a refusal")
    };
    assert_eq!(r.user_name, None);
    assert_eq!(r.call_id.as_deref(), Some("c1"));
}

#[test]
fn a_counted_vote_stores_the_voter_and_a_decision_burns_the_nonce() {
    let ClickOutcome::Counted { record, .. } = Case::allow().decide() else {
        panic!("expected a counted vote")
    };
    assert_eq!(record.votes, vec![approver("U1")]);
    assert_eq!(record.outcome, None);

    let mut case = Case::allow();
    case.click.action = ACTION_DENY.into();
    let ClickOutcome::Decided {
        record, outcome, ..
    } = case.decide()
    else {
        panic!("expected a decision")
    };
    assert_eq!(record.outcome, Some(outcome.clone()));
    assert_eq!(
        outcome,
        ApprovalOutcome::Denied {
            by: approver("U1"),
            reason: Some("denied in Slack".into())
        }
    );

    let mut case = Case::allow();
    case.click.action = ACTION_DETAILS.into();
    assert_eq!(
        case.decide(),
        ClickOutcome::Details {
            channel: "C1".into(),
            request: Box::new(record.request),
        }
    );
}

#[test]
fn only_agps_buttons_on_block_actions_are_clicks() {
    let value = ButtonValue {
        v: 1,
        n: "n1".into(),
        h: "ab".repeat(32),
    }
    .encode();
    let payload = |kind: &str, action: &str| {
        json!({
            "type": kind,
            "user": {"id": "U1"},
            "container": {"channel_id": "C1", "message_ts": "2.0", "thread_ts": "1.0"},
            "actions": [{"action_id": action, "value": value}],
        })
    };
    assert_eq!(
        interaction(&payload("block_actions", ACTION_ALLOW)),
        Ok(click(ACTION_ALLOW))
    );
    let table: &[(&str, Value, Ignored)] = &[
        (
            "view submission",
            payload("view_submission", ACTION_ALLOW),
            Ignored::NotBlockActions,
        ),
        (
            "no type",
            json!({"user": {"id": "U1"}}),
            Ignored::NotBlockActions,
        ),
        (
            "no actions",
            json!({"type": "block_actions", "user": {"id": "U1"}}),
            Ignored::Malformed,
        ),
        (
            "no user",
            json!({"type": "block_actions", "actions": [{"action_id": ACTION_ALLOW}]}),
            Ignored::Malformed,
        ),
        (
            "forged action id",
            payload("block_actions", "agp_allow_all"),
            Ignored::ForeignAction("agp_allow_all".into()),
        ),
    ];
    for (name, p, expect) in table {
        assert_eq!(interaction(p).as_ref(), Err(expect), "{name}");
    }

    // A value that is not a current agp button is still a click (refused as unknown).
    let mut p = payload("block_actions", ACTION_DENY);
    p["actions"][0]["value"] = json!(r#"{"v":2,"n":"n1","h":"x"}"#);
    assert_eq!(interaction(&p).map(|c| c.button), Ok(None));
    // Channel and message fall back to the payload's own fields.
    let p = json!({
        "type": "block_actions",
        "user": {"id": "U1"},
        "channel": {"id": "C7"},
        "message": {"ts": "5.0", "thread_ts": "4.0"},
        "actions": [{"action_id": ACTION_DETAILS}],
    });
    let c = interaction(&p).unwrap();
    assert_eq!(
        (
            c.channel_id.as_str(),
            c.message_ts.as_str(),
            c.thread_ts.as_deref()
        ),
        ("C7", "5.0", Some("4.0"))
    );
}

#[test]
fn the_stop_button_is_for_configured_people_on_the_sessions_own_message() {
    let c = click(ACTION_STOP);
    let alice = UserInfo {
        id: "U1".into(),
        ..person("U1")
    };
    let stop = |user: Option<&UserInfo>, configured, root: Option<&str>| {
        decide_stop(&c, user, configured, root, "C1", BOT)
    };
    assert_eq!(
        stop(Some(&alice), Some(true), Some("2.0")).unwrap().id,
        "U1"
    );
    assert_eq!(
        stop(Some(&alice), Some(false), Some("2.0")),
        Err(RejectReason::NotApprover)
    );
    assert_eq!(
        stop(Some(&alice), None, Some("2.0")),
        Err(RejectReason::LookupFailed)
    );
    assert_eq!(
        stop(None, Some(true), Some("2.0")),
        Err(RejectReason::LookupFailed)
    );
    // The button names a session agp never posted, or another session's message.
    assert_eq!(
        stop(Some(&alice), Some(true), None),
        Err(RejectReason::UnknownNonce)
    );
    assert_eq!(
        stop(Some(&alice), Some(true), Some("9.9")),
        Err(RejectReason::Mismatch)
    );
    let robot = UserInfo {
        is_bot: true,
        ..alice.clone()
    };
    assert_eq!(
        stop(Some(&robot), Some(true), Some("2.0")),
        Err(RejectReason::Bot)
    );
    let someone_else = person("U2");
    assert_eq!(
        stop(Some(&someone_else), Some(true), Some("2.0")),
        Err(RejectReason::LookupFailed)
    );
}
