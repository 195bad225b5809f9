//! What a click means, decided without I/O: every refusal, the details view, and votes.
//!
//! The click handler (`click.rs`) gathers the facts (who clicked per users.info, whether they
//! are a configured approver, the stored record under the decision lock) and acts on what
//! [`decide`] returns. Deciding takes the record by reference, so a refused click cannot
//! change it: only a counted vote yields a new record to store.

use agp_contracts::events::{ApprovalRejected, ClickUser, Event};
use agp_contracts::{approval::via, ApprovalOutcome, ApprovalRequest, Approver};
use serde_json::Value;

use super::NAME;
use crate::api::UserInfo;
use crate::blocks::{
    ButtonValue, ACTION_ALLOW, ACTION_ALLOW_SESSION, ACTION_DENY, ACTION_DETAILS, ACTION_STOP,
};
use crate::pending::PendingRecord;
use crate::votes::{self, Tally, Vote};

/// Why a click was refused. The string forms are what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The button's nonce is not one we issued (or its value is not ours).
    UnknownNonce,
    /// The approval was already decided: the nonce is burned.
    Replayed,
    /// Past the request's expiry.
    Expired,
    /// The nonce is known but the click's input hash, channel or message differ.
    Mismatch,
    /// The clicker is not a configured approver for this request.
    NotApprover,
    /// The clicker is a bot (or Slackbot).
    Bot,
    /// users.info (or the user group lookup) failed, so the clicker could not be checked.
    LookupFailed,
    /// The clicker's approval was already counted.
    DuplicateVote,
    /// "Allow for this session" on a request whose rule remembers nothing (a forged button).
    NotOffered,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownNonce => "unknown_nonce",
            RejectReason::Replayed => "replayed",
            RejectReason::Expired => "expired",
            RejectReason::Mismatch => "mismatch",
            RejectReason::NotApprover => "not_an_approver",
            RejectReason::Bot => "bot",
            RejectReason::LookupFailed => "approver_lookup_failed",
            RejectReason::DuplicateVote => "duplicate_vote",
            RejectReason::NotOffered => "not_offered",
        }
    }

    pub(super) fn explain(self) -> &'static str {
        match self {
            RejectReason::UnknownNonce => "this button is not a current agp approval",
            RejectReason::Replayed => "this approval was already decided",
            RejectReason::Expired => "this approval has expired",
            RejectReason::Mismatch => "this button does not belong to this approval",
            RejectReason::NotApprover => "you are not an approver for this call",
            RejectReason::Bot => "bots cannot decide approvals",
            RejectReason::LookupFailed => "agp could not check who you are; try again",
            RejectReason::DuplicateVote => "your approval is already counted",
            RejectReason::NotOffered => "this call cannot be allowed for the whole session",
        }
    }
}

/// A refused click, as journaled under `approval.rejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub user_id: String,
    pub user_name: Option<String>,
    pub action: String,
    pub session: Option<String>,
    pub call_id: Option<String>,
    pub input_sha256: Option<String>,
}

impl Rejection {
    pub fn journal_body(&self) -> Value {
        ApprovalRejected {
            channel: NAME.to_owned(),
            reason: self.reason.as_str().to_owned(),
            user: ClickUser {
                id: self.user_id.clone(),
                name: self.user_name.clone(),
            },
            action: self.action.clone(),
            call_id: self.call_id.clone(),
            input_sha256: self.input_sha256.clone(),
        }
        .to_body()
    }
}

/// Whether a configured approver may decide this request: a person, named by the request's
/// approver list when it has one.
fn may_decide(user: &UserInfo, request: &ApprovalRequest) -> bool {
    !user.deleted
        && !user.is_bot
        && (request.approvers.is_empty() || request_names(request, &user.id))
}

/// Whether the request's approver list names this Slack user id. Exact match, as the daemon
/// checks the granted approvers' ids again against the same list.
pub(super) fn request_names(request: &ApprovalRequest, user_id: &str) -> bool {
    request.approvers.iter().any(|a| a == user_id)
}

/// The parts of a `block_actions` payload agp uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Click {
    pub(super) user_id: String,
    pub(super) action: String,
    /// The button's value, when it decodes as one of agp's.
    pub(super) button: Option<ButtonValue>,
    pub(super) channel_id: String,
    pub(super) message_ts: String,
    pub(super) thread_ts: Option<String>,
}

