//! The egress proxy's judge for a session: a request that needs a human (a host nobody listed,
//! a `require` rule) is put to the session's approval channel by the daemon, as an approval of
//! its own kind (see [`crate::EgressAsk`]).
//!
//! Clients open several connections at once (and retry): identical requests waiting at the
//! same time share one question. An agent could also make up destinations faster than anyone
//! can read them (wildcard DNS resolves any name): at most [`MAX_PENDING`] different questions
//! wait at once per session; more are refused without asking, and say so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agp_egress::{RequestJudge, RequestView, Verdict, VerdictFuture, UNLISTED_RULE};
use tokio::sync::watch;

use crate::{Daemon, EgressAsk};

/// Different egress questions one session may have waiting at once.
pub const MAX_PENDING: usize = 8;

/// What makes two requests the same question.
type Key = (String, String, u16, Option<String>, String);

pub struct EgressJudge {
    daemon: Arc<Daemon>,
    session: String,
    /// The daemon's runtime: the proxy serves on a runtime of its own.
    runtime: tokio::runtime::Handle,
    waiting: Arc<Mutex<HashMap<Key, watch::Receiver<Option<Verdict>>>>>,
}

impl EgressJudge {
    pub fn new(daemon: Arc<Daemon>, session: String, runtime: tokio::runtime::Handle) -> Self {
        Self {
            daemon,
            session,
            runtime,
            waiting: Arc::default(),
        }
    }
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
        let key: Key = (
            ask.method.clone(),
            ask.host.clone(),
            ask.port,
            ask.path.clone(),
            request.rule,
        );
        let mut answer = {
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(rx) = waiting.get(&key) {
                rx.clone()
            } else if waiting.len() >= MAX_PENDING {
                let why = format!(
                    "{MAX_PENDING} egress approvals are already waiting in this session; \
                     refused without asking"
                );
                return Box::pin(async move { Verdict::Deny(why) });
            } else {
                let (tx, rx) = watch::channel(None);
                waiting.insert(key.clone(), rx.clone());
                let (daemon, session) = (self.daemon.clone(), self.session.clone());
                let done = self.waiting.clone();
                // Spawned on the daemon's runtime so it runs to its end (the pending approval
                // settled and journaled) even when the proxy stops waiting.
                self.runtime.spawn(async move {
                    let a = daemon.approve_egress(&session, ask).await;
                    let verdict = if a.allowed {
                        Verdict::Allow(a.reason)
                    } else {
                        Verdict::Deny(a.reason)
                    };
                    done.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&key);
                    let _ = tx.send(Some(verdict));
                });
                rx
            }
        };
        Box::pin(async move {
            match answer.wait_for(Option::is_some).await {
                Ok(v) => v
                    .clone()
                    .unwrap_or_else(|| Verdict::Deny("no answer".into())),
                Err(_) => Verdict::Deny("the approval task ended without an answer".into()),
            }
        })
    }
}
