//! Session root messages and the projection of journal events into their threads.

use agp_contracts::events::Projection;
use serde_json::Value;

use super::{Inner, SlackError};
use crate::blocks;

impl Inner {
    /// The session's root message ts, posting one (from `body`, or a bare one) if needed.
    pub(super) async fn ensure_root(
        &self,
        session: &str,
        body: Option<&Value>,
    ) -> Result<String, SlackError> {
        let _lock = self.roots.lock().await;
        let existing = self.db.session_root(session).await?;
        let (text, blocks) = blocks::session_root_blocks(session, body.unwrap_or(&Value::Null));
        if let Some(ts) = existing {
            if body.is_some() {
                self.api
                    .update(&self.cfg.channel, &ts, &text, &blocks)
                    .await?;
            }
            Ok(ts)
        } else {
            let ts = self
                .api
                .post_message(&self.cfg.channel, &text, Some(&blocks), None)
                .await?;
            self.db
                .set_session_root(session, &self.cfg.channel, &ts)
                .await?;
            Ok(ts)
        }
    }

    pub(super) async fn project(
        &self,
        session: Option<&str>,
        event: &Projection,
    ) -> Result<(), SlackError> {
        let (kind, body) = (event.kind(), event.body());
        match session {
            Some(s) if matches!(event, Projection::SessionStarted(_)) => {
                self.ensure_root(s, Some(&body)).await?;
            }
            Some(s) => {
                let root = self.ensure_root(s, None).await?;
                let (text, blocks) = blocks::projection_blocks(kind, &body);
                self.api
                    .post_message(&self.cfg.channel, &text, Some(&blocks), Some(&root))
                    .await?;
            }
            None => {
                let (text, blocks) = blocks::projection_blocks(kind, &body);
                self.api
                    .post_message(&self.cfg.channel, &text, Some(&blocks), None)
                    .await?;
            }
        }
        Ok(())
    }
}
