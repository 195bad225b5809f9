//! `/approvals`: the calls waiting for a human, each with Allow / Deny / Details; a decision is
//! a POST carrying the console session's CSRF token and the daemon's single-use nonce for that
//! call and input hash. The daemon checks the binding (nonce, hash, expiry, approver, quorum)
//! and journals the decision with `via: "web"`; the console only forwards.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::{blocking, csrf_refused, layout, problem, Nav};
use crate::data::{DataError, DecideRequest, PendingApproval, WebDecision};
use crate::security::{ConsoleSession, Guard};
use crate::text::shown;
use crate::AppState;

pub async fn list(
    State(st): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    page(&st, &session, None).await
}

/// Every field optional: a form without a CSRF token is refused as such, not as malformed.
#[derive(Debug, Default, Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    call_id: Option<String>,
    input_sha256: Option<String>,
    nonce: Option<String>,
    decision: Option<String>,
    reason: Option<String>,
}

pub async fn decide(
    State(st): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
    Form(f): Form<DecideForm>,
) -> Response {
    if !Guard::csrf_ok(&session, f.csrf.as_deref().unwrap_or("")) {
        return csrf_refused();
    }
    if st.settings.view_only {
        return (
            StatusCode::FORBIDDEN,
            "this console is view-only: it takes no decisions",
        )
            .into_response();
    }
    let Some(approvals) = st.approvals.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no agp daemon serves this home",
        )
            .into_response();
    };
    let decision = match f.decision.as_deref() {
        Some("allow") => WebDecision::Allow,
        Some("deny") => WebDecision::Deny,
        Some("allow_session") => WebDecision::AllowSession,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "decision must be allow, deny or allow_session",
            )
                .into_response()
        }
    };
    let (Some(call_id), Some(input_sha256), Some(nonce)) = (f.call_id, f.input_sha256, f.nonce)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "the form lacks the call id, input hash or nonce",
        )
            .into_response();
    };
    let req = DecideRequest {
        call_id: call_id.clone(),
        input_sha256,
        nonce,
        decision,
        reason: f.reason.filter(|r| !r.trim().is_empty()),
    };
    let outcome = blocking(move || approvals.decide(&req)).await;
    let (status, note) = match &outcome {
        Ok(d) => (
            StatusCode::OK,
            html! { p.ok data-testid="decided" data-granted=(d.granted) {
                "Call " code { (shown(&call_id)) } ": " (decision_word(decision)) ", as "
                (shown(&st.settings.operator)) " via web. The agent is told: " (shown(&d.reason))
            } },
        ),
        Err(e @ DataError::Refused(_)) => (
            StatusCode::CONFLICT,
            html! { p.err data-testid="refused" { "The daemon refused the decision: " (shown(&e.to_string())) } },
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, problem(e)),
    };
    let mut resp = page(&st, &session, Some(note)).await;
    *resp.status_mut() = status;
    resp
}

fn decision_word(d: WebDecision) -> &'static str {
    match d {
        WebDecision::Allow => "allowed",
        WebDecision::Deny => "denied",
        WebDecision::AllowSession => "allowed for the session",
    }
}

async fn page(st: &AppState, session: &ConsoleSession, note: Option<Markup>) -> Response {
    let listed = match st.approvals.clone() {
        None => Err(DataError::Unavailable(
            "no agp daemon serves this home: start `agp daemon` (or `agp daemon --console`) to see and decide approvals".into(),
        )),
        Some(a) => blocking(move || a.list()).await,
    };
    let console_view_only = st.settings.view_only;
    let daemon_view_only = listed.as_ref().is_ok_and(|l| l.view_only);
    let view_only = console_view_only || daemon_view_only;
    let body = html! {
        @if let Some(n) = note { (n) }
        @if console_view_only {
            p.note data-testid="view-only" { "View-only console: decisions are made elsewhere." }
        } @else if daemon_view_only {
            p.note data-testid="view-only" { "The daemon takes no decisions from consoles ([approvals] web = false)." }
        }
        div data-live data-live-src="/approvals" data-testid="approvals" {
            @match &listed {
                Err(e) => (problem(e)),
                Ok(list) => {
                    @if !view_only {
                        p { "Decisions from here are journaled as " code data-testid="approver" { (shown(&list.approver)) } " via web." }
                    }
                    @if list.items.is_empty() {
                        p data-testid="no-approvals" { "Nothing waits for approval." }
                    }
                    @for a in &list.items { (pending(a, &session.csrf, view_only)) }
                    @if list.omitted > 0 { p.note { (list.omitted) " more pending approvals not listed." } }
                }
            }
        }
    };
    layout("Pending approvals", Nav::Approvals, &body)
}

fn pending(a: &PendingApproval, csrf: &str, view_only: bool) -> Markup {
    let decides = !view_only && (a.web_can_approve || a.web_can_deny);
    html! {
        fieldset data-testid="approval" data-call=(a.call_id) data-session=(a.session) {
            legend { (shown(&a.tool)) " in session " a href={ "/sessions/" (super::sessions::urlencode(&a.session)) } { code { (shown(&a.session)) } } }
            p { code data-testid="approval-input" { (shown(&a.redacted_input)) } @if a.input_truncated { " [cut]" } }
            p {
                @if let Some(r) = &a.rule_id { code { (shown(r)) } ": " }
                (shown(&a.reason))
            }
            details data-testid="approval-details" {
                summary { "Details" }
                ul {
                    li { "call " code { (shown(&a.call_id)) } }
                    li { "input sha256 " code { (shown(&a.input_sha256)) } }
                    li { "approvers " @if a.approvers.is_empty() { "any" } @else { (shown(&a.approvers.join(", "))) } ", quorum " (a.quorum) }
                    li { "also asked: " (shown(&a.channel)) " (the first answer wins)" }
                    li { "expires at " (a.expires_at_ms) " ms since the epoch" }
                }
            }
            @if decides {
                form method="post" action="/approvals/decide" data-testid="decide-form" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="call_id" value=(a.call_id);
                    input type="hidden" name="input_sha256" value=(a.input_sha256);
                    input type="hidden" name="nonce" value=(a.nonce);
                    label { "reason " input name="reason" data-testid="decide-reason"; }
                    @if a.web_can_approve {
                        " " button type="submit" name="decision" value="allow" data-testid="allow" { "Allow" }
                        @if a.remember_secs.is_some() {
                            " " button type="submit" name="decision" value="allow_session" data-testid="allow-session" { "Allow for the session" }
                        }
                    }
                    @if a.web_can_deny {
                        " " button type="submit" name="decision" value="deny" data-testid="deny" { "Deny" }
                    }
                }
            }
            @if !view_only && !a.web_can_approve {
                p.note data-testid="web-cannot-approve" { "Not from the web: " (shown(a.why_not.as_deref().unwrap_or("the daemon did not say why"))) }
            }
        }
    }
}
