//! The guard, request by request: no or a wrong token, the cookie, a rebound Host, a foreign
//! Origin or fetch site, a forged or foreign CSRF token, a view-only console asked to decide,
//! and the headers on every answer.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};

use super::support::*;

// --- the token, the cookie ------------------------------------------------------------------

#[tokio::test]
async fn the_token_is_traded_for_a_strict_httponly_cookie_and_leaves_the_url() {
    let w = world(rows(), recorder(), false);
    let got = send(
        &w.app,
        Request::get(format!("/sessions/s-1?token={}", w.token))
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::SEE_OTHER);
    assert_eq!(got.headers[header::LOCATION], "/sessions/s-1");
    let cookie = got.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains(&w.token), "the cookie is not the token");
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(w.get(pair, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn no_token_no_cookie_a_wrong_token_or_a_wrong_cookie_is_refused_everywhere() {
    let w = world(rows(), recorder(), false);
    let paths = [
        "/",
        "/sessions/s-1",
        "/approvals",
        "/journal",
        "/journal/proof?seq=1",
        "/policy",
        "/events",
        "/static/console.js",
        "/favicon.ico",
        "/nowhere",
    ];
    for path in paths {
        let bare = send(
            &w.app,
            Request::get(path)
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(bare.status, StatusCode::UNAUTHORIZED, "{path}");
        let cookie = w.get("agp_console_4555=0000", path).await;
        assert_eq!(cookie.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let mut wrong = w.token.clone();
    wrong.replace_range(..1, if wrong.starts_with('0') { "1" } else { "0" });
    for t in [wrong.as_str(), "", &w.token[..10]] {
        let got = send(
            &w.app,
            Request::get(format!("/?token={t}"))
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "token {t:?}");
        assert!(!got.headers.contains_key(header::SET_COOKIE));
    }
    // A POST never trades the token.
    let post = send(
        &w.app,
        Request::post(format!("/journal/verify?token={}", w.token))
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_cookie_is_found_among_others_and_only_under_its_own_name() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let secret = cookie.split_once('=').unwrap().1.to_owned();
    let ok = w.get(&format!("theme=dark; {cookie}; lang=en"), "/").await;
    assert_eq!(ok.status, StatusCode::OK);
    for other in [
        format!("xagp_console_4555={secret}"),
        format!("agp_console_45551={secret}"),
        format!("agp_console_4556={secret}"),
        format!("agp_console_4555={}", &secret[..secret.len() - 1]),
        format!("agp_console_4555={secret}0"),
    ] {
        assert_eq!(
            w.get(&other, "/").await.status,
            StatusCode::UNAUTHORIZED,
            "{other}"
        );
    }
}

#[tokio::test]
async fn the_oldest_console_session_is_forgotten_past_the_limit() {
    let w = world(rows(), recorder(), false);
    let first = w.login().await;
    let mut last = String::new();
    for _ in 0..32 {
        last = w.login().await;
    }
    assert_eq!(w.get(&first, "/").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(w.get(&last, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_access_token_is_never_in_a_page() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let secret = cookie.split('=').nth(1).unwrap().to_owned();
    for path in [
        "/",
        "/sessions/s-1",
        "/approvals",
        "/journal",
        "/policy",
        "/journal/entry?seq=1",
    ] {
        let got = w.get(&cookie, path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert!(!got.body.contains(&w.token), "{path} shows the token");
        assert!(!got.body.contains(&secret), "{path} shows the cookie");
    }
}

// --- Host, Origin, fetch site -----------------------------------------------------------------

#[tokio::test]
async fn a_rebound_or_foreign_host_is_refused_even_with_the_cookie() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    for host in [
        Some("evil.example:4555"),
        Some("evil.example"),
        Some("127.0.0.1:4556"),
        Some("127.0.0.1"),
        Some("localhost.evil.example:4555"),
        None,
    ] {
        let mut req = Request::get("/").header(header::COOKIE, &cookie);
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        let got = send(&w.app, req.body(Body::empty()).unwrap()).await;
        assert_eq!(got.status, StatusCode::MISDIRECTED_REQUEST, "{host:?}");
        assert!(!got.body.contains("<table"), "{host:?}");
    }
    // The token is not traded on a foreign host either.
    let got = send(
        &w.app,
        Request::get(format!("/?token={}", w.token))
            .header(header::HOST, "evil.example:4555")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!got.headers.contains_key(header::SET_COOKIE));
    // Both names of the loopback console are fine.
    for host in [HOST, "localhost:4555", "LOCALHOST:4555"] {
        let got = send(
            &w.app,
            Request::get("/")
                .header(header::HOST, host)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(got.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn a_foreign_origin_or_a_cross_site_fetch_is_refused() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let csrf = w.csrf(&cookie).await;
    let body = form(&[("csrf", &csrf)]);
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1:4555",
        "http://127.0.0.1:4556",
        "http://127.0.0.1:4555.evil.example",
    ] {
        for method in ["GET", "POST"] {
            let got = send(
                &w.app,
                Request::builder()
                    .method(method)
                    .uri(if method == "GET" {
                        "/"
                    } else {
                        "/journal/verify"
                    })
                    .header(header::HOST, HOST)
                    .header(header::ORIGIN, origin)
                    .header(header::COOKIE, &cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;
            assert_eq!(got.status, StatusCode::FORBIDDEN, "{method} {origin}");
        }
    }
    // Two Origin headers are not a choice the console makes.
    let got = send(
        &w.app,
        Request::get("/")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header(header::ORIGIN, "http://evil.example")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    // A cross-site POST without Origin (Sec-Fetch-Site still says so).
    let got = send(
        &w.app,
        Request::post("/journal/verify")
            .header(header::HOST, HOST)
            .header("sec-fetch-site", "cross-site")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    // The console's own origin passes.
    let got = w.post(&cookie, "/journal/verify", &body).await;
    assert_eq!(got.status, StatusCode::OK);
    // `Origin: null` (what a browser sends on its same-origin form posts under
    // Referrer-Policy: no-referrer) passes only with Sec-Fetch-Site: same-origin.
    for (site, status) in [
        (Some("same-origin"), StatusCode::OK),
        (None, StatusCode::FORBIDDEN),
        (Some("cross-site"), StatusCode::FORBIDDEN),
        (Some("same-site"), StatusCode::FORBIDDEN),
        (Some("none"), StatusCode::FORBIDDEN),
    ] {
        let mut req = Request::post("/journal/verify")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "null")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let got = send(&w.app, req.body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(got.status, status, "Origin null, Sec-Fetch-Site {site:?}");
    }
    // Sec-Fetch-Site twice is no answer.
    let got = send(
        &w.app,
        Request::post("/journal/verify")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "null")
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
}

// --- CSRF ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_forged_or_foreign_csrf_token_decides_nothing() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let other = w.login().await;
    let other_csrf = w.csrf(&other).await;
    let page = w.get(&cookie, "/approvals").await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    assert_ne!(
        csrf, other_csrf,
        "each console session has its own CSRF token"
    );
    let nonce = hidden(&page.body, "nonce").unwrap();
    let fields = |csrf: Option<&str>| {
        let mut f = vec![
            ("call_id", "c-9"),
            (
                "input_sha256",
                "abababababababababababababababababababababababababababababababab",
            ),
            ("nonce", nonce.as_str()),
            ("decision", "allow"),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c));
        }
        form(&f)
    };
    let mut forged = csrf.clone();
    forged.replace_range(..2, if forged.starts_with("00") { "11" } else { "00" });
    for bad in [
        None,
        Some(""),
        Some(forged.as_str()),
        Some(other_csrf.as_str()),
        Some(&csrf[..20]),
    ] {
        let got = w.post(&cookie, "/approvals/decide", &fields(bad)).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{bad:?}");
    }
    let got = w.post(&cookie, "/journal/verify", "").await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(
        w.recorder.decided.lock().unwrap().is_empty(),
        "nothing reached the daemon"
    );

    let got = w
        .post(&cookie, "/approvals/decide", &fields(Some(&csrf)))
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert!(got.body.contains("data-testid=\"decided\""));
    assert!(got.body.contains("as alice via web"));
    let decided = w.recorder.decided.lock().unwrap();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0].call_id, "c-9");
    assert_eq!(decided[0].nonce, nonce);
    assert_eq!(decided[0].decision, agp_console::data::WebDecision::Allow);
}

#[tokio::test]
async fn a_refused_decision_says_why() {
    let w = world(
        rows(),
        Recorder {
            pending: vec![pending("c-9")],
            refuse: Some("the nonce was already used".into()),
            ..Recorder::default()
        },
        false,
    );
    let cookie = w.login().await;
    let page = w.get(&cookie, "/approvals").await;
    let f = form(&[
        ("csrf", &hidden(&page.body, "csrf").unwrap()),
        ("call_id", "c-9"),
        ("input_sha256", &"ab".repeat(32)),
        ("nonce", &hidden(&page.body, "nonce").unwrap()),
        ("decision", "deny"),
        ("reason", "no pushing today"),
    ]);
    let got = w.post(&cookie, "/approvals/decide", &f).await;
    assert_eq!(got.status, StatusCode::CONFLICT);
    assert!(got.body.contains("the nonce was already used"));
    let decided = w.recorder.decided.lock().unwrap();
    assert_eq!(decided[0].decision, agp_console::data::WebDecision::Deny);
    assert_eq!(decided[0].reason.as_deref(), Some("no pushing today"));
}

#[tokio::test]
async fn a_view_only_console_shows_no_buttons_and_refuses_decisions() {
    let w = world(rows(), recorder(), true);
    let cookie = w.login().await;
    let page = w.get(&cookie, "/approvals").await;
    assert!(page.body.contains("data-testid=\"view-only\""));
    assert!(
        page.body.contains("data-call=\"c-9\""),
        "pending calls are shown"
    );
    assert!(!page.body.contains("data-testid=\"allow\""));
    assert!(
        hidden(&page.body, "nonce").is_none(),
        "no nonce leaves the daemon's form"
    );
    let csrf = w.csrf(&cookie).await;
    let f = form(&[
        ("csrf", &csrf),
        ("call_id", "c-9"),
        ("input_sha256", &"ab".repeat(32)),
        ("nonce", "nonce-c-9-0123456789"),
        ("decision", "allow"),
    ]);
    let got = w.post(&cookie, "/approvals/decide", &f).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(w.recorder.decided.lock().unwrap().is_empty());
    // Reading stays possible: Verify is not a decision.
    let got = w
        .post(&cookie, "/journal/verify", &form(&[("csrf", &csrf)]))
        .await;
    assert_eq!(got.status, StatusCode::OK);
}

// --- headers ------------------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_carries_the_strict_headers() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    let mut answers = vec![];
    for path in [
        "/",
        "/approvals",
        "/journal",
        "/policy",
        "/static/console.js",
        "/nope",
    ] {
        answers.push(w.get(&cookie, path).await);
    }
    answers.push(w.get("", "/").await);
    answers.push(
        send(
            &w.app,
            Request::get("/")
                .header(header::HOST, "evil:1")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    );
    for got in answers {
        let h = &got.headers;
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn pages_use_no_inline_script_or_style_and_no_outside_asset() {
    let w = world(rows(), recorder(), false);
    let cookie = w.login().await;
    for path in ["/", "/sessions/s-1", "/approvals", "/journal", "/policy"] {
        let b = w.get(&cookie, path).await.body;
        assert!(b.contains("<script src=\"/static/console.js\""), "{path}");
        assert_eq!(
            b.matches("<script").count(),
            1,
            "{path}: one script, external"
        );
        assert!(!b.contains("<style"), "{path}");
        assert!(!b.contains(" style="), "{path}");
        for attr in ["src=\"", "href=\"", "action=\""] {
            for (at, _) in b.match_indices(attr) {
                let url = &b[at + attr.len()..];
                assert!(
                    url.starts_with('/') && !url.starts_with("//"),
                    "{path}: {}",
                    &url[..20.min(url.len())]
                );
            }
        }
    }
    let js = w.get(&cookie, "/static/console.js").await;
    assert_eq!(
        js.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(js.body.contains("EventSource"));
    let css = w.get(&cookie, "/static/console.css").await;
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
}
