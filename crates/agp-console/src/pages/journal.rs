//! `/journal`: its size, latest checkpoint and key id; Verify runs the offline verifier
//! (`agp_journal::verify_dir`, streaming) on the blocking pool and lists its findings; any
//! sealed entry's inclusion proof downloads as a C2SP tlog-proof.

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::{blocking, csrf_refused, layout, problem, Nav};
use crate::data::DataError;
use crate::security::{ConsoleSession, Guard};
use crate::text::shown;
use crate::AppState;

pub async fn show(
    State(st): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
) -> Response {
    page(&st, &session, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct VerifyForm {
    csrf: Option<String>,
}

/// A POST (it costs a full read of the journal), but read-only: a view-only console runs it.
pub async fn verify(
    State(st): State<AppState>,
    Extension(session): Extension<ConsoleSession>,
    Form(f): Form<VerifyForm>,
) -> Response {
    if !Guard::csrf_ok(&session, f.csrf.as_deref().unwrap_or("")) {
        return csrf_refused();
    }
    let Ok(one_at_a_time) = st.verifying.clone().try_lock_owned() else {
        let busy = html! { p.note data-testid="verify-busy" { "A verification is already running; try again when it ends." } };
        return page(&st, &session, Some(busy)).await;
    };
    let settings = st.settings.clone();
    let report = blocking(move || {
        // Held by the read itself: a client that goes away does not free it early.
        let _one_at_a_time = one_at_a_time;
        let Some(key) = settings.verifier_key.clone() else {
            return Err(DataError::Unavailable(
                "this home has no journal key (run `agp keygen`)".into(),
            ));
        };
        let opts = agp_journal::VerifyOptions {
            trusted_key: key,
            trusted_checkpoint: None,
        };
        agp_journal::verify_dir(&settings.journal_dir, &opts)
            .map_err(|e| DataError::Failed(e.to_string()))
    })
    .await;
    let out = match &report {
        Err(e) => problem(e),
        Ok(r) => html! {
            div data-testid="verify-report" data-intact=(r.intact) {
                @if r.intact {
                    p.ok data-testid="verify-intact" { "Journal intact: " (r.entries) " entries, signed up to size " (r.sealed_size) "." }
                } @else {
                    p.err data-testid="verify-broken" { "Journal NOT intact: " (r.errors().count()) " error(s) in " (r.entries) " entries." }
                }
                @if !r.findings.is_empty() {
                    ul data-testid="findings" {
                        @for f in &r.findings { li data-testid="finding" { (shown(&f.to_string())) } }
                    }
                }
                @if r.more_findings > 0 { p { "… and " (r.more_findings) " more findings." } }
            }
        },
    };
    page(&st, &session, Some(out)).await
}

/// `/journal/entry?seq=N`: the exact line, its leaf hash, and its proof to download.
pub async fn entry(State(st): State<AppState>, Query(p): Query<ProofParams>) -> Response {
    let Some(seq) = p.seq.as_deref().and_then(|s| s.trim().parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "seq must be an entry number").into_response();
    };
    let data = st.data.clone();
    let found = blocking(move || data.entry(seq)).await;
    let body = html! {
        @match &found {
            Err(e) => (problem(e)),
            Ok(None) => p.err data-testid="no-entry" { "No entry " (seq) " in the index." },
            Ok(Some(e)) => {
                p { "leaf hash " code data-testid="entry-leaf" { (e.leaf_hash) } }
                @if e.covered {
                    p { a href={ "/journal/proof?seq=" (e.seq) } data-testid="entry-proof" { "Download its inclusion proof (C2SP tlog-proof)" } }
                } @else {
                    p.note data-testid="entry-not-covered" { "No signed checkpoint covers this entry yet: its proof is available after the next checkpoint." }
                }
                pre data-testid="entry-line" { (shown(&e.line)) }
            }
        }
    };
    layout(&format!("Entry {seq}"), Nav::Journal, &body)
}

#[derive(Debug, Default, Deserialize)]
pub struct ProofParams {
    seq: Option<String>,
}

pub async fn proof(State(st): State<AppState>, Query(p): Query<ProofParams>) -> Response {
    let Some(seq) = p.seq.as_deref().and_then(|s| s.trim().parse::<u64>().ok()) else {
        return (StatusCode::BAD_REQUEST, "seq must be an entry number").into_response();
    };
    let settings = st.settings.clone();
    let built = blocking(move || {
        let Some(key) = settings.verifier_key.clone() else {
            return Err(DataError::Unavailable(
                "this home has no journal key".into(),
            ));
        };
        agp_journal::proof::build_inclusion(&settings.journal_dir, seq, &key)
            .map_err(|e| DataError::Failed(e.to_string()))
    })
    .await;
    match built {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"agp-entry-{seq}.tlog-proof\""),
                ),
            ],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

async fn page(st: &AppState, session: &ConsoleSession, report: Option<Markup>) -> Response {
    let data = st.data.clone();
    let stats = blocking(move || data.stats()).await;
    let key_id = st
        .settings
        .verifier_key
        .as_ref()
        .map(agp_journal::VerifierKey::id_hex);
    let body = html! {
        div data-live data-live-src="/journal" data-testid="journal" {
            @match &stats {
                Err(e) => (problem(e)),
                Ok(s) => table data-testid="journal-stats" {
                    tr { th { "entries" } td data-testid="journal-entries" { (s.entries) } }
                    tr { th { "bytes" } td { (s.bytes) } }
                    tr { th { "sessions" } td { (s.sessions) } }
                    tr { th { "not yet signed" } td data-testid="journal-not-covered" { (s.not_covered) " entries" } }
                    tr { th { "latest checkpoint" } td data-testid="journal-checkpoint" {
                        @match s.checkpoint_size { Some(n) => { "size " (n) }, None => "none yet" }
                        @if let Some(r) = &s.checkpoint_root { br; "root " code { (shown(r)) } }
                        @if let Some(p) = &s.checkpoint_problem { br; span.err { (shown(p)) } }
                    } }
                    tr { th { "origin" } td { (shown(s.origin.as_deref().unwrap_or("—"))) } }
                    tr { th { "key id" } td data-testid="journal-key-id" { (shown(key_id.as_deref().or(s.key_id.as_deref()).unwrap_or("—"))) } }
                },
            }
        }
        form method="post" action="/journal/verify" data-testid="verify-form" {
            input type="hidden" name="csrf" value=(session.csrf);
            button type="submit" data-testid="verify" { "Verify" }
        }
        @if let Some(r) = report { (r) }
        h2 { "Inclusion proof" }
        form method="get" action="/journal/proof" data-testid="proof-form" {
            label { "entry seq " input name="seq" inputmode="numeric" data-testid="proof-seq"; }
            " " button type="submit" { "Download tlog-proof" }
            " " button type="submit" formaction="/journal/entry" data-testid="entry-show" { "Show the entry" }
        }
    };
    layout("Journal", Nav::Journal, &body)
}
