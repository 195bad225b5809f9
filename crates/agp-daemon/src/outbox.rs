//! Delivers queued projections (session start/end, denials) to the approval channel with retry,
//! exponential backoff and a dead letter. A channel outage never blocks the loop or the journal.

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::Projection;
use serde_json::Value;

use crate::mediate::Mediator;
use crate::util::now_ms;

/// Attempts before an item is dead-lettered.
pub const MAX_ATTEMPTS: i64 = 8;
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
const PROJECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn backoff_ms(attempts_done: i64) -> i64 {
    (1000i64 << attempts_done.clamp(0, 20)).min(MAX_BACKOFF_MS)
}

/// Delivers every due item once; returns how many were attempted.
pub async fn deliver_due(m: &Arc<Mediator>) -> usize {
    let _one_pass = m.outbox_lock.lock().await;
    let due = match m.store.due_outbox(now_ms(), 32).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("outbox unavailable: {e}");
            return 0;
        }
    };
    let n = due.len();
    for item in due {
        // A row that does not read as a projection (written by another version, or damaged)
        // would fail the same way every time: it is dead-lettered at once, not retried.
        let (error, unreadable) = match read_projection(&item.kind, &item.body_json) {
            Err(e) => (Some(e), true),
            Ok(event) => {
                let sent = tokio::time::timeout(
                    PROJECT_TIMEOUT,
                    m.parts.channel.project(item.session.as_deref(), &event),
                )
                .await;
                let error = match sent {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("projection timed out".to_owned()),
                };
                (error, false)
            }
        };
        let id = item.id;
        let recorded = match error {
            None => m.store.outbox_delivered(id).await,
            Some(err) => {
                let dead = unreadable || item.attempts + 1 >= MAX_ATTEMPTS;
                let next = now_ms() + backoff_ms(item.attempts);
                if dead {
                    tracing::warn!("projection {} dead-lettered: {err}", item.kind);
                }
                m.store.outbox_failed(id, &err, next, dead).await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!("outbox bookkeeping failed: {e}");
        }
    }
    n
}

fn read_projection(kind: &str, body_json: &str) -> Result<Projection, String> {
    let body: Value = serde_json::from_str(body_json).map_err(|e| format!("{kind} body: {e}"))?;
    Projection::from_parts(kind, &body).map_err(|e| e.to_string())
}

pub async fn run(m: Arc<Mediator>) {
    loop {
        tokio::select! {
            _ = m.outbox_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        deliver_due(&m).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
