//! Inspected hosts: the proxy terminates the client's TLS with a leaf from the session CA,
//! reads HTTP/1.1 requests off the decrypted stream one by one, judges each (rules, then the
//! judge for `require`), adds configured headers (credentials) and forwards it to the real
//! upstream over TLS verified normally.
//!
//! HTTP/2 is not offered to the client (ALPN `http/1.1` only; clients fall back). WebSocket
//! upgrades are refused for now.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector};

use crate::allowlist::normalize_host;
use crate::ca::SessionCa;
use crate::guard::connect_checked;
use crate::http1::{self, Body, HeadError, RequestHead};
use crate::observer::{EgressAttempt, EgressObserver, RequestReport, UpstreamOutcome};
use crate::rules::{DenyJudge, InspectHost, RequestJudge};

mod request;

/// Headers that belong to one hop and are never forwarded (plus those the `Connection` header
/// names). `Expect` is answered by the proxy itself once the request is allowed.
const HOP_HEADERS: &[&str] = &[
    "host",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// What the proxy needs to inspect hosts.
pub struct InspectConfig {
    pub ca: Arc<SessionCa>,
    pub hosts: Vec<InspectHost>,
    /// Verifies the real upstreams ([`crate::upstream_client_config`]).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub judge: Arc<dyn RequestJudge>,
    /// How long a request waits for the judge before it is refused.
    pub judge_timeout: Duration,
    /// How long a kept-alive client connection may sit between requests.
    pub idle_timeout: Duration,
    /// How long the upstream may take to start answering a request (a model API can think for
    /// minutes before its response head).
    pub response_timeout: Duration,
}

impl std::fmt::Debug for InspectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectConfig")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl InspectConfig {
    /// Upstreams verified against the web PKI roots; `require` refused (no judge).
    pub fn new(ca: Arc<SessionCa>, hosts: Vec<InspectHost>) -> Result<Self, rustls::Error> {
        Ok(Self {
            ca,
            hosts,
            upstream_tls: crate::tls::upstream_client_config(&[])?,
            judge: Arc::new(DenyJudge),
            judge_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            response_timeout: Duration::from_secs(600),
        })
    }

    pub fn host(&self, host: &str, port: u16) -> Option<&InspectHost> {
        self.hosts.iter().find(|h| h.host == host && h.port == port)
    }
}

/// Everything one inspected connection needs.
pub(crate) struct Inspection {
    pub config: Arc<InspectConfig>,
    pub host: InspectHost,
    /// The checked addresses of the host: the only ones ever connected to.
    pub addrs: Vec<SocketAddr>,
    pub observer: Arc<dyn EgressObserver>,
    pub connect_timeout: Duration,
    pub head_timeout: Duration,
    pub peer_pid: Option<i32>,
}

type Upstream = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

/// A refusal the client is answered with.
struct Refused {
    status: u16,
    rule: String,
    why: String,
}

fn refused(status: u16, rule: &str, why: impl Into<String>) -> Refused {
    Refused {
        status,
        rule: rule.to_owned(),
        why: why.into(),
    }
}

/// What a request was allowed as.
struct Allowed {
    rule: String,
    reason: String,
    path: String,
    /// The head to send upstream.
    head: Vec<u8>,
    body: Body,
    credentials: Vec<String>,
    expect_continue: bool,
}

