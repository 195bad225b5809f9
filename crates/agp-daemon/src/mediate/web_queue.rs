//! The web console's view of pending approvals: every request the daemon puts to its channel is
//! registered here while it waits, and a console's decision is checked against it.
//!
//! Binding: each listing hands out a fresh random nonce per request, bound to that request's
//! call id, input hash and expiry. A nonce is burned the first time a decision names it, whatever
//! the decision's fate, and with all the request's other nonces once the request is settled (by
//! anyone). A decision is applied only by claiming the request's one-shot sender under the lock,
//! so of a web decision and the configured channel's outcome exactly one wins.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use agp_contracts::{ApprovalOutcome, ApprovalRequest, Approver};
use agp_gateway::{DecisionApplied, WebDecision};
use tokio::sync::oneshot;

/// Nonces kept per request: a console that lists often must not grow the book without bound
/// (the oldest nonce of a request is dropped, so it reads as unknown).
const NONCES_PER_REQUEST: usize = 8;
/// Burned nonces remembered, to tell a replay from a nonce never issued.
const BURNED_KEPT: usize = 4096;
/// How long after a listing a console counts as watching (see [`WebQueue::watched`]).
const WATCHING_MS: u64 = 60_000;
/// `approval.rejected` entries journaled per minute; past it refusals are only logged.
const REJECTED_PER_MINUTE: u32 = 60;
/// Longest reason kept from a console (it reaches the journal and the agent).
const MAX_REASON_CHARS: usize = 500;

/// Why a console's decision was refused. The string forms are what the journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebRefusal {
    /// `[approvals] web = false`: the console is view-only.
    ViewOnly,
    /// The kernel did not name the connecting user.
    NoPeerUser,
    /// No such nonce was ever issued (or it was dropped as one of too many).
    UnknownNonce,
    /// The nonce was already used by a decision.
    Replayed,
    /// The nonce names another call.
    CallMismatch,
    /// The call is right but its input hash differs: the decision is about other input.
    InputHashMismatch,
    Expired,
    /// Someone else (the configured channel, another console decision) settled it first.
    AlreadyDecided,
    /// The request's session ended (or was stopped) before the decision.
    SessionEnded,
    /// This console's user is not on the rule's approver list.
    NotApprover,
    /// The request needs more distinct approvers than one console user.
    QuorumNeedsOthers,
    /// "Allow for this session" was not offered for this request.
    SessionGrantNotOffered,
    /// The decision was claimed but the request ended before it was applied.
    NotApplied,
}

impl WebRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            WebRefusal::ViewOnly => "view_only",
            WebRefusal::NoPeerUser => "no_peer_user",
            WebRefusal::UnknownNonce => "unknown_nonce",
            WebRefusal::Replayed => "replayed",
            WebRefusal::CallMismatch => "call_mismatch",
            WebRefusal::InputHashMismatch => "input_hash_mismatch",
            WebRefusal::Expired => "expired",
            WebRefusal::AlreadyDecided => "already_decided",
            WebRefusal::SessionEnded => "session_ended",
            WebRefusal::NotApprover => "not_an_approver",
            WebRefusal::QuorumNeedsOthers => "quorum_needs_other_approvers",
            WebRefusal::SessionGrantNotOffered => "session_grant_not_offered",
            WebRefusal::NotApplied => "not_applied",
        }
    }
}

/// What this console's user may do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rights {
    pub approve: bool,
    pub deny: bool,
    pub why_not: Option<String>,
}

/// What `me` may decide about `request` from the console. Deny follows the same allowlist as
/// allow (only someone allowed to decide may say no); a quorum above one cannot be met by one
/// console user, so only its deny is taken here (any deny wins).
pub(crate) fn rights(
    request: &ApprovalRequest,
    me: &Approver,
    view_only: bool,
    channel: &str,
) -> Rights {
    let no = |why: String| Rights {
        approve: false,
        deny: false,
        why_not: Some(why),
    };
    if view_only {
        return no("this daemon's console is view-only ([approvals] web = false)".into());
    }
    if !request.approvers.is_empty() && !request.approvers.contains(&me.id) {
        return no(format!(
            "only {} may decide this call, and {} is not one of them",
            request.approvers.join(", "),
            me.id
        ));
    }
    if request.quorum > 1 {
        return Rights {
            approve: false,
            deny: true,
            why_not: Some(format!(
                "this call needs {} distinct approvers and the console is one person ({}): \
                 approve it through the {channel} channel; a deny here still ends it",
                request.quorum, me.id
            )),
        };
    }
    Rights {
        approve: true,
        deny: true,
        why_not: None,
    }
}

