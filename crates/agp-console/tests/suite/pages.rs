//! Every page's content: hostile agent text shown escaped, and what each page shows and does.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::support::*;

// --- hostile agent text -------------------------------------------------------------------------

fn hostile_rows() -> Rows {
    let evil = "<script>alert(1)</script>\" onmouseover=\"alert(2)\u{202e}gnp.exe\u{200b}";
    let mut s = session("s-1\" onclick=\"alert(3)");
    s.agent = evil.into();
    s.task = evil.into();
    s.repo = evil.into();
    let mut r = rows();
    r.sessions = vec![s];
    for c in &mut r.calls {
        c.input = format!("{{\"command\":\"{evil}\"}}");
        c.reason = evil.into();
        c.tool = evil.into();
        c.call_id = "c\" data-x=\"1".into();
    }
    r.events[0].summary = evil.into();
    r
}

fn assert_defused(path: &str, body: &str) {
    assert!(!body.contains("<script>alert"), "{path}: raw script tag");
    assert!(
        !body.contains("\" onmouseover=\""),
        "{path}: attribute injection"
    );
    assert!(
        !body.contains("\" onclick=\""),
        "{path}: attribute injection"
    );
    assert!(
        !body.contains("\" data-x=\""),
        "{path}: attribute injection"
    );
    assert!(!body.contains('\u{202e}'), "{path}: raw bidi override");
    assert!(!body.contains('\u{200b}'), "{path}: raw zero-width space");
}

#[tokio::test]
async fn hostile_agent_text_is_escaped_and_its_invisible_characters_shown() {
    let mut rec = recorder();
    rec.pending[0].redacted_input = "</code><script>alert(1)</script>\u{202e}".into();
    rec.pending[0].reason = "\" onmouseover=\"alert(2)".into();
    rec.pending[0].tool = "<img src=x onerror=alert(4)>".into();
    let w = world(hostile_rows(), rec, false);
    let cookie = w.login().await;
    for path in [
        "/",
        "/sessions/s-1%22%20onclick%3D%22alert(3)",
        "/sessions/s-1%22%20onclick%3D%22alert(3)?verdict=require",
        "/approvals",
        "/policy",
        "/journal/entry?seq=1",
    ] {
        let got = w.get(&cookie, path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_defused(path, &got.body);
        assert!(!got.body.contains("<img src=x"), "{path}");
    }
    let timeline = w
        .get(&cookie, "/sessions/s-1%22%20onclick%3D%22alert(3)")
        .await
        .body;
    assert!(
        timeline.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown, escaped"
    );
    assert!(
        timeline.contains("\\u{202e}gnp.exe\\u{200b}"),
        "bidi shown as an escape"
    );
    let approvals = w.get(&cookie, "/approvals").await.body;
    assert!(approvals.contains("&lt;/code&gt;&lt;script&gt;"));
    assert!(approvals.contains("&lt;img src=x onerror=alert(4)&gt;"));
    let policy = w.get(&cookie, "/policy").await.body;
    assert!(policy.contains("# &lt;script&gt;alert(1)&lt;/script&gt; \\u{202e}"));
}

// --- the pages ----------------------------------------------------------------------------------

#[tokio::test]
async fn the_sessions_page_lists_each_session_with_its_counts() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let b = w.get(&cookie, "/").await.body;
    assert!(b.contains("data-session=\"s-1\""));
    for (id, n) in [
        ("count-allowed", 4),
        ("count-denied", 1),
        ("count-approved", 2),
        ("count-pending", 1),
    ] {
        assert!(b.contains(&format!("data-testid=\"{id}\">{n}<")), "{id}");
    }
    for text in [
        "scripted",
        "/src/repo",
        "fix the build",
        "alice",
        "enforce",
        "live",
    ] {
        assert!(b.contains(text), "{text}");
    }
    assert!(b.contains("href=\"/sessions/s-1\""));
}

