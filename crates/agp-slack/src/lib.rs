//! agp's Slack approval channel.
//!
//! Approvals are posted with Block Kit buttons in the thread of a per-session root message and
//! decided over Socket Mode (no public endpoint needed). Each approval's buttons carry a random
//! single-use nonce stored with the exact call it is bound to (session, call id, input hash,
//! expiry); clicks are checked against the stored record, never trusted on their own. Only
//! configured people (never bots) may decide; N distinct approvals are needed and any deny
//! wins. Pending approvals and votes are stored in SQLite so a restarted daemon re-attaches to
//! the messages it already posted.
//!
//! The protocol is written here on tokio-tungstenite and ureq rather than slack-morphism: agp
//! needs five Web API methods and the Socket Mode envelope loop, and a hand-written client
//! keeps the binary free of hyper's HTTP/2 stack while reaching plain-http test servers.

pub mod api;
pub mod blocks;
pub mod channel;
pub mod config;
pub mod pending;
pub mod secret;
pub mod setup;
pub mod socket;
pub mod team;
pub mod votes;

#[cfg(feature = "fake")]
pub mod fake;

pub use api::{ApiError, SlackApi};
pub use channel::{RejectReason, Rejection, SlackChannel, SlackChannelBuilder, SlackError};
pub use config::{ConfigError, SlackConfig};
pub use pending::{PendingRecord, PendingStore, SqliteStore, StoreError};
pub use secret::Secret;
pub use setup::{check_tokens, open_channel, settings_path, setup, SlackSetup, TokenCheck};
pub use socket::{Backoff, ConnStatus};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
