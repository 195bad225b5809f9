//! `/`: sessions, live and past, newest first.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{blocking, layout, problem, Nav};
use crate::data::SessionQuery;
use crate::text::shown;
use crate::AppState;

/// Sessions per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    cursor: Option<String>,
    state: Option<String>,
    agent: Option<String>,
    text: Option<String>,
}

fn some(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

pub async fn list(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let data = st.data.clone();
    let q = SessionQuery {
        cursor: some(p.cursor),
        limit: PAGE,
        state: some(p.state),
        agent: some(p.agent),
        text: some(p.text),
    };
    let q2 = q.clone();
    let page = blocking(move || data.sessions(&q2)).await;
    let body = html! {
        form method="get" action="/" data-testid="session-filters" {
            label { "state " select name="state" data-testid="filter-state" {
                @for v in ["", "live", "ended", "stopped", "reaped"] {
                    option value=(v) selected[q.state.as_deref().unwrap_or("") == v] {
                        (if v.is_empty() { "any" } else { v })
                    }
                }
            } }
            " "
            label { "agent " input name="agent" value=(q.agent.as_deref().unwrap_or("")) data-testid="filter-agent"; }
            " "
            label { "text " input name="text" value=(q.text.as_deref().unwrap_or("")) data-testid="filter-text"; }
            " "
            button type="submit" { "Filter" }
        }
        div data-live data-testid="sessions" {
            @match &page {
                Err(e) => (problem(e)),
                Ok(page) if page.items.is_empty() => p data-testid="no-sessions" { "No sessions yet." },
                Ok(page) => {
                    table {
                        thead { tr {
                            th { "session" } th { "state" } th { "agent" } th { "repo" } th { "task" }
                            th { "started by" } th { "mode" } th { "allowed" } th { "denied" }
                            th { "approved" } th { "pending" } th { "started" }
                        } }
                        tbody {
                            @for s in &page.items {
                                tr data-testid="session-row" data-session=(s.id) {
                                    td { a href={ "/sessions/" (urlencode(&s.id)) } { code { (shown(&s.id)) } } }
                                    td class=(css_word(&s.state)) data-testid="session-state" { (shown(&s.state)) }
                                    td { (shown(&s.agent)) }
                                    td { code { (shown(&s.repo)) } }
                                    td { (shown(&s.task)) }
                                    td { (shown(&s.operator)) }
                                    td { (shown(&s.mode)) }
                                    td.allow data-testid="count-allowed" { (s.allowed) }
                                    td.deny data-testid="count-denied" { (s.denied) }
                                    td.approved data-testid="count-approved" { (s.approved) }
                                    td.pending data-testid="count-pending" { (s.pending) }
                                    td { (shown(&s.started)) }
                                }
                            }
                        }
                    }
                    @if let Some(next) = &page.next {
                        p { a data-testid="older" href={ "/?cursor=" (urlencode(next))
                            @if let Some(v) = &q.state { "&state=" (urlencode(v)) }
                            @if let Some(v) = &q.agent { "&agent=" (urlencode(v)) }
                            @if let Some(v) = &q.text { "&text=" (urlencode(v)) } } { "Older sessions" } }
                    }
                }
            }
        }
    };
    layout("Sessions", Nav::Sessions, &body)
}

/// A path or query component: everything but unreserved characters percent-encoded.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A class name from a data word (verdict, state): letters only, else none, so data never
/// chooses arbitrary classes.
pub fn css_word(w: &str) -> &'static str {
    match w {
        "allow" | "allowed" => "allow",
        "deny" | "denied" => "deny",
        "require" | "pending" => "require",
        "approved" => "approved",
        _ => "",
    }
}
