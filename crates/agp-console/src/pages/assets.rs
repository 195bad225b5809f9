//! The script and stylesheet, compiled into the binary (CSP `'self'` allows exactly these).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

const SCRIPT: &str = include_str!("../../assets/console.js");
const STYLE: &str = include_str!("../../assets/console.css");

pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// Browsers ask for it unprompted: nothing, rather than a 404 in their console.
pub async fn no_icon() -> StatusCode {
    StatusCode::NO_CONTENT
}