/// A console's decision as it arrived (everything claimed by the client, nothing trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WebDecide {
    pub call_id: String,
    pub input_sha256: String,
    pub nonce: String,
    pub decision: WebDecision,
    pub reason: Option<String>,
}

/// A claimed decision, handed to the waiting request; `done` learns how it was concluded.
pub(crate) struct WebVote {
    pub outcome: ApprovalOutcome,
    pub vote: WebDecision,
    pub done: oneshot::Sender<DecisionApplied>,
}

/// One listed request: the request and the nonce a decision about it must echo.
pub(crate) struct Listed {
    pub request: ApprovalRequest,
    pub channel: String,
    pub nonce: String,
}

struct Entry {
    request: ApprovalRequest,
    channel: String,
    /// Taken by the one decision that wins; gone once the request is claimed.
    claim: Option<oneshot::Sender<WebVote>>,
    nonces: VecDeque<String>,
}

#[derive(Debug, Clone)]
struct Burned {
    session: String,
    /// Burned by a decision naming it (a replay), or because its request was settled.
    used: bool,
}

#[derive(Default)]
struct Book {
    next_id: u64,
    /// In registration order: a console lists the oldest first.
    entries: BTreeMap<u64, Entry>,
    nonces: HashMap<String, u64>,
    burned: HashMap<String, Burned>,
    burned_order: VecDeque<String>,
}

impl Book {
    fn burn(&mut self, nonce: String, session: &str, used: bool) {
        if self.burned.len() >= BURNED_KEPT {
            if let Some(old) = self.burned_order.pop_front() {
                self.burned.remove(&old);
            }
        }
        self.burned_order.push_back(nonce.clone());
        self.burned.insert(
            nonce,
            Burned {
                session: session.to_owned(),
                used,
            },
        );
    }

    /// Removes a request and burns its nonces.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let mut entry = self.entries.remove(&id)?;
        for nonce in std::mem::take(&mut entry.nonces) {
            self.nonces.remove(&nonce);
            self.burn(nonce, &entry.request.session, false);
        }
        Some(entry)
    }
}

#[derive(Default)]
pub(crate) struct WebQueue {
    book: Mutex<Book>,
    /// (minute, `approval.rejected` entries journaled in it).
    budget: Mutex<(u64, u32)>,
    last_listed_ms: AtomicU64,
}

/// A request's place in the queue while its channel is asked; dropping it (the request was
/// settled, timed out, or its caller gave up) removes the request and burns its nonces.
pub(crate) struct Registration<'a> {
    queue: &'a WebQueue,
    id: u64,
    pub rx: oneshot::Receiver<WebVote>,
}

impl Registration<'_> {
    /// The configured channel answered: closes the request to the console. A decision the
    /// console claimed before this is returned: it came first and wins.
    pub fn close(&mut self) -> Option<WebVote> {
        self.queue.lock().remove(self.id);
        self.rx.try_recv().ok()
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.queue.lock().remove(self.id);
    }
}

