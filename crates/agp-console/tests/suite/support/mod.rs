//! A console router over a real signed journal (for Verify and proofs) and fixed rows for the
//! index and approvals, driven request by request (tower's `oneshot`).

#![allow(dead_code)]

mod fixtures;
pub use fixtures::*;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agp_console::data::*;
use agp_console::{AppState, Settings};
use agp_contracts::Journal as _;
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

pub const ADDR: &str = "127.0.0.1:4555";
pub const HOST: &str = "127.0.0.1:4555";

/// Rows as the index would give them.
#[derive(Default)]
pub struct Rows {
    pub sessions: Vec<SessionRow>,
    pub calls: Vec<CallRow>,
    pub events: Vec<EventRow>,
}

pub struct FixedData(pub Rows);

impl ConsoleData for FixedData {
    fn catch_up(&self) -> Result<u64, DataError> {
        Ok(3)
    }
    fn stats(&self) -> Result<JournalStats, DataError> {
        Ok(JournalStats {
            entries: 3,
            bytes: 100,
            sessions: self.0.sessions.len() as u64,
            checkpoint_size: Some(3),
            ..JournalStats::default()
        })
    }
    fn sessions(&self, q: &SessionQuery) -> Result<Page<SessionRow>, DataError> {
        let items = self
            .0
            .sessions
            .iter()
            .filter(|s| q.state.as_ref().is_none_or(|v| *v == s.state))
            .cloned()
            .collect();
        Ok(Page { items, next: None })
    }
    fn session(&self, id: &str) -> Result<Option<SessionRow>, DataError> {
        Ok(self.0.sessions.iter().find(|s| s.id == id).cloned())
    }
    fn timeline(&self, _s: &str, q: &TimelineQuery) -> Result<Page<CallRow>, DataError> {
        let items = self
            .0
            .calls
            .iter()
            .filter(|c| q.verdict.as_ref().is_none_or(|v| *v == c.verdict))
            .cloned()
            .collect();
        Ok(Page { items, next: None })
    }
    fn session_events(&self, _s: &str) -> Result<Vec<EventRow>, DataError> {
        Ok(self.0.events.clone())
    }
    fn entry(&self, seq: u64) -> Result<Option<EntryView>, DataError> {
        Ok((seq == 1).then(|| EntryView {
            seq,
            line: "{\"kind\":\"<script>alert(1)</script>\u{202e}\"}".into(),
            leaf_hash: "ab".repeat(32),
            covered: true,
        }))
    }
}

/// Pending approvals, and every decision the console forwarded.
#[derive(Default)]
pub struct Recorder {
    pub pending: Vec<PendingApproval>,
    pub decided: Mutex<Vec<DecideRequest>>,
    /// Refuse every decision with this reason.
    pub refuse: Option<String>,
    /// The daemon takes no decision from consoles.
    pub daemon_view_only: bool,
}

/// The console's handle on the shared recorder.
pub struct Rec(pub Arc<Recorder>);

impl Approvals for Rec {
    fn list(&self) -> Result<ApprovalListing, DataError> {
        Ok(ApprovalListing {
            approver: "tty:alice".into(),
            view_only: self.0.daemon_view_only,
            items: self.0.pending.clone(),
            omitted: 0,
        })
    }
    fn decide(&self, d: &DecideRequest) -> Result<Decided, DataError> {
        self.0.decided.lock().unwrap().push(d.clone());
        match &self.0.refuse {
            Some(r) => Err(DataError::Refused(r.clone())),
            None => Ok(Decided {
                granted: d.decision != WebDecision::Deny,
                reason: "approved by tty:alice via web".into(),
            }),
        }
    }
}

pub struct World {
    pub app: Router,
    pub state: AppState,
    pub token: String,
    pub recorder: Arc<Recorder>,
    pub dir: tempfile::TempDir,
}

