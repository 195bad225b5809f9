//! agp's local web console: sessions side by side, one session's calls as a timeline, pending
//! approvals with Allow / Deny, the journal (verify, inclusion proofs) and the policy in force
//! with an "explain this call" box. Served by the `agp` binary itself (`agp console`,
//! `agp daemon --console`): server-rendered HTML (maud), one small script and one stylesheet
//! compiled in, nothing fetched from anywhere.
//!
//! * [`security`]: the token / cookie / CSRF / Host / Origin checks and the response headers
//!   every page carries (strict CSP).
//! * [`data`]: what the pages read ([`ConsoleData`], [`Approvals`]); [`index`] serves the
//!   first from the journal index (`agp-journal-index`).
//! * [`pages`]: the handlers.
//! * [`live`]: server-sent events when the journal grows.
//! * [`serve`]: binding (loopback, or TLS), the accept loop.

pub mod daemon;
pub mod data;
pub mod index;
pub mod live;
pub mod pages;
pub mod security;
pub mod serve;
pub mod text;

use std::path::PathBuf;
use std::sync::Arc;

use agp_contracts::EvalContext;
use agp_journal::VerifierKey;
use axum::routing::{get, post};
use axum::Router;

pub use data::{Approvals, ConsoleData, DataError};
pub use serve::{Console, ConsoleError, ConsoleOptions, TlsFiles};

/// What the pages need besides the data: where things are and what this console may do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shows no Allow / Deny and refuses decisions.
    pub view_only: bool,
    pub journal_dir: PathBuf,
    /// The key the Verify button and the proofs check checkpoints with (the home's
    /// `keys/journal.pub`); `None`: the home has no journal key yet.
    pub verifier_key: Option<VerifierKey>,
    /// The policy in force; `None`: none configured.
    pub policy_path: Option<PathBuf>,
    /// Where "explain this call" judges from.
    pub eval_context: EvalContext,
    /// The OS user the console runs as (the approver the daemon will journal).
    pub operator: String,
}

/// Everything a handler reaches.
#[derive(Clone)]
pub struct AppState {
    pub guard: Arc<security::Guard>,
    pub data: Arc<dyn ConsoleData>,
    /// `None`: no daemon to ask (shown as such; nothing to decide).
    pub approvals: Option<Arc<dyn Approvals>>,
    pub settings: Arc<Settings>,
    pub live: live::Live,
    /// One Verify at a time: it reads the whole journal.
    pub verifying: Arc<tokio::sync::Mutex<()>>,
}

/// The whole console behind its guard.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::sessions::list))
        .route("/sessions/{id}", get(pages::timeline::show))
        .route("/approvals", get(pages::approvals::list))
        .route("/approvals/decide", post(pages::approvals::decide))
        .route("/journal", get(pages::journal::show))
        .route("/journal/verify", post(pages::journal::verify))
        .route("/journal/proof", get(pages::journal::proof))
        .route("/journal/entry", get(pages::journal::entry))
        .route("/policy", get(pages::policy::show))
        .route("/events", get(live::events))
        .route("/static/console.js", get(pages::assets::script))
        .route("/static/console.css", get(pages::assets::style))
        .route("/favicon.ico", get(pages::assets::no_icon))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::guard,
        ))
        .with_state(state)
}