impl Inspection {
    /// Serves a client that was answered `200` to its CONNECT.
    pub(crate) async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let Ok(Ok(start)) = tokio::time::timeout(self.head_timeout, acceptor).await else {
            return;
        };
        // The TLS server name must be the host the CONNECT was judged for: a different name here
        // is fronting at the TLS layer.
        let sni = start.client_hello().server_name().map(str::to_owned);
        if let Some(sni) = &sni {
            if normalize_host(sni).as_deref() != Ok(self.host.host.as_str()) {
                let why = format!(
                    "TLS server name {sni:?} does not match the CONNECT host {} (domain fronting)",
                    self.host.host
                );
                let _ = self.observer.observe(&EgressAttempt {
                    method: "CONNECT".into(),
                    host: Some(self.host.host.clone()),
                    port: Some(self.host.port),
                    allowed: false,
                    reason: why,
                    peer_pid: self.peer_pid,
                });
                return;
            }
        }
        let Ok(server) = self.config.ca.server_config(&self.host.host) else {
            return;
        };
        let Ok(Ok(tls)) = tokio::time::timeout(self.head_timeout, start.into_stream(server)).await
        else {
            return;
        };
        let mut client = BufReader::new(tls);
        let mut upstream: Option<Upstream> = None;
        let mut first = true;
        loop {
            let wait = if first {
                self.head_timeout
            } else {
                self.config.idle_timeout
            };
            first = false;
            let head = match tokio::time::timeout(wait, http1::read_head(&mut client)).await {
                Err(_) | Ok(Err(HeadError::Eof | HeadError::Io(_))) => break,
                Ok(Err(HeadError::TooLarge)) => {
                    let r = refused(
                        431,
                        "framing",
                        format!("request head over {} bytes", crate::MAX_HEAD_BYTES),
                    );
                    self.report_refusal("", "", &r).await;
                    answer(&mut client, &r, true).await;
                    break;
                }
                Ok(Ok(h)) => h,
            };
            let req = match http1::parse_request(&head) {
                Ok(r) => r,
                Err(why) => {
                    let r = refused(400, "framing", why);
                    self.report_refusal("", "", &r).await;
                    answer(&mut client, &r, true).await;
                    break;
                }
            };
            let client_close =
                req.minor == 0 || http1::has_token(&req.headers, "connection", "close");
            let judged = self.judge(&req).await;
            let allowed = match judged {
                Err(r) => {
                    let path = display_path(&req.target);
                    self.report_refusal(&req.method, &path, &r).await;
                    // A refused request's body is not read: the connection ends with it.
                    let has_body = !matches!(http1::request_body(&req.headers), Ok(Body::None));
                    let close = client_close || has_body;
                    answer(&mut client, &r, close).await;
                    if close {
                        break;
                    }
                    continue;
                }
                Ok(a) => a,
            };
            let mut report = RequestReport {
                host: self.host.host.clone(),
                port: self.host.port,
                method: req.method.clone(),
                path: allowed.path.clone(),
                allowed: true,
                rule: allowed.rule.clone(),
                reason: allowed.reason.clone(),
                status: None,
                upstream_error: None,
                bytes_up: 0,
                bytes_down: 0,
                credentials: allowed.credentials.clone(),
                count: 1,
                peer_pid: self.peer_pid,
            };
            let keep = self
                .exchange(
                    &mut client,
                    &mut upstream,
                    &req,
                    &allowed,
                    &mut report,
                    client_close,
                )
                .await;
            if self.record(report).await.is_err() {
                break;
            }
            if !keep {
                break;
            }
        }
        let _ = client.get_mut().shutdown().await;
    }

    /// Forwards one allowed request and streams its response back; returns whether the client
    /// connection may carry another request.
    async fn exchange<C>(
        &self,
        client: &mut BufReader<C>,
        upstream: &mut Option<Upstream>,
        req: &RequestHead,
        allowed: &Allowed,
        report: &mut RequestReport,
        client_close: bool,
    ) -> bool
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        if upstream.is_none() {
            match self.connect_upstream().await {
                Ok(u) => *upstream = Some(u),
                Err(e) => {
                    report.upstream_error = Some(e.clone());
                    let r = refused(502, &allowed.rule, e);
                    answer(client, &r, true).await;
                    return false;
                }
            }
        }
        let Some(up) = upstream.as_mut() else {
            return false;
        };
        if allowed.expect_continue
            && client
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return false;
        }
        let sent = async {
            up.get_mut().write_all(&allowed.head).await?;
            let n = http1::copy_body(client, up.get_mut(), allowed.body).await?;
            up.get_mut().flush().await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        match sent {
            Ok(n) => report.bytes_up = allowed.head.len() as u64 + n,
            Err(e) => {
                report.upstream_error = Some(format!("sending the request failed: {e}"));
                *upstream = None;
                let r = refused(502, &allowed.rule, "sending the request upstream failed");
                answer(client, &r, true).await;
                return false;
            }
        }

        // Interim (1xx) responses are passed on; the final one ends the exchange.
        loop {
            let head = match tokio::time::timeout(
                self.config.response_timeout,
                http1::read_head(up),
            )
            .await
            {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let why = match e {
                        HeadError::TooLarge => "upstream response head too large".to_owned(),
                        HeadError::Eof => "upstream closed without answering".to_owned(),
                        HeadError::Io(e) => format!("reading the upstream response failed: {e}"),
                    };
                    report.upstream_error = Some(why.clone());
                    *upstream = None;
                    answer(client, &refused(502, &allowed.rule, why), true).await;
                    return false;
                }
                Err(_) => {
                    report.upstream_error = Some("no upstream response in time".into());
                    *upstream = None;
                    answer(
                        client,
                        &refused(504, &allowed.rule, "no upstream response in time"),
                        true,
                    )
                    .await;
                    return false;
                }
            };
            let resp = match http1::parse_response(&head) {
                Ok(r) => r,
                Err(why) => {
                    report.upstream_error = Some(why.clone());
                    *upstream = None;
                    answer(client, &refused(502, &allowed.rule, why), true).await;
                    return false;
                }
            };
            report.status = Some(resp.status);
            if (100..200).contains(&resp.status) {
                if resp.status == 101 {
                    // No upgrade was forwarded, so a 101 is a broken upstream.
                    *upstream = None;
                    return false;
                }
                let h = response_head(&resp, false);
                if client.get_mut().write_all(&h).await.is_err() {
                    return false;
                }
                report.bytes_down += h.len() as u64;
                continue;
            }
            let body = match http1::response_body(resp.status, &req.method, &resp.headers) {
                Ok(b) => b,
                Err(why) => {
                    report.upstream_error = Some(why.clone());
                    *upstream = None;
                    answer(client, &refused(502, &allowed.rule, why), true).await;
                    return false;
                }
            };
            let upstream_close = resp.minor == 0
                || http1::has_token(&resp.headers, "connection", "close")
                || body == Body::UntilClose;
            let close = client_close || body == Body::UntilClose;
            let h = response_head(&resp, close);
            let copied = async {
                client.get_mut().write_all(&h).await?;
                let n = http1::copy_body(up, client.get_mut(), body).await?;
                client.get_mut().flush().await?;
                Ok::<u64, std::io::Error>(n)
            }
            .await;
            if upstream_close {
                *upstream = None;
            }
            return match copied {
                Ok(n) => {
                    report.bytes_down += h.len() as u64 + n;
                    !close
                }
                Err(e) => {
                    report.upstream_error = Some(format!("relaying the response failed: {e}"));
                    *upstream = None;
                    false
                }
            };
        }
    }

    async fn connect_upstream(&self) -> Result<Upstream, String> {
        let (host, port) = (&self.host.host, self.host.port);
        let outcome = |error: Option<String>| UpstreamOutcome {
            host: host.clone(),
            port,
            error,
            peer_pid: self.peer_pid,
        };
        let result = async {
            let tcp = connect_checked(&self.addrs, self.connect_timeout)
                .await
                .map_err(|e| format!("cannot reach {host}:{port}: {e}"))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
            let connector = TlsConnector::from(self.config.upstream_tls.clone());
            let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| format!("no TLS handshake with {host}:{port} in time"))?
                .map_err(|e| format!("TLS with {host}:{port} failed: {e}"))?;
            Ok(BufReader::new(tls))
        }
        .await;
        let o = outcome(result.as_ref().err().cloned());
        let observer = self.observer.clone();
        let _ = tokio::task::spawn_blocking(move || observer.upstream(&o)).await;
        result
    }

    async fn record(&self, report: RequestReport) -> Result<(), String> {
        let observer = self.observer.clone();
        // The observer may do blocking I/O (a durable journal append).
        tokio::task::spawn_blocking(move || observer.request(&report))
            .await
            .map_err(|e| format!("egress observer failed: {e}"))?
    }

    async fn report_refusal(&self, method: &str, path: &str, r: &Refused) {
        let report = RequestReport {
            host: self.host.host.clone(),
            port: self.host.port,
            method: method.to_owned(),
            path: path.to_owned(),
            allowed: false,
            rule: r.rule.clone(),
            reason: r.why.clone(),
            status: None,
            upstream_error: None,
            bytes_up: 0,
            bytes_down: 0,
            credentials: Vec::new(),
            count: 1,
            peer_pid: self.peer_pid,
        };
        let _ = self.record(report).await;
    }
}

