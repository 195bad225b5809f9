//! Waiting for the fake's state to reach a condition, re-checked on every change.

use std::sync::PoisonError;
use std::time::Duration;

use super::{Ephemeral, FakeSlack, PostedMessage, State};

impl FakeSlack {
    /// Waits until `pred` holds on the fake's state (re-checked on every change).
    async fn wait_for<T>(
        &self,
        within: Duration,
        mut pred: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = pred(
                &self
                    .shared
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    pub async fn wait_hellos(&self, n: u64, within: Duration) -> bool {
        self.wait_for(within, |s| {
            (s.hellos >= n && s.conn.is_some()).then_some(())
        })
        .await
        .is_some()
    }

    /// Waits for a message (posted or updated) satisfying `pred`.
    pub async fn wait_message(
        &self,
        within: Duration,
        mut pred: impl FnMut(&PostedMessage) -> bool,
    ) -> Option<PostedMessage> {
        self.wait_for(within, |s| s.messages.iter().find(|m| pred(m)).cloned())
            .await
    }

    /// Waits for the approval message with buttons (the n-th, 0-based).
    pub async fn wait_approval(&self, nth: usize, within: Duration) -> Option<PostedMessage> {
        self.wait_for(within, |s| {
            s.messages
                .iter()
                .filter(|m| m.thread_ts.is_some() && m.text.contains("approval needed"))
                .nth(nth)
                .cloned()
        })
        .await
    }

    pub async fn wait_ephemeral(
        &self,
        user: &str,
        contains: &str,
        within: Duration,
    ) -> Option<Ephemeral> {
        self.wait_for(within, |s| {
            s.ephemerals
                .iter()
                .find(|e| e.user == user && format!("{} {}", e.text, e.blocks).contains(contains))
                .cloned()
        })
        .await
    }

    pub async fn wait_ack(&self, envelope_id: &str, within: Duration) -> bool {
        self.wait_for(within, |s| s.acks.contains(envelope_id).then_some(()))
            .await
            .is_some()
    }
}