#[tokio::test]
async fn the_timeline_shows_verdicts_approvals_results_egress_and_filters() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let b = w.get(&cookie, "/sessions/s-1").await.body;
    assert_eq!(b.matches("data-testid=\"call-row\"").count(), 2);
    assert!(b.contains("allow</span> by bob via web"));
    assert!(b.contains("exit 0"));
    assert!(b.contains(&"cd".repeat(32)));
    assert!(b.contains("2 request(s)"));
    assert_eq!(b.matches("data-testid=\"not-covered\"").count(), 1);
    assert!(b.contains("data-kind=\"integrity.report\""));
    assert!(b.contains("href=\"/journal/entry?seq=1\""));
    let only = w
        .get(&cookie, "/sessions/s-1?verdict=require&tool=&text=")
        .await
        .body;
    assert_eq!(only.matches("data-testid=\"call-row\"").count(), 1);
    assert!(only.contains("data-verdict=\"require\""));
    assert!(only.contains("<option value=\"require\" selected"));
    let unknown = w.get(&cookie, "/sessions/nope").await.body;
    assert!(unknown.contains("data-testid=\"unknown-session\""));
}

#[tokio::test]
async fn the_approvals_page_shows_allow_deny_details_and_puts_the_nonce_only_in_the_form() {
    let mut rec = recorder();
    let mut quorum = pending("c-10");
    quorum.web_can_approve = false;
    quorum.web_can_deny = false;
    quorum.why_not = Some("quorum 2 needs another channel".into());
    rec.pending.push(quorum);
    let w = world(rows(), rec, false);
    let cookie = w.login().await;
    let b = w.get(&cookie, "/approvals").await.body;
    assert_eq!(b.matches("data-testid=\"approval\"").count(), 2);
    assert_eq!(b.matches("data-testid=\"allow\"").count(), 1);
    assert_eq!(b.matches("data-testid=\"deny\"").count(), 1);
    assert_eq!(b.matches("data-testid=\"approval-details\"").count(), 2);
    assert!(b.contains("quorum 2 needs another channel"));
    let nonce = "nonce-c-9-0123456789";
    assert_eq!(b.matches(nonce).count(), 1);
    assert!(b.contains(&format!("name=\"nonce\" value=\"{nonce}\"")));
    assert!(
        !b.contains("nonce-c-10"),
        "no nonce for a call the web cannot decide"
    );
    assert!(b.contains("data-live"));
    assert!(b.contains("tty:alice"), "who the daemon will journal");
    assert!(!b.contains("data-testid=\"allow-session\""), "not offered");
}