impl WebQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `request` (put to `channel`) until the returned registration is dropped.
    pub fn register(&self, request: &ApprovalRequest, channel: &str) -> Registration<'_> {
        let (tx, rx) = oneshot::channel();
        let mut book = self.lock();
        let id = book.next_id;
        book.next_id += 1;
        book.entries.insert(
            id,
            Entry {
                request: request.clone(),
                channel: channel.to_owned(),
                claim: Some(tx),
                nonces: VecDeque::new(),
            },
        );
        Registration {
            queue: self,
            id,
            rx,
        }
    }

    /// The pending requests not yet expired at `now_ms`, oldest first, at most `limit`, each with
    /// a fresh nonce; and how many more there were.
    pub fn list(
        &self,
        now_ms: u64,
        limit: usize,
        mut nonce: impl FnMut() -> Option<String>,
    ) -> (Vec<Listed>, usize) {
        self.last_listed_ms.store(now_ms, Ordering::Relaxed);
        let mut book = self.lock();
        let ids: Vec<u64> = book
            .entries
            .iter()
            .filter(|(_, e)| e.claim.is_some() && now_ms < e.request.expires_at_ms)
            .map(|(id, _)| *id)
            .collect();
        let omitted = ids.len().saturating_sub(limit);
        let mut listed = Vec::new();
        for id in ids.into_iter().take(limit) {
            let Some(n) = nonce() else { continue };
            let Some(entry) = book.entries.get_mut(&id) else {
                continue;
            };
            entry.nonces.push_back(n.clone());
            let dropped = (entry.nonces.len() > NONCES_PER_REQUEST)
                .then(|| entry.nonces.pop_front())
                .flatten();
            let item = Listed {
                request: entry.request.clone(),
                channel: entry.channel.clone(),
                nonce: n.clone(),
            };
            if let Some(old) = dropped {
                book.nonces.remove(&old);
            }
            book.nonces.insert(n, id);
            listed.push(item);
        }
        (listed, omitted)
    }

    /// Whether a console listed approvals lately: a channel that cannot ask anyone (no
    /// terminal) then leaves the request to the console instead of denying at once.
    pub fn watched(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_listed_ms.load(Ordering::Relaxed)) < WATCHING_MS
    }

    /// Checks `d` against the request its nonce names and, when it holds, hands the decision to
    /// the waiting request. The nonce is burned whatever happens. `session_live` says whether a
    /// session is still live; `me` is the console's user. On success: the receiver of how the
    /// decision was concluded, and the request it decided.
    pub fn decide(
        &self,
        d: &WebDecide,
        me: &Approver,
        now_ms: u64,
        session_live: impl Fn(&str) -> bool,
    ) -> Result<(oneshot::Receiver<DecisionApplied>, ApprovalRequest), (WebRefusal, Option<String>)>
    {
        let mut book = self.lock();
        let Some(id) = book.nonces.remove(&d.nonce) else {
            let Some(b) = book.burned.get_mut(&d.nonce) else {
                return Err((WebRefusal::UnknownNonce, None));
            };
            // Named once now: a second time is a replay, whatever the first was.
            let first = !std::mem::replace(&mut b.used, true);
            let session = Some(b.session.clone());
            return Err(match (first, session_live(&b.session)) {
                (false, _) => (WebRefusal::Replayed, session),
                (true, false) => (WebRefusal::SessionEnded, session),
                (true, true) => (WebRefusal::AlreadyDecided, session),
            });
        };
        let Some(entry) = book.entries.get_mut(&id) else {
            return Err((WebRefusal::AlreadyDecided, None));
        };
        entry.nonces.retain(|n| n != &d.nonce);
        let request = entry.request.clone();
        let channel = entry.channel.clone();
        let session = request.session.clone();
        book.burn(d.nonce.clone(), &session, true);
        let refuse = |r: WebRefusal| Err((r, Some(session.clone())));
        if request.call_id != d.call_id {
            return refuse(WebRefusal::CallMismatch);
        }
        if request.input_sha256 != d.input_sha256 {
            return refuse(WebRefusal::InputHashMismatch);
        }
        if now_ms >= request.expires_at_ms {
            return refuse(WebRefusal::Expired);
        }
        if !session_live(&session) {
            return refuse(WebRefusal::SessionEnded);
        }
        let may = rights(&request, me, false, &channel);
        let allowed = match d.decision {
            WebDecision::Deny => may.deny,
            WebDecision::Allow | WebDecision::AllowSession => may.approve,
        };
        if !allowed {
            return refuse(if may.deny {
                WebRefusal::QuorumNeedsOthers
            } else {
                WebRefusal::NotApprover
            });
        }
        if d.decision == WebDecision::AllowSession && request.remember_secs.is_none() {
            return refuse(WebRefusal::SessionGrantNotOffered);
        }
        let outcome = match d.decision {
            WebDecision::Allow => ApprovalOutcome::Granted {
                by: vec![me.clone()],
            },
            WebDecision::AllowSession => ApprovalOutcome::GrantedForSession {
                by: vec![me.clone()],
            },
            WebDecision::Deny => ApprovalOutcome::Denied {
                by: me.clone(),
                reason: Some(
                    d.reason
                        .as_deref()
                        .map(bounded)
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| "denied in the web console".to_owned()),
                ),
            },
        };
        // Claimed under the lock: the request leaves the queue, its other nonces burn.
        let claim = book.remove(id).and_then(|mut e| e.claim.take());
        let Some(claim) = claim else {
            return refuse(WebRefusal::AlreadyDecided);
        };
        let (done, applied) = oneshot::channel();
        let vote = WebVote {
            outcome,
            vote: d.decision,
            done,
        };
        if claim.send(vote).is_err() {
            return refuse(WebRefusal::AlreadyDecided);
        }
        Ok((applied, request))
    }

    /// Whether one more `approval.rejected` may be journaled this minute.
    pub fn take_budget(&self, now_ms: u64) -> bool {
        let mut g = self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute = now_ms / 60_000;
        if g.0 != minute {
            *g = (minute, 0);
        }
        g.1 += 1;
        g.1 <= REJECTED_PER_MINUTE
    }
}

/// Text from a console, without control or bidi-override characters, and bounded.
pub(crate) fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .take(MAX_REASON_CHARS)
        .collect()
}

#[cfg(test)]
#[path = "web_queue_tests.rs"]
mod tests;
