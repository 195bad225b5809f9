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
}

pub async fn list(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let data = st.data.clone();
    let q = SessionQuery {
        cursor: p.cursor.filter(|c| !c.is_empty()),
        limit: PAGE,
    };
    let page = blocking(move || data.sessions(&q)).await;
    let body = html! {
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
                        p { a href={ "/?cursor=" (urlencode(next)) } data-testid="older" { "Older sessions" } }
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
