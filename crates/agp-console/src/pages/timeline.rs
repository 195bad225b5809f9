//! `/sessions/{id}`: one session's calls in order, each with its verdict, rule, reason,
//! approval, result and egress; then its other events (integrity report, session.*); filters
//! by verdict, tool and text.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::sessions::{css_word, urlencode};
use super::{blocking, layout, problem, Nav};
use crate::data::{CallRow, TimelineQuery};
use crate::text::shown;
use crate::AppState;

/// Calls per page.
const PAGE: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    verdict: Option<String>,
    outcome: Option<String>,
    tool: Option<String>,
    text: Option<String>,
    cursor: Option<String>,
}

fn some(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

pub async fn show(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> Response {
    let q = TimelineQuery {
        verdict: some(f.verdict),
        outcome: some(f.outcome),
        tool: some(f.tool),
        text: some(f.text),
        cursor: some(f.cursor),
        limit: PAGE,
    };
    let (data, sid, q2) = (st.data.clone(), id.clone(), q.clone());
    let read = blocking(move || {
        let session = data.session(&sid)?;
        let calls = data.timeline(&sid, &q2)?;
        let events = data.session_events(&sid)?;
        Ok((session, calls, events))
    })
    .await;
    let body = html! {
        form method="get" data-testid="filters" {
            label { "verdict " select name="verdict" data-testid="filter-verdict" {
                @for v in ["", "allow", "deny", "require"] {
                    option value=(v) selected[q.verdict.as_deref().unwrap_or("") == v] {
                        (if v.is_empty() { "any" } else { v })
                    }
                }
            } }
            " "
            label { "outcome " select name="outcome" data-testid="filter-outcome" {
                @for v in ["", "allowed", "denied", "approved", "pending"] {
                    option value=(v) selected[q.outcome.as_deref().unwrap_or("") == v] {
                        (if v.is_empty() { "any" } else { v })
                    }
                }
            } }
            " "
            label { "tool " input name="tool" value=(q.tool.as_deref().unwrap_or("")) data-testid="filter-tool"; }
            " "
            label { "text " input name="text" value=(q.text.as_deref().unwrap_or("")) data-testid="filter-text"; }
            " "
            button type="submit" { "Filter" }
        }
        div data-live data-testid="timeline" {
            @match &read {
                Err(e) => (problem(e)),
                Ok((None, _, _)) => p.err data-testid="unknown-session" { "No session " code { (shown(&id)) } " in the journal." },
                Ok((Some(s), calls, events)) => {
                    p data-testid="session-summary" {
                        "state " strong data-testid="session-state" { (shown(&s.state)) }
                        " · agent " (shown(&s.agent)) " · repo " code { (shown(&s.repo)) }
                        " · task " (shown(&s.task)) " · started by " (shown(&s.operator))
                        " · mode " (shown(&s.mode))
                    }
                    @if calls.items.is_empty() {
                        p data-testid="no-calls" { "No calls match." }
                    } @else {
                        table {
                            thead { tr {
                                th { "seq" } th { "tool" } th { "input (redacted)" } th { "verdict" }
                                th { "rule / reason" } th { "approval" } th { "result" } th { "egress" }
                            } }
                            tbody { @for c in &calls.items { (call_row(c)) } }
                        }
                        @if let Some(next) = &calls.next {
                            p { a data-testid="later" href={ "/sessions/" (urlencode(&id)) "?cursor=" (urlencode(next))
                                @if let Some(v) = &q.verdict { "&verdict=" (urlencode(v)) }
                                @if let Some(v) = &q.outcome { "&outcome=" (urlencode(v)) }
                                @if let Some(t) = &q.tool { "&tool=" (urlencode(t)) }
                                @if let Some(t) = &q.text { "&text=" (urlencode(t)) } } { "Later calls" } }
                        }
                    }
                    h2 { "Events" }
                    @if events.is_empty() {
                        p { "None." }
                    } @else {
                        ul data-testid="events" {
                            @for e in events {
                                li data-testid="event" data-kind=(e.kind) {
                                    a href={ "/journal/entry?seq=" (e.seq) } title="the journal entry and its inclusion proof" { (e.seq) }
                                    " " code { (shown(&e.kind)) } " " code { (shown(&e.summary)) }
                                    @if !e.covered { " " small { "(not yet signed)" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&format!("Session {}", shown(&id)), Nav::Sessions, &body)
}

fn call_row(c: &CallRow) -> Markup {
    html! {
        tr data-testid="call-row" data-call=(c.call_id) data-verdict=(c.verdict) data-outcome=(c.outcome) {
            td {
                a href={ "/journal/entry?seq=" (c.seq) } title="the journal entry and its inclusion proof" data-testid="entry-link" { (c.seq) }
                @if !c.covered { br; small data-testid="not-covered" title="no signed checkpoint covers this call yet" { "not yet signed" } }
            }
            td { (shown(&c.tool)) }
            td { code data-testid="call-input" { (shown(&c.input)) } }
            td class=(css_word(&c.verdict)) data-testid="call-verdict" {
                (shown(&c.verdict))
                @if !c.outcome.is_empty() && c.outcome != c.verdict { br; small class=(css_word(&c.outcome)) data-testid="call-outcome" { (shown(&c.outcome)) } }
            }
            td {
                @if let Some(r) = &c.rule { code { (shown(r)) } ": " }
                (shown(&c.reason))
            }
            td data-testid="call-approval" {
                @if let Some(a) = &c.approval {
                    span class=(css_word(&a.decision)) { (shown(&a.decision)) }
                    @if !a.by.is_empty() { " by " (shown(&a.by)) }
                    @if !a.via.is_empty() { " via " (shown(&a.via)) }
                }
            }
            td data-testid="call-result" {
                @if let Some(r) = &c.result {
                    (shown(&r.status))
                    @if let Some(x) = r.exit_status { " exit " (x) }
                    @if let Some(h) = &r.output_sha256 { br; "output sha256 " code { (shown(h)) } }
                }
            }
            td data-testid="call-egress" { @if c.egress > 0 { (c.egress) " request(s)" } }
        }
    }
}