impl Click {
    fn parse(p: &Value) -> Option<Click> {
        let user_id = p.pointer("/user/id")?.as_str()?.to_owned();
        let action = p.pointer("/actions/0")?;
        // The container names where the button is; older payloads only carry the message.
        let located = |member: &str, fallback: &str| {
            p.get("container")
                .and_then(|c| c.get(member))
                .or_else(|| p.pointer(fallback))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let channel_id = located("channel_id", "/channel/id").unwrap_or_default();
        let message_ts = located("message_ts", "/message/ts").unwrap_or_default();
        let thread_ts = located("thread_ts", "/message/thread_ts");
        Some(Click {
            user_id,
            action: action.get("action_id")?.as_str()?.to_owned(),
            button: action
                .get("value")
                .and_then(Value::as_str)
                .and_then(ButtonValue::decode),
            channel_id,
            message_ts,
            thread_ts,
        })
    }
}

/// Why an interaction is left alone (logged, never answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ignored {
    /// Not a `block_actions` interaction.
    NotBlockActions,
    /// A `block_actions` payload without a user or an action.
    Malformed,
    /// An action id that is not one of agp's buttons.
    ForeignAction(String),
}

/// The click an interaction payload carries, if it is one of agp's buttons.
pub(super) fn interaction(payload: &Value) -> Result<Click, Ignored> {
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return Err(Ignored::NotBlockActions);
    }
    let click = Click::parse(payload).ok_or(Ignored::Malformed)?;
    if ![
        ACTION_ALLOW,
        ACTION_ALLOW_SESSION,
        ACTION_DENY,
        ACTION_DETAILS,
        ACTION_STOP,
    ]
    .contains(&click.action.as_str())
    {
        return Err(Ignored::ForeignAction(click.action));
    }
    Ok(click)
}

/// What is known about a click when it is decided. A fact the handler could not learn is
/// `None`, and deciding treats it as a refusal, never as a pass.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts<'a> {
    pub(super) click: &'a Click,
    /// The clicker as users.info describes them; `None` when the lookup failed.
    pub(super) user: Option<&'a UserInfo>,
    /// Whether the clicker is a configured approver (listed, or in the approver group);
    /// `None` when the group lookup failed or was not made (details need none).
    pub(super) configured: Option<bool>,
    /// The stored record of the button's nonce.
    pub(super) record: Option<&'a PendingRecord>,
    /// agp's own bot user, which never decides.
    pub(super) bot_user: &'a str,
    pub(super) now_ms: u64,
}

/// What to do about a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClickOutcome {
    /// Refused: journaled as `approval.rejected`, the clicker told why; nothing is stored.
    Reject(Rejection),
    /// Show the call's full input to the clicker alone.
    Details {
        channel: String,
        request: Box<ApprovalRequest>,
    },
    /// An approval counted and more are needed: store the record, then show the tally.
    Counted {
        record: Box<PendingRecord>,
        have: usize,
        need: usize,
        vote: Box<CountedVote>,
    },
    /// Granted or denied: store the record before anyone is told.
    Decided {
        record: Box<PendingRecord>,
        outcome: ApprovalOutcome,
        vote: Box<CountedVote>,
    },
}

/// A vote that counted, journaled as `approval.vote` as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CountedVote {
    pub(super) by: Approver,
    pub(super) vote: Vote,
}

impl CountedVote {
    pub(super) fn journal_body(&self, record: &PendingRecord) -> Value {
        let allows = record.votes.len() as u32;
        agp_contracts::events::ApprovalVote {
            call_id: record.request.call_id.clone(),
            input_sha256: record.request.input_sha256.clone(),
            by: self.by.clone(),
            vote: self.vote.as_str().to_owned(),
            channel: NAME.to_owned(),
            have: allows,
            need: record.request.quorum.max(1),
        }
        .to_body()
    }
}

