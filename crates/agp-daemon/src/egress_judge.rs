//! The egress proxy's judge for a session: a request that needs a human (a host nobody listed,
//! a `require` rule) is put to the session's approval channel by the daemon, as an approval of
//! its own kind (see [`crate::EgressAsk`]).

use std::sync::Arc;

use crate::{Daemon, EgressAsk};
use agp_egress::{RequestJudge, RequestView, Verdict, VerdictFuture, UNLISTED_RULE};

pub struct EgressJudge {
    pub daemon: Arc<Daemon>,
    pub session: String,
    /// The daemon's runtime: the proxy serves on a runtime of its own.
    pub runtime: tokio::runtime::Handle,
}

impl RequestJudge for EgressJudge {
    fn judge(&self, request: RequestView) -> VerdictFuture {
        let reason = if request.rule == UNLISTED_RULE {
            format!(
                "{}:{} is not on the egress allowlist and no egress rule covers it",
                request.host, request.port
            )
        } else {
            format!("egress rule {} requires approval", request.rule)
        };
        let ask = EgressAsk {
            method: request.method,
            host: request.host,
            port: request.port,
            path: Some(request.path).filter(|p| !p.is_empty()),
            reason,
        };
        let (daemon, session) = (self.daemon.clone(), self.session.clone());
        // Spawned on the daemon's runtime so it runs to its end (the pending approval settled
        // and journaled) even when the proxy stops waiting.
        let asked = self
            .runtime
            .spawn(async move { daemon.approve_egress(&session, ask).await });
        Box::pin(async move {
            match asked.await {
                Ok(a) if a.allowed => Verdict::Allow(a.reason),
                Ok(a) => Verdict::Deny(a.reason),
                Err(e) => Verdict::Deny(format!("the approval task failed: {e}")),
            }
        })
    }
}