#[tokio::test]
async fn allow_for_the_session_is_offered_only_where_the_rule_remembers() {
    let mut rec = recorder();
    rec.pending[0].remember_secs = Some(600);
    let mut deny_only = pending("c-11");
    deny_only.web_can_approve = false;
    deny_only.why_not = Some("tty:alice is not an approver of this rule".into());
    rec.pending.push(deny_only);
    let w = world(rows(), rec, false);
    let cookie = w.login().await;
    let b = w.get(&cookie, "/approvals").await.body;
    assert_eq!(b.matches("data-testid=\"allow-session\"").count(), 1);
    assert_eq!(b.matches("data-testid=\"allow\"").count(), 1);
    assert_eq!(b.matches("data-testid=\"deny\"").count(), 2);
    assert!(b.contains("is not an approver of this rule"));
    let csrf = hidden(&b, "csrf").unwrap();
    let decide = |decision: &str| {
        form(&[
            ("csrf", &csrf),
            ("call_id", "c-9"),
            ("input_sha256", &"ab".repeat(32)),
            ("nonce", "nonce-c-9-0123456789"),
            ("decision", decision),
        ])
    };
    let got = w
        .post(&cookie, "/approvals/decide", &decide("allow_session"))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        w.recorder.decided.lock().unwrap()[0].decision,
        agp_console::data::WebDecision::AllowSession
    );
    for bad in ["maybe", "", "ALLOW"] {
        let got = w.post(&cookie, "/approvals/decide", &decide(bad)).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(w.recorder.decided.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_daemon_that_takes_no_web_decisions_shows_no_buttons() {
    let mut rec = recorder();
    rec.daemon_view_only = true;
    let w = world(rows(), rec, false);
    let cookie = w.login().await;
    let b = w.get(&cookie, "/approvals").await.body;
    assert!(b.contains("data-testid=\"view-only\""));
    assert!(b.contains("data-call=\"c-9\""));
    assert!(!b.contains("data-testid=\"allow\""));
    assert!(!b.contains("data-testid=\"deny\""));
    assert!(hidden(&b, "nonce").is_none());
}

#[tokio::test]
async fn the_journal_page_verifies_and_serves_tlog_proofs() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let page = w.get(&cookie, "/journal").await.body;
    assert!(page.contains("data-testid=\"journal-entries\">3<"));
    let key_id = w.state.settings.verifier_key.as_ref().unwrap().id_hex();
    assert!(page.contains(&key_id));
    let csrf = hidden(&page, "csrf").unwrap();
    let ok = w
        .post(&cookie, "/journal/verify", &form(&[("csrf", &csrf)]))
        .await;
    assert!(
        ok.body.contains("data-testid=\"verify-intact\""),
        "{}",
        ok.body
    );

    let proof = w.get(&cookie, "/journal/proof?seq=1").await;
    assert_eq!(proof.status, StatusCode::OK);
    assert!(proof.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("attachment; filename=\"agp-entry-1.tlog-proof\""));
    let entries = std::fs::read_to_string(w.dir.path().join("journal/entries.jsonl")).unwrap();
    let line = entries.lines().nth(1).unwrap();
    let key = w.state.settings.verifier_key.as_ref().unwrap();
    let inc = agp_journal::proof::verify_inclusion(&proof.body, line.as_bytes(), key).unwrap();
    assert_eq!(inc.index, 1);
    assert!(agp_journal::proof::verify_inclusion(&proof.body, b"{\"forged\":1}", key).is_err());
    for bad in [
        "/journal/proof?seq=99",
        "/journal/proof?seq=x",
        "/journal/proof",
    ] {
        let got = w.get(&cookie, bad).await;
        assert!(got.status.is_client_error(), "{bad}");
    }

    // A tampered journal: Verify says so.
    let tampered = entries.replacen("/src", "/etc", 1);
    std::fs::write(w.dir.path().join("journal/entries.jsonl"), tampered).unwrap();
    let bad = w
        .post(&cookie, "/journal/verify", &form(&[("csrf", &csrf)]))
        .await;
    assert!(
        bad.body.contains("data-testid=\"verify-broken\""),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("data-testid=\"finding\""));
}

#[tokio::test]
async fn the_policy_page_shows_the_policy_and_explains_a_call() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let page = w.get(&cookie, "/policy").await.body;
    assert!(page.contains("data-testid=\"policy-text\""));
    assert!(page.contains("id = &quot;ls&quot;") || page.contains("id = \"ls\""));
    let q = format!(
        "/policy?tool=Bash&input={}&cwd=",
        agp_console::pages::sessions::urlencode("{\"command\":\"ls -l\"}")
    );
    let b = w.get(&cookie, &q).await.body;
    assert!(b.contains("data-decision=\"allow\""), "{b}");
    let q = format!(
        "/policy?tool=Bash&input={}",
        agp_console::pages::sessions::urlencode("{\"command\":\"rm -rf ~\"}")
    );
    let b = w.get(&cookie, &q).await.body;
    assert!(b.contains("data-decision=\"deny\""), "{b}");
    let b = w
        .get(&cookie, "/policy?tool=Bash&input=not-json")
        .await
        .body;
    assert!(b.contains("data-testid=\"explain-error\""));
}

#[tokio::test]
async fn events_are_a_server_sent_event_stream() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let resp = tower::ServiceExt::oneshot(
        w.app.clone(),
        Request::get("/events")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
}