/// Decides one click. The order of the checks matters only for the reason reported.
pub(super) fn decide(f: &Facts<'_>) -> ClickOutcome {
    let reject = |reason| ClickOutcome::Reject(rejection(f, reason));
    let Some(button) = &f.click.button else {
        return reject(RejectReason::UnknownNonce);
    };
    let Some(user) = f.user else {
        return reject(RejectReason::LookupFailed);
    };
    let Some(record) = f.record else {
        return reject(RejectReason::UnknownNonce);
    };
    if let Some(reason) = refusal(f, button, user, record) {
        return reject(reason);
    }
    if f.click.action == ACTION_DETAILS {
        // Details need no authorisation beyond being a person.
        return ClickOutcome::Details {
            channel: record.channel.clone(),
            request: Box::new(record.request.clone()),
        };
    }
    match f.configured.map(|c| c && may_decide(user, &record.request)) {
        Some(true) => {}
        Some(false) => return reject(RejectReason::NotApprover),
        None => return reject(RejectReason::LookupFailed),
    }
    let approver = Approver {
        id: user.id.clone(),
        name: user.name.clone(),
        via: via::SLACK.into(),
    };
    let vote = match f.click.action.as_str() {
        ACTION_ALLOW => Vote::Allow,
        ACTION_ALLOW_SESSION if record.request.remember_secs.is_some() => Vote::AllowForSession,
        ACTION_ALLOW_SESSION => return reject(RejectReason::NotOffered),
        _ => Vote::Deny,
    };
    let mut updated = record.clone();
    let counted = Box::new(CountedVote {
        by: approver.clone(),
        vote,
    });
    match votes::apply(&mut updated, approver, vote) {
        Tally::Duplicate => reject(RejectReason::DuplicateVote),
        Tally::Counted { have, need } => ClickOutcome::Counted {
            record: Box::new(updated),
            have,
            need,
            vote: counted,
        },
        Tally::Decided(outcome) => ClickOutcome::Decided {
            record: Box::new(updated),
            outcome,
            vote: counted,
        },
    }
}

/// Who may press a session's Stop button: a configured approver (listed, or in the approver
/// group), a person, clicking on that session's own root message. `root_ts` is the stored
/// root message of the session the button names (`None`: a session agp never posted).
pub(super) fn decide_stop(
    click: &Click,
    user: Option<&UserInfo>,
    configured: Option<bool>,
    root_ts: Option<&str>,
    channel: &str,
    bot_user: &str,
) -> Result<Approver, RejectReason> {
    let user = user.ok_or(RejectReason::LookupFailed)?;
    let root_ts = root_ts.ok_or(RejectReason::UnknownNonce)?;
    if root_ts != click.message_ts || channel != click.channel_id {
        return Err(RejectReason::Mismatch);
    }
    if user.id != click.user_id {
        return Err(RejectReason::LookupFailed);
    }
    if user.is_bot || user.deleted || user.id == bot_user {
        return Err(RejectReason::Bot);
    }
    match configured {
        Some(true) => Ok(Approver {
            id: user.id.clone(),
            name: user.name.clone(),
            via: via::SLACK.into(),
        }),
        Some(false) => Err(RejectReason::NotApprover),
        None => Err(RejectReason::LookupFailed),
    }
}

/// Why a click on a known record is refused whatever its action, if it is.
fn refusal(
    f: &Facts<'_>,
    button: &ButtonValue,
    user: &UserInfo,
    record: &PendingRecord,
) -> Option<RejectReason> {
    let click = f.click;
    if record.request.input_sha256 != button.h
        || record.message_ts.as_deref() != Some(click.message_ts.as_str())
        || record.channel != click.channel_id
    {
        Some(RejectReason::Mismatch)
    } else if f.now_ms >= record.request.expires_at_ms
        || record.outcome == Some(ApprovalOutcome::Timeout)
    {
        Some(RejectReason::Expired)
    } else if record.outcome.is_some() {
        Some(RejectReason::Replayed)
    } else if user.id != click.user_id {
        // users.info must describe the clicker; anything else cannot be trusted.
        Some(RejectReason::LookupFailed)
    } else if user.is_bot || user.id == f.bot_user {
        Some(RejectReason::Bot)
    } else {
        None
    }
}

/// The journal record of a refused click: who clicked what, and which call it was about when
/// the record is known.
fn rejection(f: &Facts<'_>, reason: RejectReason) -> Rejection {
    Rejection {
        reason,
        user_id: f.click.user_id.clone(),
        user_name: f.user.map(|u| u.name.clone()),
        action: f.click.action.clone(),
        session: f.record.map(|r| r.request.session.clone()),
        call_id: f.record.map(|r| r.request.call_id.clone()),
        input_sha256: f.record.map(|r| r.request.input_sha256.clone()),
    }
}

#[cfg(test)]
mod tests;
