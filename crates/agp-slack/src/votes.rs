//! Counting votes on one approval: N distinct approvals grant, any deny wins, and a second
//! click by the same person counts once.

use agp_contracts::{ApprovalOutcome, Approver};

use crate::pending::PendingRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Allow,
    /// Allow, and let the daemon remember it for the session (only where the request offers
    /// it; the caller checks).
    AllowForSession,
    Deny,
}

impl Vote {
    /// As journaled in `approval.vote`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::Allow => "allow",
            Vote::AllowForSession => "allow_for_session",
            Vote::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tally {
    /// Counted; more approvals are needed.
    Counted { have: usize, need: usize },
    /// This person already voted allow; nothing changed.
    Duplicate,
    /// The record is now decided with this outcome.
    Decided(ApprovalOutcome),
}

/// Applies one vote by an already-authorised approver to an undecided record.
pub fn apply(record: &mut PendingRecord, approver: Approver, vote: Vote) -> Tally {
    debug_assert!(record.outcome.is_none());
    let need = record.request.quorum.max(1) as usize;
    match vote {
        Vote::Deny => {
            let outcome = ApprovalOutcome::Denied {
                by: approver,
                reason: Some("denied in Slack".into()),
            };
            record.outcome = Some(outcome.clone());
            Tally::Decided(outcome)
        }
        Vote::Allow | Vote::AllowForSession => {
            if record.votes.iter().any(|a| a.id == approver.id) {
                return Tally::Duplicate;
            }
            if vote == Vote::AllowForSession {
                record.for_session.push(approver.id.clone());
            }
            record.votes.push(approver);
            if record.votes.len() >= need {
                // For the session only if every person counted chose it.
                let all_for_session = record
                    .votes
                    .iter()
                    .all(|a| record.for_session.contains(&a.id));
                let by = record.votes.clone();
                let outcome = if all_for_session {
                    ApprovalOutcome::GrantedForSession { by }
                } else {
                    ApprovalOutcome::Granted { by }
                };
                record.outcome = Some(outcome.clone());
                Tally::Decided(outcome)
            } else {
                Tally::Counted {
                    have: record.votes.len(),
                    need,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agp_contracts::ApprovalRequest;
    use serde_json::json;

    fn rec(quorum: u32) -> PendingRecord {
        PendingRecord {
            nonce: "n".into(),
            request: ApprovalRequest {
                session: "s".into(),
                call_id: "c".into(),
                tool: "Bash".into(),
                redacted_input: json!({}),
                input_sha256: "h".into(),
                rule_id: None,
                reason: "r".into(),
                approvers: vec![],
                quorum,
                expires_at_ms: 0,
                remember_secs: None,
            },
            channel: "C".into(),
            thread_ts: None,
            message_ts: Some("1".into()),
            votes: vec![],
            for_session: Vec::new(),
            outcome: None,
        }
    }

    fn who(id: &str) -> Approver {
        Approver {
            id: id.into(),
            name: id.to_lowercase(),
            via: "slack".into(),
        }
    }

    #[test]
    fn two_of_three_with_a_duplicate() {
        let mut r = rec(2);
        assert_eq!(
            apply(&mut r, who("U1"), Vote::Allow),
            Tally::Counted { have: 1, need: 2 }
        );
        assert_eq!(apply(&mut r, who("U1"), Vote::Allow), Tally::Duplicate);
        match apply(&mut r, who("U2"), Vote::Allow) {
            Tally::Decided(ApprovalOutcome::Granted { by }) => {
                assert_eq!(
                    by.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
                    ["U1", "U2"]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deny_wins_after_approvals() {
        let mut r = rec(3);
        apply(&mut r, who("U1"), Vote::Allow);
        apply(&mut r, who("U2"), Vote::Allow);
        let t = apply(&mut r, who("U3"), Vote::Deny);
        assert!(
            matches!(t, Tally::Decided(ApprovalOutcome::Denied { ref by, .. }) if by.id == "U3")
        );
        assert!(!r.outcome.unwrap().is_granted());
    }

    #[test]
    fn the_grant_is_for_the_session_only_when_every_counted_vote_chose_it() {
        let mut r = rec(2);
        apply(&mut r, who("U1"), Vote::AllowForSession);
        assert!(matches!(
            apply(&mut r, who("U2"), Vote::Allow),
            Tally::Decided(ApprovalOutcome::Granted { .. })
        ));
        let mut r = rec(2);
        apply(&mut r, who("U1"), Vote::AllowForSession);
        // The same person again, the other way: counted once, nothing changes.
        assert_eq!(apply(&mut r, who("U1"), Vote::Allow), Tally::Duplicate);
        match apply(&mut r, who("U2"), Vote::AllowForSession) {
            Tally::Decided(ApprovalOutcome::GrantedForSession { by }) => assert_eq!(by.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quorum_zero_means_one() {
        let mut r = rec(0);
        assert!(matches!(
            apply(&mut r, who("U1"), Vote::Allow),
            Tally::Decided(ApprovalOutcome::Granted { .. })
        ));
    }
}
