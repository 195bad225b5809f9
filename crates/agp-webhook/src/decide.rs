//! What a verified decision means, decided without I/O: every refusal, and votes.
//!
//! The listener verifies the signature and parses the body; [`decide`] then takes the stored
//! record by reference, so a refused decision cannot change it: only a counted vote yields a
//! new record to store.

use agp_contracts::{approval::via, ApprovalOutcome, ApprovalRequest, Approver};

use crate::wire::{Decision, DecisionDoc};

/// Longest approver name or reason kept from a decision (they reach the journal and the agent).
const MAX_TEXT_CHARS: usize = 500;

/// One approval put to the receiver. The nonce is what decisions must echo; everything a
/// decision is checked against lives here, never in the decision itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 256-bit random hex, issued for this request only.
    pub nonce: String,
    pub request: ApprovalRequest,
    /// Who may decide: the configured approvers the request's rule allows.
    pub eligible: Vec<String>,
    /// Distinct approvers who allowed so far.
    pub votes: Vec<Approver>,
    /// Set once decided (granted, denied, timed out, undeliverable, or withdrawn because agp
    /// stopped waiting): the nonce is then burned.
    pub outcome: Option<ApprovalOutcome>,
}

/// Why a decision was refused. The string forms are what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No signature headers.
    MissingSignature,
    /// A signature that does not verify (or cannot be read).
    BadSignature,
    /// A timestamp outside the window.
    StaleTimestamp,
    /// Not a decision document, or too large.
    Malformed,
    /// No request with this nonce (never issued, or forgotten long after it ended).
    UnknownCall,
    /// The nonce is known but names another call.
    CallMismatch,
    /// The call is known but its input hash differs: the decision is about other input.
    InputHashMismatch,
    /// Past the request's expiry.
    Expired,
    /// The request was already decided: the nonce is burned.
    Replayed,
    /// Not an approver of this call.
    NotApprover,
    /// This approver's allow was already counted.
    DuplicateVote,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MissingSignature => "missing_signature",
            Refusal::BadSignature => "bad_signature",
            Refusal::StaleTimestamp => "stale_timestamp",
            Refusal::Malformed => "malformed",
            Refusal::UnknownCall => "unknown_call",
            Refusal::CallMismatch => "call_mismatch",
            Refusal::InputHashMismatch => "input_hash_mismatch",
            Refusal::Expired => "expired",
            Refusal::Replayed => "replayed",
            Refusal::NotApprover => "not_an_approver",
            Refusal::DuplicateVote => "duplicate_vote",
        }
    }

    /// The HTTP status the listener answers with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::MissingSignature | Refusal::BadSignature | Refusal::StaleTimestamp => 401,
            Refusal::Malformed => 400,
            Refusal::UnknownCall => 404,
            Refusal::NotApprover => 403,
            Refusal::Expired => 410,
            Refusal::CallMismatch
            | Refusal::InputHashMismatch
            | Refusal::Replayed
            | Refusal::DuplicateVote => 409,
        }
    }
}

impl From<crate::sign::SigError> for Refusal {
    fn from(e: crate::sign::SigError) -> Self {
        use crate::sign::SigError;
        match e {
            SigError::Missing => Refusal::MissingSignature,
            SigError::Malformed | SigError::Mismatch => Refusal::BadSignature,
            SigError::Stale => Refusal::StaleTimestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Refuse(Refusal),
    /// An allow was counted; more are needed.
    Counted {
        record: Box<Record>,
        have: usize,
        need: usize,
    },
    /// The record is now decided.
    Decided {
        record: Box<Record>,
        outcome: ApprovalOutcome,
    },
}

fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT_CHARS)
        .collect()
}

