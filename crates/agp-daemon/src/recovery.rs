//! What a starting daemon does about the previous one's leftovers: reap sessions whose lease
//! expired, and settle approvals that were pending when it stopped.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::{ApprovalTimeout, SessionReaped};
use agp_contracts::{ApprovalOutcome, ApprovalRequest, JournalError};

use crate::mediate::Mediator;
use crate::store::{PendingRow, SessionRow, StoreError};
use crate::util::now_ms;

/// How long settled bookkeeping (call ids of ended sessions, delivered projections, settled
/// approvals) is kept; the journal keeps everything forever.
const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Lease owner prefix of daemons whose sessions die with their process (`agp run`).
pub(crate) const EPHEMERAL_OWNER_PREFIX: &str = "run-";

/// Reaps expired sessions and settles pending approvals. Approvals still within their time are
/// re-attached: put to the channel again for the time left, and the outcome journaled. The
/// agent that asked is gone (its connection died with the old daemon and it was denied), so a
/// late grant is recorded, never executed.
pub async fn recover(m: &Arc<Mediator>) -> Result<Vec<tokio::task::JoinHandle<()>>, RecoveryError> {
    let ttl = m.config.lease_ttl.as_millis() as i64;
    let now = now_ms();
    // Only one daemon serves a home at a time, so an `agp run` that held a session is gone:
    // its session cannot be resumed and its approvals must never be shown again.
    let orphans = m.store.end_orphans(EPHEMERAL_OWNER_PREFIX, now).await?;
    for row in &orphans {
        let reaped = SessionReaped {
            status: Some("interrupted".into()),
            reason: Some("the `agp run` process that held the session is gone".into()),
            ..reaped_body(row)
        };
        m.record(Some(&row.id), &reaped).await?;
    }
    let reaped = m.store.reap_expired(now - ttl, now).await?;
    for row in &reaped {
        m.record(Some(&row.id), &reaped_body(row)).await?;
        // The dead daemon never checked what the session left; the snapshot it stored says
        // what was there before.
        let report =
            crate::integrity::check(m, &row.id, std::path::Path::new(&row.repo), None).await;
        m.record(Some(&row.id), &report).await?;
    }

    let pruned = m.store.prune(now - RETENTION_MS).await?;
    if pruned > 0 {
        tracing::info!("pruned {pruned} settled state rows older than 7 days");
    }

    let pending = m.store.pending().await?;
    let mut reattached = Vec::new();
    for row in pending {
        let active = m
            .store
            .session(&row.session)
            .await?
            .is_some_and(|s| s.status == "active");
        let request: Option<ApprovalRequest> = serde_json::from_str(&row.request_json).ok();
        let left = row.expires_at_ms - now_ms();
        match request {
            Some(request) if active && left > 0 => {
                let m = m.clone();
                reattached.push(tokio::spawn(async move {
                    reattach(m, request, Duration::from_millis(left as u64)).await;
                }));
            }
            _ => expire(m, &row, active).await?,
        }
    }
    Ok(reattached)
}

async fn expire(
    m: &Arc<Mediator>,
    row: &PendingRow,
    session_active: bool,
) -> Result<(), RecoveryError> {
    if !m
        .settle_pending(&row.session, &row.call_id, &row.input_sha256, "timeout")
        .await?
    {
        return Ok(());
    }
    let reason = if session_active {
        "expired while the daemon was down"
    } else {
        "the session ended while the daemon was down"
    };
    let timeout = ApprovalTimeout {
        call_id: row.call_id.clone(),
        input_sha256: row.input_sha256.clone(),
        channel: m.parts.channel.name().to_owned(),
        waited_ms: None,
        recovered: Some(true),
        reason: Some(reason.into()),
    };
    m.record(Some(&row.session), &timeout).await?;
    Ok(())
}

async fn reattach(m: Arc<Mediator>, request: ApprovalRequest, left: Duration) {
    let channel = m.parts.channel.name().to_owned();
    let started = std::time::Instant::now();
    // Open to the web console too, as every pending approval is.
    let registration = m.open_to_console(&request);
    let (outcome, web) =
        match tokio::time::timeout(left, m.put_to_channels(&request, registration)).await {
            Ok(Ok(d)) => (d.outcome, d.web),
            Ok(Err(e)) => (
                ApprovalOutcome::Unavailable {
                    reason: e.to_string(),
                },
                None,
            ),
            Err(_) => (ApprovalOutcome::Timeout, None),
        };
    let decided_by = if web.is_some() {
        agp_contracts::approval::via::WEB
    } else {
        channel.as_str()
    };
    let session = request.session.clone();
    let end = m
        .conclude(
            &session,
            &request,
            decided_by,
            outcome,
            None,
            started.elapsed(),
        )
        .await;
    if let Some(done) = web {
        let _ = done.send(agp_gateway::DecisionApplied {
            call_id: request.call_id.clone(),
            granted: end.granted,
            reason: end.reason.clone(),
        });
    }
    tracing::info!(
        "re-attached approval {} settled: granted={} ({})",
        request.call_id,
        end.granted,
        end.reason
    );
}

/// The members every `session.reaped` entry has, from the session's stored row.
fn reaped_body(row: &SessionRow) -> SessionReaped {
    SessionReaped {
        session: row.id.clone(),
        intendant: row.intendant.clone(),
        lease_owner: row.lease_owner.clone(),
        fencing_token: row.fencing_token,
        last_heartbeat_ms: row.heartbeat_ms,
        status: None,
        reason: None,
    }
}
