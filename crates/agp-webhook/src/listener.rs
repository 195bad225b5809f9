//! The decision listener: an HTTP/1 server (hyper) with one endpoint, `POST /agp/v1/decision`.
//! Every decision is verified (signature, timestamp window) before its body is even parsed;
//! each refusal is answered with its reason and journaled (`approval.rejected`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_contracts::events::{ApprovalRejected, ApprovalVote, ClickUser, Event, APPROVAL_REJECTED};
use agp_contracts::{ApprovalOutcome, Approver};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;

use crate::channel::{Inner, NAME};
use crate::decide::{decide, Refusal, Verdict};
use crate::now_ms;
use crate::sign::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::wire::{DecisionDoc, Reply, DECISION_PATH};

/// A decision document is a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;
/// Claimed values of an unauthenticated message are journaled cut to this length.
const MAX_CLAIM_CHARS: usize = 128;
/// Unauthenticated refusals journaled per minute; past it they are only logged, so whoever can
/// reach the port cannot grow the journal without bound.
const UNAUTHENTICATED_PER_MINUTE: u32 = 60;

/// How many unauthenticated refusals were journaled in the current minute.
#[derive(Default)]
pub(crate) struct JournalBudget(Mutex<(u64, u32)>);

impl JournalBudget {
    fn take(&self, now_ms: u64) -> bool {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute = now_ms / 60_000;
        if g.0 != minute {
            *g = (minute, 0);
        }
        g.1 += 1;
        g.1 <= UNAUTHENTICATED_PER_MINUTE
    }
}

pub(crate) async fn serve(tcp: tokio::net::TcpListener, inner: Arc<Inner>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match tcp.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "webhook listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(&inner, req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // One decision per connection: an idle kept-alive connection would hold a slot.
                .keep_alive(false)
                // A client that trickles its headers must not hold a slot for ever.
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "webhook listener: connection ended");
            }
            drop(permit);
        });
    }
}

fn reply(status: u16, body: &Reply) -> Response<Full<Bytes>> {
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn refused(r: Refusal) -> Response<Full<Bytes>> {
    reply(
        r.status(),
        &Reply {
            status: "refused".into(),
            reason: Some(r.as_str().into()),
            have: None,
            need: None,
        },
    )
}

async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != DECISION_PATH {
        return reply(
            404,
            &Reply {
                status: "not_found".into(),
                reason: None,
                have: None,
                need: None,
            },
        );
    }
    if req.method() != Method::POST {
        return reply(
            405,
            &Reply {
                status: "method_not_allowed".into(),
                reason: None,
                have: None,
                need: None,
            },
        );
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (ts, sig) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    // A sender that trickles its body must not hold a connection slot for ever either.
    let read = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
    )
    .await;
    let Ok(Ok(body)) = read else {
        // Nothing was verified: this counts against the unauthenticated budget.
        inner
            .journal_refusal(Refusal::Malformed, false, None, &Value::Null)
            .await;
        return refused(Refusal::Malformed);
    };
    let body = body.to_bytes();
    let (status, answer) = inner
        .on_decision(ts.as_deref(), sig.as_deref(), &body)
        .await;
    reply(status, &answer)
}

fn cut(v: &Value, member: &str) -> Option<String> {
    v.get(member).and_then(Value::as_str).map(|s| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(MAX_CLAIM_CHARS)
            .collect()
    })
}

