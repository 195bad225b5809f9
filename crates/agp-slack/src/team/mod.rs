//! Team mode: one Slack connection for a team of daemons sharing PostgreSQL.
//!
//! Each daemon records its pending approvals in the shared store and waits there for the
//! outcome (`agp_daemon::team::TeamChannel`); the one daemon holding the Slack lease runs
//! [`SlackRelay`], which puts every member's approvals to Slack through this crate's channel
//! (nonce-bound buttons, approver allowlist, quorum, votes) with its records in the shared
//! store ([`PgPendingStore`]), and writes each outcome back, fenced by its lease.

mod relay;
mod store;

pub use relay::{RelayOptions, SlackRelay};
pub use store::{PgPendingStore, CHANNEL};