/// The path of a raw target as reported for a refused request: no query, bounded.
fn display_path(target: &str) -> String {
    let p = target.split(['?', '#']).next().unwrap_or_default();
    truncate(p, 200).to_owned()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The response head as relayed: hop-by-hop headers dropped, and `Content-Length` dropped when
/// a transfer coding frames the body (the proxy framed it by the coding; the client must too).
fn response_head(resp: &http1::ResponseHead, close: bool) -> Vec<u8> {
    let coded = http1::values(&resp.headers, "transfer-encoding")
        .next()
        .is_some();
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason).as_bytes());
    for (name, value) in &resp.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "connection" | "keep-alive" | "proxy-connection"
        ) || (coded && lower == "content-length")
        {
            continue;
        }
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value);
        h.extend_from_slice(b"\r\n");
    }
    if close {
        h.extend_from_slice(b"Connection: close\r\n");
    }
    h.extend_from_slice(b"\r\n");
    h
}

async fn answer<C: AsyncRead + AsyncWrite + Unpin>(
    client: &mut BufReader<C>,
    r: &Refused,
    close: bool,
) {
    let text = match r.status {
        400 => "Bad Request",
        403 => "Forbidden",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Gateway Timeout",
    };
    let body = format!("agp egress: {}\n", r.why);
    let conn = if close { "close" } else { "keep-alive" };
    let response = format!(
        "HTTP/1.1 {} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: {conn}\r\nX-Agp-Egress: refused\r\n\r\n{body}",
        r.status,
        body.len()
    );
    let _ = client.get_mut().write_all(response.as_bytes()).await;
    let _ = client.get_mut().flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_response_heads_have_one_framing() {
        let resp = http1::parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
              Connection: keep-alive\r\nX-A: 1\r\n\r\n",
        )
        .unwrap();
        let head = String::from_utf8(response_head(&resp, true)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nConnection: close\r\n\r\n"
        );
    }
}
