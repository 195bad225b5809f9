//! The pages. Each renders with maud, whose `(value)` splices escape HTML; agent-supplied text
//! also goes through [`crate::text::shown`]. Stable `data-testid` attributes name what a
//! browser test looks for.

pub mod approvals;
pub mod assets;
pub mod journal;
pub mod policy;
pub mod sessions;
pub mod timeline;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::data::DataError;
use crate::text::shown;

/// Which item of the navigation is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Sessions,
    Approvals,
    Journal,
    Policy,
}

/// A whole page: navigation, then `body`.
pub fn layout(title: &str, nav: Nav, body: &Markup) -> Response {
    let item = |n: Nav, href: &str, label: &str, id: &str| {
        html! {
            a href=(href) class=@if n == nav { "on" } data-testid=(id) { (label) }
        }
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agp console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    strong { "agp console" }
                    (item(Nav::Sessions, "/", "Sessions", "nav-sessions"))
                    (item(Nav::Approvals, "/approvals", "Approvals", "nav-approvals"))
                    (item(Nav::Journal, "/journal", "Journal", "nav-journal"))
                    (item(Nav::Policy, "/policy", "Policy", "nav-policy"))
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// A problem reading the data, shown on the page (in plain words, escaped).
pub fn problem(e: &DataError) -> Markup {
    html! { p.err data-testid="problem" { (shown(&e.to_string())) } }
}

/// Runs a blocking read (SQLite, the daemon's socket, files) off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DataError> + Send + 'static,
) -> Result<T, DataError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(DataError::Failed(format!("the read failed: {e}"))))
}

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The answer to a POST whose CSRF token is missing or not this session's.
pub fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the form's CSRF token is not this console session's; reload the page and try again",
    )
        .into_response()
}
