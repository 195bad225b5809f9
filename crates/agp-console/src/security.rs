//! Who may talk to the console, and what every response carries.
//!
//! Every request passes [`guard`] before any handler: the Host header must name the console
//! itself (a DNS-rebound name does not), an Origin header (when a browser sends one) must be the
//! console's own, cross-site fetches may not change anything, and the request must carry the
//! access token (first visit, in the URL, traded for a cookie) or a console session cookie.
//! Every POST also carries its session's CSRF token ([`Guard::csrf_ok`]). Secrets are compared
//! in constant time (`subtle`), so response timing tells nothing about how much of a guess was
//! right.

use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::AppState;

/// Console sessions kept at once; the oldest is forgotten past this (its browser must open the
/// URL with the token again).
const MAX_SESSIONS: usize = 32;

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// One browser that traded the access token: its cookie secret and its CSRF token.
#[derive(Clone)]
pub struct ConsoleSession {
    secret: String,
    pub csrf: String,
}

/// The console's secrets and the names it answers to.
pub struct Guard {
    token: String,
    sessions: Mutex<Vec<ConsoleSession>>,
    /// Host header values accepted, lower case (`127.0.0.1:8080`, `localhost:8080`).
    hosts: Vec<String>,
    /// `http://` or `https://` + each host.
    origins: Vec<String>,
    cookie: String,
    tls: bool,
}

/// 32 random bytes, hex: the access token, cookie secrets and CSRF tokens.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(hex::encode(b))
}

pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Guard {
    pub fn new(token: String, hosts: Vec<String>, port: u16, tls: bool) -> Self {
        let hosts: Vec<String> = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let scheme = if tls { "https" } else { "http" };
        let origins = hosts.iter().map(|h| format!("{scheme}://{h}")).collect();
        Guard {
            token,
            sessions: Mutex::new(Vec::new()),
            hosts,
            origins,
            // Cookies are not separated by port: one name per console keeps two consoles on
            // one machine from overwriting each other's session.
            cookie: format!("agp_console_{port}"),
            tls,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// No Origin, or the console's own. `null` passes only from the console's own pages: with
    /// `Referrer-Policy: no-referrer` browsers send `Origin: null` on their same-origin form
    /// posts, and then `Sec-Fetch-Site: same-origin` (a header pages cannot set) says where the
    /// post came from; an opaque origin elsewhere (a sandboxed frame, a `data:` page) is
    /// `cross-site` and refused.
    fn origin_ok(&self, headers: &HeaderMap) -> bool {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (None, _) => true,
            (Some(o), None) if o == "null" => fetch_site(headers) == Some("same-origin"),
            (Some(o), None) => o
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|a| a.eq_ignore_ascii_case(o))),
            (Some(_), Some(_)) => false,
        }
    }

    fn new_session(&self) -> Result<ConsoleSession, getrandom::Error> {
        let s = ConsoleSession {
            secret: random_token()?,
            csrf: random_token()?,
        };
        let mut all = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.len() >= MAX_SESSIONS {
            all.remove(0);
        }
        all.push(s.clone());
        Ok(s)
    }

    /// The session whose secret the cookie holds; every stored secret is compared, in
    /// constant time, whichever matches.
    fn session_of(&self, headers: &HeaderMap) -> Option<ConsoleSession> {
        let prefix = format!("{}=", self.cookie);
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(prefix.as_str()).map(str::to_owned))?;
        let all = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = None;
        for s in all.iter() {
            if ct_eq(&s.secret, &value) {
                found = Some(s.clone());
            }
        }
        found
    }

    /// The CSRF token a form carried is its session's.
    pub fn csrf_ok(session: &ConsoleSession, sent: &str) -> bool {
        ct_eq(&session.csrf, sent)
    }

    fn set_cookie(&self, s: &ConsoleSession) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict{}",
            self.cookie,
            s.secret,
            if self.tls { "; Secure" } else { "" }
        )
    }
}

fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all("sec-fetch-site").iter();
    match (all.next(), all.next()) {
        (Some(v), None) => v.to_str().ok(),
        // Absent, or sent twice: no answer.
        (None, _) => None,
        (Some(_), Some(_)) => Some(""),
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// The token carried in the query string, if any (`token=` and nothing else is looked at).
fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// Host, Origin, fetch site, then the token or the session; headers on every answer.
pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let mut resp = check(&st, &mut req).await;
    if resp.is_none() {
        resp = Some(next.run(req).await);
    }
    let mut resp = resp.unwrap_or_else(|| refuse(StatusCode::INTERNAL_SERVER_ERROR, "error"));
    secure_headers(resp.headers_mut());
    resp
}

async fn check(st: &AppState, req: &mut Request) -> Option<Response> {
    let g = &st.guard;
    let headers = req.headers();
    if !g.host_ok(headers) {
        return Some(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to the address it printed",
        ));
    }
    if !g.origin_ok(headers) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ));
    }
    let changes = req.method() != Method::GET && req.method() != Method::HEAD;
    if changes {
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if site.is_some_and(|s| s != "same-origin" && s != "none") {
            return Some(refuse(StatusCode::FORBIDDEN, "cross-site request refused"));
        }
    }
    if let Some(sent) = query_token(req.uri().query()) {
        if changes || !ct_eq(g.token(), sent) {
            return Some(refuse(StatusCode::UNAUTHORIZED, "wrong access token"));
        }
        let Ok(session) = g.new_session() else {
            return Some(refuse(StatusCode::INTERNAL_SERVER_ERROR, "no randomness"));
        };
        // The token leaves the address bar (and the history) at once.
        let path = req.uri().path().to_owned();
        let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, path)]).into_response();
        if let Ok(v) = HeaderValue::from_str(&g.set_cookie(&session)) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Some(resp);
    }
    let Some(session) = g.session_of(req.headers()) else {
        return Some(refuse(
            StatusCode::UNAUTHORIZED,
            "open the console with the address (and token) `agp console` printed",
        ));
    };
    req.extensions_mut().insert(session);
    None
}

pub fn secure_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
}