/// A signed journal of three entries (checkpointed) in `dir/journal`, and its verifier key.
pub fn journal(dir: &Path) -> agp_journal::VerifierKey {
    let key = agp_journal::SignerKey::generate("agp.local/journal/console-test").unwrap();
    let w = agp_journal::JournalWriter::open(
        &dir.join("journal"),
        key.clone(),
        agp_journal::JournalOptions::with_durability(agp_journal::Durability::Entry),
    )
    .unwrap();
    w.append(
        "session.started",
        Some("s-1"),
        serde_json::json!({"repo": "/src"}),
    )
    .unwrap();
    w.append("session.ended", Some("s-1"), serde_json::json!({}))
        .unwrap();
    w.close().unwrap();
    key.verifier().clone()
}

pub fn world(rows: Rows, recorder: Recorder, view_only: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let key = journal(dir.path());
    world_in(dir, key, Arc::new(FixedData(rows)), recorder, view_only)
}

/// A console over `data`, its journal in `dir/journal` signed by the key `key` verifies.
pub fn world_in(
    dir: tempfile::TempDir,
    key: agp_journal::VerifierKey,
    data: Arc<dyn ConsoleData>,
    recorder: Recorder,
    view_only: bool,
) -> World {
    std::fs::write(
        dir.path().join("policy.toml"),
        "# <script>alert(1)</script> \u{202e}\n[[rule]]\nid = \"ls\"\neffect = \"allow\"\nmatch = [\"Bash(ls *)\"]\n",
    )
    .unwrap();
    let settings = Settings {
        view_only,
        journal_dir: dir.path().join("journal"),
        verifier_key: Some(key),
        policy_path: Some(dir.path().join("policy.toml")),
        eval_context: agp_contracts::EvalContext {
            project_root: "/repo".into(),
            home: "/home/u".into(),
            agp_home: dir.path().to_path_buf(),
        },
        operator: "alice".into(),
    };
    let recorder = Arc::new(recorder);
    let addr: SocketAddr = ADDR.parse().unwrap();
    let (state, _publisher) = agp_console::serve::app(
        addr,
        false,
        &[],
        settings,
        data,
        Some(Arc::new(Rec(recorder.clone()))),
    )
    .unwrap();
    World {
        app: agp_console::router(state.clone()),
        token: state.guard.token().to_owned(),
        state,
        recorder,
        dir,
    }
}

pub struct Got {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

pub async fn send(app: &Router, req: Request<Body>) -> Got {
    let resp: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

impl World {
    /// Trades the token for a session cookie, as a browser's first visit does.
    pub async fn login(&self) -> String {
        let got = send(
            &self.app,
            Request::get(format!("/?token={}", self.token))
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, StatusCode::SEE_OTHER);
        let set = got.headers[header::SET_COOKIE].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    pub async fn get(&self, cookie: &str, path: &str) -> Got {
        send(
            &self.app,
            Request::get(path)
                .header(header::HOST, HOST)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, cookie: &str, path: &str, form: &str) -> Got {
        send(
            &self.app,
            Request::post(path)
                .header(header::HOST, HOST)
                .header(header::ORIGIN, format!("http://{HOST}"))
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_owned()))
                .unwrap(),
        )
        .await
    }

    /// The session's CSRF token, as the journal page's Verify form carries it.
    pub async fn csrf(&self, cookie: &str) -> String {
        let page = self.get(cookie, "/journal").await;
        hidden(&page.body, "csrf").expect("a csrf field")
    }
}

/// The value of the hidden input `name` in `html`.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker)? + marker.len();
    Some(html[at..].split('"').next()?.to_owned())
}

pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", agp_console::pages::sessions::urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn pending(call: &str) -> PendingApproval {
    PendingApproval {
        session: "s-1".into(),
        call_id: call.into(),
        tool: "Bash".into(),
        redacted_input: "{\"command\":\"git push\"}".into(),
        input_sha256: "ab".repeat(32),
        rule_id: Some("push".into()),
        reason: "pushing needs a human".into(),
        approvers: vec![],
        quorum: 1,
        expires_at_ms: 1,
        nonce: format!("nonce-{call}-0123456789"),
        web_can_approve: true,
        web_can_deny: true,
        why_not: None,
        input_truncated: false,
        remember_secs: None,
        channel: "terminal".into(),
    }
}
