//! The team's approval queue, as one daemon's approval channel.
//!
//! In team mode (`[state] url = "postgres://…"` with a team channel such as Slack) a daemon
//! does not talk to the channel itself: every daemon records its pending approvals in the
//! shared store (the daemon does so before asking any channel), one daemon at a time holds the
//! channel's connection and relays (agp-slack's `team` module), and writes the outcome next to
//! the pending row. [`TeamChannel`] is the asking daemon's side: it waits for that outcome,
//! woken by the store's NOTIFY hint and always re-reading, with a slow poll for hints lost
//! while a connection was down. The daemon then checks, settles and journals the outcome as
//! for any channel (`conclude`: approver allowlist, quorum, binding to the input hash).

use std::sync::Arc;
use std::time::Duration;

use agp_contracts::events::Projection;
use agp_contracts::{ApprovalChannel, ApprovalOutcome, ApprovalRequest, BoxFuture, ChannelError};

use crate::store::contract::{wait_hint, StateStore, Topic};
use crate::store::PgStore;

/// Re-read at least this often: hints are lost while the LISTEN connection is down.
pub const TEAM_POLL: Duration = Duration::from_millis(500);

/// A daemon's view of a channel served by the team's relay.
pub struct TeamChannel {
    store: Arc<PgStore>,
    name: String,
    poll: Duration,
}

impl TeamChannel {
    /// `name` is the relayed channel's (`slack`), journaled with outcomes.
    pub fn new(store: Arc<PgStore>, name: &str) -> Self {
        Self {
            store,
            name: name.to_owned(),
            poll: TEAM_POLL,
        }
    }

    /// Waits until the relay stored an outcome for exactly this call and input. Unbounded:
    /// the daemon's approval timeout (and an abandoning agent) end the wait.
    async fn wait_outcome(&self, request: &ApprovalRequest) -> ApprovalOutcome {
        let mut hints = self.store.wakeups(Topic::Approvals);
        let mut told_unavailable = false;
        loop {
            // Marked seen before reading: a hint arriving during the read wakes the next wait.
            hints.borrow_and_update();
            match self
                .store
                .relayed_outcome(&request.session, &request.call_id, &request.input_sha256)
                .await
            {
                Ok(Some(json)) => {
                    return serde_json::from_str(&json).unwrap_or_else(|e| {
                        ApprovalOutcome::Unavailable {
                            reason: format!("the relayed outcome does not read: {e}"),
                        }
                    });
                }
                Ok(None) => told_unavailable = false,
                Err(e) => {
                    // Waiting goes on: a decision relayed meanwhile is read once the store is
                    // back, and the approval timeout still bounds the wait.
                    if !told_unavailable {
                        tracing::warn!(call = %request.call_id, "waiting for the team's decision: {e}");
                        told_unavailable = true;
                    }
                }
            }
            wait_hint(&mut hints, self.poll).await;
        }
    }
}

impl ApprovalChannel for TeamChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn request_approval<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<ApprovalOutcome, ChannelError>> {
        Box::pin(async move { Ok(self.wait_outcome(request).await) })
    }

    /// Projections (session start and end messages) are not relayed: the relay posts a
    /// session's root message with its first approval. Dropped here, said once per event.
    fn project<'a>(
        &'a self,
        session: Option<&'a str>,
        _event: &'a Projection,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            tracing::debug!(?session, "team mode: projection not relayed");
            Ok(())
        })
    }

    // `cancel` keeps the default: the daemon settling the pending row is what the relay
    // watches, and it withdraws the prompt from the channel itself.
}