/// Decides one authenticated decision against the record its nonce names. The order of the
/// checks matters only for the reason reported; every path but the last two refuses.
pub fn decide(record: Option<&Record>, doc: &DecisionDoc, now_ms: u64) -> Verdict {
    let Some(record) = record else {
        return Verdict::Refuse(Refusal::UnknownCall);
    };
    let req = &record.request;
    let refusal = if req.call_id != doc.call_id {
        Some(Refusal::CallMismatch)
    } else if req.input_sha256 != doc.input_sha256 {
        Some(Refusal::InputHashMismatch)
    } else if now_ms >= req.expires_at_ms || record.outcome == Some(ApprovalOutcome::Timeout) {
        Some(Refusal::Expired)
    } else if record.outcome.is_some() {
        Some(Refusal::Replayed)
    } else if !record.eligible.iter().any(|a| a == &doc.approver) {
        Some(Refusal::NotApprover)
    } else if doc.decision == Decision::Allow && record.votes.iter().any(|a| a.id == doc.approver) {
        Some(Refusal::DuplicateVote)
    } else {
        None
    };
    if let Some(r) = refusal {
        return Verdict::Refuse(r);
    }
    let approver = Approver {
        id: doc.approver.clone(),
        name: doc
            .approver_name
            .as_deref()
            .map(bounded)
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| doc.approver.clone()),
        via: via::WEBHOOK.to_owned(),
    };
    let mut updated = record.clone();
    match doc.decision {
        Decision::Deny => {
            let outcome = ApprovalOutcome::Denied {
                by: approver,
                reason: Some(
                    doc.reason
                        .as_deref()
                        .map(bounded)
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| "denied via webhook".to_owned()),
                ),
            };
            updated.outcome = Some(outcome.clone());
            Verdict::Decided {
                record: Box::new(updated),
                outcome,
            }
        }
        Decision::Allow => {
            updated.votes.push(approver);
            let need = req.quorum.max(1) as usize;
            let have = updated.votes.len();
            if have >= need {
                let outcome = ApprovalOutcome::Granted {
                    by: updated.votes.clone(),
                };
                updated.outcome = Some(outcome.clone());
                Verdict::Decided {
                    record: Box::new(updated),
                    outcome,
                }
            } else {
                Verdict::Counted {
                    record: Box::new(updated),
                    have,
                    need,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(quorum: u32) -> Record {
        Record {
            nonce: "n".into(),
            // From JSON, as the daemon stores it: members added to the contract later take
            // their defaults.
            request: serde_json::from_value::<ApprovalRequest>(json!({
                "session": "s", "call_id": "c", "tool": "Bash",
                "redacted_input": {"command": "mkdir x"}, "input_sha256": "h".repeat(64),
                "reason": "r", "approvers": [], "quorum": quorum, "expires_at_ms": 10_000,
            }))
            .unwrap(),
            eligible: vec!["alice".into(), "bob".into()],
            votes: vec![],
            outcome: None,
        }
    }

    fn doc(approver: &str, decision: Decision) -> DecisionDoc {
        DecisionDoc {
            call_id: "c".into(),
            input_sha256: "h".repeat(64),
            nonce: "n".into(),
            decision,
            approver: approver.into(),
            approver_name: None,
            reason: None,
        }
    }

    fn refused(v: &Verdict) -> Option<Refusal> {
        match v {
            Verdict::Refuse(r) => Some(*r),
            _ => None,
        }
    }

    #[test]
    fn each_binding_is_checked() {
        let r = record(1);
        let d = doc("alice", Decision::Allow);
        assert_eq!(refused(&decide(None, &d, 0)), Some(Refusal::UnknownCall));
        let mut other = d.clone();
        other.call_id = "c2".into();
        assert_eq!(
            refused(&decide(Some(&r), &other, 0)),
            Some(Refusal::CallMismatch)
        );
        let mut other = d.clone();
        other.input_sha256 = "0".repeat(64);
        assert_eq!(
            refused(&decide(Some(&r), &other, 0)),
            Some(Refusal::InputHashMismatch)
        );
        assert_eq!(
            refused(&decide(Some(&r), &d, 10_000)),
            Some(Refusal::Expired)
        );
        assert_eq!(
            refused(&decide(Some(&r), &doc("mallory", Decision::Allow), 0)),
            Some(Refusal::NotApprover)
        );
        // The allowlist is exact: no case folding, no trimming.
        assert_eq!(
            refused(&decide(Some(&r), &doc("Alice", Decision::Allow), 0)),
            Some(Refusal::NotApprover)
        );
    }

    #[test]
    fn a_decided_record_burns_its_nonce() {
        let r = record(1);
        let Verdict::Decided { record, outcome } =
            decide(Some(&r), &doc("alice", Decision::Allow), 0)
        else {
            panic!("not decided")
        };
        assert!(outcome.is_granted());
        assert_eq!(
            refused(&decide(Some(&record), &doc("bob", Decision::Deny), 0)),
            Some(Refusal::Replayed)
        );
        let mut timed_out = r.clone();
        timed_out.outcome = Some(ApprovalOutcome::Timeout);
        assert_eq!(
            refused(&decide(Some(&timed_out), &doc("bob", Decision::Allow), 0)),
            Some(Refusal::Expired)
        );
    }

    #[test]
    fn quorum_counts_distinct_approvers_and_any_deny_wins() {
        let r = record(2);
        let Verdict::Counted { record, have, need } =
            decide(Some(&r), &doc("alice", Decision::Allow), 0)
        else {
            panic!("not counted")
        };
        assert_eq!((have, need), (1, 2));
        assert_eq!(
            refused(&decide(Some(&record), &doc("alice", Decision::Allow), 0)),
            Some(Refusal::DuplicateVote)
        );
        match decide(Some(&record), &doc("bob", Decision::Allow), 0) {
            Verdict::Decided {
                outcome: ApprovalOutcome::Granted { by },
                ..
            } => assert_eq!(
                by.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
                ["alice", "bob"]
            ),
            other => panic!("{other:?}"),
        }
        // Alice changes her mind: a deny after her allow still wins.
        let mut deny = doc("alice", Decision::Deny);
        deny.reason = Some("wrong\u{7}dir".into());
        match decide(Some(&record), &deny, 0) {
            Verdict::Decided {
                outcome: ApprovalOutcome::Denied { by, reason },
                ..
            } => {
                assert_eq!(by.id, "alice");
                assert_eq!(by.via, "webhook");
                assert_eq!(reason.as_deref(), Some("wrongdir"));
            }
            other => panic!("{other:?}"),
        }
    }
}