impl Inner {
    /// Verifies, decides and applies one decision; the status and reply to send back.
    pub(crate) async fn on_decision(
        &self,
        ts: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
    ) -> (u16, Reply) {
        let claimed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let refuse = |r: Refusal| {
            (
                r.status(),
                Reply {
                    status: "refused".into(),
                    reason: Some(r.as_str().into()),
                    have: None,
                    need: None,
                },
            )
        };
        if let Err(e) = sign::verify(&self.cfg.secret, ts, sig, body, now_ms() / 1000) {
            let r = Refusal::from(e);
            self.journal_refusal(r, false, None, &claimed).await;
            return refuse(r);
        }
        let Ok(doc) = serde_json::from_slice::<DecisionDoc>(body) else {
            self.journal_refusal(Refusal::Malformed, true, None, &claimed)
                .await;
            return refuse(Refusal::Malformed);
        };
        // Decided and stored under the lock, so two decisions about one call are applied one
        // after the other; the journal is written after it is released.
        let (verdict, session) = {
            let mut book = self.book();
            let record = book.records.get(&doc.nonce);
            let session = record.map(|r| r.request.session.clone());
            let verdict = decide(record, &doc, now_ms());
            match &verdict {
                Verdict::Refuse(_) => {}
                Verdict::Counted { record, .. } => {
                    book.records.insert(doc.nonce.clone(), (**record).clone());
                }
                Verdict::Decided { record, outcome } => {
                    book.records.insert(doc.nonce.clone(), (**record).clone());
                    if let Some(tx) = book.waiters.remove(&doc.nonce) {
                        let _ = tx.send(outcome.clone());
                    }
                }
            }
            (verdict, session)
        };
        if let Some(vote) = counted_vote(&verdict) {
            self.journal_vote(vote, session.as_deref()).await;
        }
        match verdict {
            Verdict::Refuse(r) => {
                self.journal_refusal(r, true, session.as_deref(), &claimed)
                    .await;
                refuse(r)
            }
            Verdict::Counted { have, need, .. } => {
                tracing::info!(approver = %doc.approver, have, need, call = %doc.call_id,
                    "webhook approval counted");
                (
                    200,
                    Reply {
                        status: "counted".into(),
                        reason: None,
                        have: Some(have),
                        need: Some(need),
                    },
                )
            }
            Verdict::Decided { outcome, .. } => (
                200,
                Reply {
                    status: if outcome.is_granted() {
                        "granted"
                    } else {
                        "denied"
                    }
                    .into(),
                    reason: None,
                    have: None,
                    need: None,
                },
            ),
        }
    }

    /// Journals a vote that counted (`approval.vote`) as it arrives, before the outcome it may
    /// complete, as the Slack channel does.
    async fn journal_vote(&self, vote: ApprovalVote, session: Option<&str>) {
        let Some(j) = self.journal.clone() else {
            return;
        };
        let body = vote.to_body();
        let session = session.map(str::to_owned);
        let appended = tokio::task::spawn_blocking(move || {
            j.append(ApprovalVote::KIND, session.as_deref(), body)
        })
        .await;
        match appended {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot journal a webhook vote"),
            Err(e) => tracing::error!(error = %e, "cannot journal a webhook vote"),
        }
    }

    /// Journals a refused decision (`approval.rejected`). What an unauthenticated message
    /// claims is journaled cut short, and only within a per-minute budget.
    pub(crate) async fn journal_refusal(
        &self,
        r: Refusal,
        signed: bool,
        session: Option<&str>,
        claimed: &Value,
    ) {
        let approver = cut(claimed, "approver");
        tracing::warn!(reason = r.as_str(), approver = ?approver, "refused a webhook decision");
        let Some(j) = self.journal.clone() else {
            return;
        };
        if !signed && !self.unauthenticated.take(now_ms()) {
            return;
        }
        let body = ApprovalRejected {
            channel: NAME.to_owned(),
            reason: r.as_str().to_owned(),
            user: ClickUser {
                id: approver.unwrap_or_default(),
                name: cut(claimed, "approver_name"),
            },
            action: cut(claimed, "decision").unwrap_or_default(),
            call_id: cut(claimed, "call_id"),
            input_sha256: cut(claimed, "input_sha256"),
        }
        .to_body();
        let session = session.map(str::to_owned);
        let appended = tokio::task::spawn_blocking(move || {
            j.append(APPROVAL_REJECTED, session.as_deref(), body)
        })
        .await;
        match appended {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot journal a refused webhook decision"),
            Err(e) => tracing::error!(error = %e, "cannot journal a refused webhook decision"),
        }
    }
}

/// The vote an accepted decision cast: an allow counted (deciding or not) or a deny.
fn counted_vote(verdict: &Verdict) -> Option<ApprovalVote> {
    let (record, by, vote): (&crate::decide::Record, &Approver, &str) = match verdict {
        Verdict::Refuse(_) => return None,
        Verdict::Counted { record, .. }
        | Verdict::Decided {
            record,
            outcome: ApprovalOutcome::Granted { .. },
        } => (record, record.votes.last()?, "allow"),
        Verdict::Decided {
            record,
            outcome: ApprovalOutcome::Denied { by, .. },
        } => (record, by, "deny"),
        Verdict::Decided { .. } => return None,
    };
    Some(ApprovalVote {
        call_id: record.request.call_id.clone(),
        input_sha256: record.request.input_sha256.clone(),
        by: by.clone(),
        vote: vote.to_owned(),
        channel: NAME.to_owned(),
        have: u32::try_from(record.votes.len()).unwrap_or(u32::MAX),
        need: record.request.quorum.max(1),
    })
}
