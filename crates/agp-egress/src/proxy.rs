//! The host-side HTTP proxy on a Unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Semaphore};

use crate::allowlist::{authority_of_url, normalize_host, split_host_port, Allowlist};
use crate::guard::{connect_checked, resolve_checked, Opening, Refusal, Resolve, SystemResolver};
use crate::inspect::{InspectConfig, Inspection};
use crate::observer::{EgressAttempt, EgressObserver, UpstreamOutcome};
use crate::rewind::Rewind;
use crate::rules::{normalize_path, RequestJudge, RequestView, Verdict};
use crate::EgressError;

/// Largest request head (request line plus headers) the proxy reads; larger heads are refused
/// with 431 so a client cannot make the proxy buffer without bound.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Hop-by-hop and proxy headers never forwarded upstream (`Host` is rewritten from the target).
const DROPPED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "keep-alive",
    "upgrade",
    "te",
];

#[derive(Clone)]
pub struct ProxyConfig {
    /// Where to listen; the file must not exist yet. Put it in a directory that is bound
    /// read-only into the sandbox.
    pub socket: PathBuf,
    pub allowlist: Allowlist,
    /// How long a client may take to send its request head.
    pub head_timeout: Duration,
    pub connect_timeout: Duration,
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
    /// Resolves names on the host (once per connection; every answer is checked).
    pub resolver: Arc<dyn Resolve>,
    /// Names that may resolve to private, loopback or link-local addresses (internal services
    /// the configuration lists on purpose). IP literals listed exactly in the allowlist are open
    /// as they are; nothing else reaches a non-public address.
    pub private_hosts: Vec<String>,
    /// Hosts whose TLS is terminated and whose requests are judged one by one.
    pub inspect: Option<Arc<InspectConfig>>,
    /// Asked about a destination neither the allowlist nor an inspected host covers (a CONNECT
    /// or plain request to a new host), after its addresses passed the checks. `None`: refused.
    pub destination_judge: Option<Arc<dyn RequestJudge>>,
    /// How long such a request waits for the judge before it is refused.
    pub judge_timeout: Duration,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("socket", &self.socket)
            .field("allowlist", &self.allowlist)
            .field("private_hosts", &self.private_hosts)
            .field("inspect", &self.inspect)
            .field("destination_judge", &self.destination_judge.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyConfig {
    pub fn new(socket: impl Into<PathBuf>, allowlist: Allowlist) -> Self {
        Self {
            socket: socket.into(),
            allowlist,
            head_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_connections: 256,
            resolver: Arc::new(SystemResolver),
            private_hosts: Vec::new(),
            inspect: None,
            destination_judge: None,
            judge_timeout: Duration::from_secs(120),
        }
    }
}

pub struct EgressProxy;

impl EgressProxy {
    /// Binds the socket (mode 0600) and serves it on a thread of its own, with its own
    /// single-threaded runtime, until the returned handle is stopped or dropped.
    pub fn start(
        config: ProxyConfig,
        observer: Arc<dyn EgressObserver>,
    ) -> Result<RunningProxy, EgressError> {
        let listener = std::os::unix::net::UnixListener::bind(&config.socket)?;
        std::fs::set_permissions(&config.socket, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let socket = config.socket.clone();
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            config,
            observer,
        });
        let thread = std::thread::Builder::new()
            .name("agp-egress".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = UnixListener::from_std(listener) else {
                        return;
                    };
                    serve(listener, shared, stop_rx).await;
                });
            })?;
        Ok(RunningProxy {
            socket,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// A serving proxy. Dropping it stops the proxy and removes the socket.
pub struct RunningProxy {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningProxy {
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Shared {
    config: ProxyConfig,
    observer: Arc<dyn EgressObserver>,
    slots: Arc<Semaphore>,
}

async fn serve(listener: UnixListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => {
                let observer = shared.observer.clone();
                let _ = tokio::task::spawn_blocking(move || observer.flush(true)).await;
                return;
            }
            _ = tick.tick() => {
                let observer = shared.observer.clone();
                tokio::task::spawn_blocking(move || observer.flush(false));
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move { handle(stream, shared).await });
            }
        }
    }
}

/// What a request head asked for.
struct Target {
    method: String,
    host: String,
    port: u16,
    /// Bytes to send upstream before piping: the rewritten head (plain requests) or nothing
    /// (CONNECT).
    upstream_head: Option<Vec<u8>>,
    /// The path of a plain request, without its query (CONNECT: none, the requests inside stay
    /// encrypted).
    path: Option<String>,
}

enum HeadError {
    TooLarge,
    Malformed(String),
    /// The client closed before sending anything: not an attempt.
    Empty,
}

async fn handle(mut client: UnixStream, shared: Arc<Shared>) {
    let peer_pid = client.peer_cred().ok().and_then(|c| c.pid());
    let attempt = |method: &str, host: Option<&str>, port: Option<u16>, allowed, reason: String| {
        EgressAttempt {
            method: method.to_owned(),
            host: host.map(str::to_owned),
            port,
            allowed,
            reason,
            peer_pid,
        }
    };

    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        let a = attempt("", None, None, false, "too many open connections".into());
        let _ = report(&shared, a).await;
        refuse(&mut client, 503, "too many open connections").await;
        return;
    };

    let read = tokio::time::timeout(shared.config.head_timeout, read_head(&mut client)).await;
    let (head, leftover) = match read {
        Err(_) => {
            let a = attempt("", None, None, false, "no request head in time".into());
            let _ = report(&shared, a).await;
            refuse(&mut client, 408, "no request head in time").await;
            return;
        }
        Ok(Err(HeadError::Empty)) => return,
        Ok(Err(HeadError::TooLarge)) => {
            let why = format!("request head over {MAX_HEAD_BYTES} bytes");
            let _ = report(&shared, attempt("", None, None, false, why.clone())).await;
            refuse(&mut client, 431, &why).await;
            return;
        }
        Ok(Err(HeadError::Malformed(why))) => {
            let why = format!("malformed request: {why}");
            let _ = report(&shared, attempt("", None, None, false, why.clone())).await;
            refuse(&mut client, 400, &why).await;
            return;
        }
        Ok(Ok(parts)) => parts,
    };

    let target = match parse_target(&head) {
        Ok(t) => t,
        Err((method, why)) => {
            let _ = report(&shared, attempt(&method, None, None, false, why.clone())).await;
            refuse(&mut client, 400, &why).await;
            return;
        }
    };
    let (host, port) = (target.host.as_str(), target.port);

    let inspected = match (&shared.config.inspect, target.upstream_head.is_none()) {
        (Some(cfg), true) => cfg.host(host, port).cloned().map(|h| (cfg.clone(), h)),
        _ => None,
    };
    // An inspected host's requests are judged one by one; a plain request to it would skip that.
    if target.upstream_head.is_some()
        && shared
            .config
            .inspect
            .as_ref()
            .is_some_and(|c| c.host(host, port).is_some())
    {
        let why = format!("{host}:{port} is inspected: reach it over https (CONNECT)");
        let a = attempt(&target.method, Some(host), Some(port), false, why.clone());
        let _ = report(&shared, a).await;
        refuse(&mut client, 403, &why).await;
        return;
    }
    // A destination nobody listed goes to the judge (a human), once its addresses are checked:
    // nobody is asked about a destination that would be refused anyway.
    let unlisted = inspected.is_none() && !shared.config.allowlist.allows(host, port);
    if unlisted && shared.config.destination_judge.is_none() {
        let why = format!("{host}:{port} is not on the egress allowlist");
        let a = attempt(&target.method, Some(host), Some(port), false, why.clone());
        let _ = report(&shared, a).await;
        refuse(&mut client, 403, &why).await;
        return;
    }

    // One resolution, every answer checked; only these addresses are connected to.
    let opening = if host.parse::<std::net::IpAddr>().is_ok()
        && (shared.config.allowlist.lists_exactly(host, port)
            || inspected.as_ref().is_some_and(|(_, h)| h.allow_private))
    {
        Opening::ListedLiteral
    } else if shared.config.private_hosts.iter().any(|h| h == host)
        || inspected.as_ref().is_some_and(|(_, h)| h.allow_private)
    {
        Opening::Private
    } else {
        Opening::PublicOnly
    };
    let outcome = |error: Option<String>| UpstreamOutcome {
        host: host.to_owned(),
        port,
        error,
        peer_pid,
    };
    let checked = resolve_checked(&shared.config.resolver, host, port, opening).await;
    if let Err(Refusal::Forbidden(why)) = &checked {
        let a = attempt(&target.method, Some(host), Some(port), false, why.clone());
        let _ = report(&shared, a).await;
        refuse(&mut client, 403, why).await;
        return;
    }
    if unlisted {
        if let Err(r) = &checked {
            // A destination that cannot be reached is not worth a human's time.
            let why = format!(
                "{host}:{port} is not on the egress allowlist ({})",
                r.message()
            );
            let a = attempt(&target.method, Some(host), Some(port), false, why.clone());
            let _ = report(&shared, a).await;
            refuse(&mut client, 403, &why).await;
            return;
        }
    }
    let reason = if unlisted {
        match ask_judge(&shared, &target, peer_pid).await {
            Ok(why) => why,
            Err(why) => {
                let a = attempt(&target.method, Some(host), Some(port), false, why.clone());
                let _ = report(&shared, a).await;
                refuse(&mut client, 403, &why).await;
                return;
            }
        }
    } else if inspected.is_some() {
        "inspected host: TLS terminated, each request judged".to_owned()
    } else {
        "on the egress allowlist".to_owned()
    };
    let a = attempt(&target.method, Some(host), Some(port), true, reason);
    if let Err(e) = report(&shared, a).await {
        // Fail closed: an allowed connection that cannot be recorded does not happen.
        refuse(&mut client, 503, &format!("egress not recorded: {e}")).await;
        return;
    }
    let addrs = match checked {
        Ok(a) => a,
        Err(r) => {
            let why = r.message().to_owned();
            report_upstream(&shared, outcome(Some(why.clone()))).await;
            refuse(&mut client, 502, &why).await;
            return;
        }
    };

    if let Some((config, inspect_host)) = inspected {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let inspection = Inspection {
            config,
            host: inspect_host,
            addrs,
            observer: shared.observer.clone(),
            connect_timeout: shared.config.connect_timeout,
            head_timeout: shared.config.head_timeout,
            peer_pid,
        };
        inspection.serve(Rewind::new(leftover, client)).await;
        return;
    }

    let mut upstream = match connect_checked(&addrs, shared.config.connect_timeout).await {
        Ok(s) => {
            report_upstream(&shared, outcome(None)).await;
            s
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            let secs = shared.config.connect_timeout.as_secs();
            let why = format!("no connection within {secs} s");
            report_upstream(&shared, outcome(Some(why))).await;
            refuse(
                &mut client,
                504,
                &format!("timed out reaching {host}:{port}"),
            )
            .await;
            return;
        }
        Err(e) => {
            let why = format!("cannot reach {host}:{port}: {e}");
            report_upstream(&shared, outcome(Some(e.to_string()))).await;
            refuse(&mut client, 502, &why).await;
            return;
        }
    };

    let started = match &target.upstream_head {
        None => {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
        }
        Some(h) => upstream.write_all(h).await,
    };
    if started.is_err() {
        return;
    }
    if !leftover.is_empty() && upstream.write_all(&leftover).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Asks the destination judge about an unlisted host, bounded by the judge timeout: `Ok` with
/// the reason it was approved, `Err` with why it was refused.
async fn ask_judge(
    shared: &Arc<Shared>,
    target: &Target,
    peer_pid: Option<i32>,
) -> Result<String, String> {
    let Some(judge) = &shared.config.destination_judge else {
        return Err(format!(
            "{}:{} is not on the egress allowlist",
            target.host, target.port
        ));
    };
    let view = RequestView {
        host: target.host.clone(),
        port: target.port,
        method: target.method.clone(),
        path: target.path.clone().unwrap_or_default(),
        rule: UNLISTED_RULE.into(),
        peer_pid,
    };
    match tokio::time::timeout(shared.config.judge_timeout, judge.judge(view)).await {
        Ok(Verdict::Allow(why)) => Ok(format!("approved: {why}")),
        Ok(Verdict::Deny(why)) => Err(format!("refused: {why}")),
        Err(_) => Err(format!(
            "{}:{} is not on the egress allowlist and no approval came within {} s",
            target.host,
            target.port,
            shared.config.judge_timeout.as_secs()
        )),
    }
}

/// The rule a request to a host nobody listed is judged under.
pub const UNLISTED_RULE: &str = "unlisted-host";

async fn report(shared: &Arc<Shared>, attempt: EgressAttempt) -> Result<(), String> {
    let observer = shared.observer.clone();
    // The observer may do blocking I/O (a durable journal append).
    tokio::task::spawn_blocking(move || observer.observe(&attempt))
        .await
        .map_err(|e| format!("egress observer failed: {e}"))?
}

async fn report_upstream(shared: &Arc<Shared>, outcome: UpstreamOutcome) {
    let observer = shared.observer.clone();
    let _ = tokio::task::spawn_blocking(move || observer.upstream(&outcome)).await;
}

async fn refuse(client: &mut UnixStream, status: u16, why: &str) {
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Gateway Timeout",
    };
    let body = format!("agp egress: {why}\n");
    let response = format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-Agp-Egress: refused\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Reads until the end of the request head; returns the head and any bytes read past it.
async fn read_head(client: &mut UnixStream) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let room = (MAX_HEAD_BYTES + 1)
            .saturating_sub(buf.len())
            .min(chunk.len());
        if room == 0 {
            return Err(HeadError::TooLarge);
        }
        let n = client
            .read(&mut chunk[..room])
            .await
            .map_err(|e| HeadError::Malformed(e.to_string()))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Empty
            } else {
                HeadError::Malformed("connection closed inside the request head".into())
            });
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = find_head_end(&buf[scan_from..]) {
            let end = scan_from + pos;
            if end > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            let leftover = buf.split_off(end);
            return Ok((buf, leftover));
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Judges the request head; the error carries the method (when known) and why it is refused.
fn parse_target(head: &[u8]) -> Result<Target, (String, String)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err((String::new(), "incomplete head".into())),
        Err(e) => return Err((String::new(), format!("malformed request: {e}"))),
    }
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    let fail = |why: String| (method.clone(), why);

    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target).map_err(fail)?;
        let port = port.ok_or_else(|| fail(format!("CONNECT target {target:?} has no port")))?;
        let host = normalize_host(host).map_err(fail)?;
        return Ok(Target {
            method: "CONNECT".into(),
            host,
            port,
            upstream_head: None,
            path: None,
        });
    }

    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(fail("https must be proxied with CONNECT".into()));
    }
    if !lower.starts_with("http://") {
        return Err(fail(format!(
            "not a proxy request (target {:?}): use an absolute http:// URI or CONNECT",
            truncate(target, 100)
        )));
    }
    let (host, port) = authority_of_url(target).map_err(|e| fail(e.to_string()))?;
    let after_scheme = &target["http://".len()..];
    let path_start = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = &after_scheme[..path_start];
    let path = match &after_scheme[path_start..] {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    let bare = path.split('?').next().unwrap_or("/");
    // Shown to the judge only; what is forwarded is the path as sent.
    let shown = normalize_path(bare).unwrap_or_else(|_| bare.to_owned());

    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n").as_bytes());
    for h in req.headers.iter() {
        if DROPPED_HEADERS
            .iter()
            .any(|d| h.name.eq_ignore_ascii_case(d))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // One request per connection: a follow-up request for another host must come through a
    // new connection and be judged again.
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Target {
        method,
        host,
        port,
        upstream_head: Some(out),
        path: Some(shown),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        let t = parse_target(b"CONNECT API.Example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("api.example.com", 443));
        assert!(t.upstream_head.is_none());
        assert!(parse_target(b"CONNECT example.com HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_target(b"CONNECT [::1]:22 HTTP/1.1\r\n\r\n").is_ok());
    }

    #[test]
    fn plain_requests_are_rewritten_to_origin_form() {
        let t = parse_target(
            b"POST http://127.0.0.1:9000/v1/messages?beta=true HTTP/1.1\r\nHost: evil.com\r\n\
              Proxy-Authorization: x\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9000));
        let head = String::from_utf8(t.upstream_head.unwrap()).unwrap();
        assert!(
            head.starts_with("POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n")
        );
        assert!(!head.contains("evil.com"));
        assert!(!head.to_ascii_lowercase().contains("proxy-authorization"));
        assert!(head.contains("Content-Length: 2\r\n"));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn non_proxy_forms_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            b"GET https://example.com/ HTTP/1.1\r\n\r\n",
            b"GET ftp://example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://user@example.com/ HTTP/1.1\r\n\r\n",
            b"GET http://127.1/ HTTP/1.1\r\n\r\n",
            b"NOT A REQUEST\r\n\r\n",
        ] {
            assert!(
                parse_target(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
