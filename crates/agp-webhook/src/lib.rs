//! agp's webhook approval channel, for teams whose approvers live in another chat tool.
//!
//! Each approval request is POSTed as JSON to the team's receiver, signed with HMAC-SHA256
//! over `"<timestamp>.<body>"` under a shared secret; the receiver asks its people and POSTs
//! each decision back, signed the same way, to agp's local listener. Decisions are bound to
//! the call (call id, input hash) and to a random single-use nonce issued with the request;
//! only configured approvers count, N distinct approvals are needed and any deny wins; late,
//! replayed, forged or mismatched decisions are refused and journaled (`approval.rejected`).
//! The wire format is in the README ("Webhook approvals").
//!
//! Pending approvals live in memory: after a daemon restart the earlier nonces are unknown, so
//! decisions about them are refused (the daemon's own restart recovery settles those calls).

pub mod channel;
pub mod config;
pub mod decide;
pub mod deliver;
mod listener;
pub mod secret;
pub mod sign;
pub mod wire;

pub use channel::{WebhookChannel, WebhookChannelBuilder, WebhookError};
pub use config::{ConfigError, SecretSource, Settings, WebhookConfig};
pub use deliver::{Backoff, DeliveryError};
pub use secret::Secret;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
