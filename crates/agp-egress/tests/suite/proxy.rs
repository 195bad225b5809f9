//! The egress proxy over a real Unix socket, against real TCP upstreams.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use agp_egress::{
    Allowlist, EgressAttempt, EgressObserver, EgressProxy, MemoryObserver, ProxyConfig,
    RunningProxy, MAX_HEAD_BYTES,
};

/// An upstream HTTP server answering every request with its own request head (so the test sees
/// what the proxy forwarded), then closing.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&buf).into_owned();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn proxy(
    entries: &[String],
    observer: Arc<dyn EgressObserver>,
) -> (tempfile::TempDir, RunningProxy) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ProxyConfig::new(
        dir.path().join("egress.sock"),
        Allowlist::parse(entries).unwrap(),
    );
    let running = EgressProxy::start(cfg, observer).unwrap();
    (dir, running)
}

fn exchange(p: &RunningProxy, request: &[u8]) -> String {
    let mut s = UnixStream::connect(p.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn allowed_host_passes_and_is_reported() {
    let port = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(obs.clone()));

    let reply = exchange(
        &p,
        format!("GET http://127.0.0.1:{port}/v1/x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("GET /v1/x HTTP/1.1"), "{reply}");

    // CONNECT tunnels raw bytes.
    let mut s = UnixStream::connect(p.socket()).unwrap();
    write!(
        s,
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    let mut established = [0u8; 39];
    s.read_exact(&mut established).unwrap();
    assert_eq!(&established, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    s.write_all(b"GET /tunnel HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("GET /tunnel"), "{out}");

    let attempts = obs.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a.allowed && a.port == Some(port)));
    assert_eq!(attempts[1].method, "CONNECT");
    assert_eq!(attempts[0].peer_pid, Some(std::process::id() as i32));
}

/// An allowed host nobody listens on: the client gets a 502 and the observer hears the failed
/// connection (the journal's `egress.upstream_failed`); a working one is heard as connected.
#[test]
fn upstream_connect_failures_are_reported() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let open = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(
        &[format!("127.0.0.1:{closed}"), format!("127.0.0.1:{open}")],
        Arc::new(obs.clone()),
    );
    let reply = exchange(
        &p,
        format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let reply = exchange(
        &p,
        format!("GET http://127.0.0.1:{open}/ HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let up = obs.upstreams();
    assert_eq!(up.len(), 2, "{up:?}");
    assert_eq!((up[0].host.as_str(), up[0].port), ("127.0.0.1", closed));
    assert!(
        up[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{up:?}"
    );
    assert_eq!(up[0].peer_pid, Some(std::process::id() as i32));
    assert_eq!((up[1].port, up[1].error.as_deref()), (open, None));
}

#[test]
fn other_hosts_are_refused_and_reported() {
    let port = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(obs.clone()));
    let other_port = upstream();

    for req in [
        format!("GET http://127.0.0.1:{other_port}/ HTTP/1.1\r\n\r\n"),
        format!("CONNECT 127.0.0.1:{other_port} HTTP/1.1\r\n\r\n"),
        "CONNECT example.com:443 HTTP/1.1\r\n\r\n".to_string(),
        // Host header cannot smuggle a different destination.
        format!("GET http://evil.test/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    ] {
        let reply = exchange(&p, req.as_bytes());
        assert!(reply.starts_with("HTTP/1.1 403"), "{req}: {reply}");
        assert!(reply.contains("not on the egress allowlist"));
    }
    let attempts = obs.attempts();
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| !a.allowed));
    assert_eq!(attempts[2].host.as_deref(), Some("example.com"));
    assert_eq!(attempts[2].port, Some(443));
}

#[test]
fn malformed_and_non_proxy_requests_are_refused() {
    let port = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(obs.clone()));
    for req in [
        &b"\x00\x01garbage\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        b"GET http://127.1:80/ HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1:0/ HTTP/1.1\r\n\r\n",
    ] {
        let reply = exchange(&p, req);
        assert!(
            reply.starts_with("HTTP/1.1 400"),
            "{:?}: {reply}",
            String::from_utf8_lossy(req)
        );
    }
    // Closed mid-head.
    let reply = {
        let mut s = UnixStream::connect(p.socket()).unwrap();
        s.write_all(b"GET http://127.0.0.1/ HT").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let attempts = obs.attempts();
    assert_eq!(attempts.len(), 7);
    assert!(attempts.iter().all(|a| !a.allowed));
}

#[test]
fn oversize_heads_are_refused() {
    let port = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(obs.clone()));
    let big = "a".repeat(MAX_HEAD_BYTES);
    let req = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nX-Big: {big}\r\n\r\n");
    let reply = exchange(&p, req.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // A head that never ends is cut at the cap too.
    let mut s = UnixStream::connect(p.socket()).unwrap();
    let _ = s.write_all(format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n").as_bytes());
    let _ = s.write_all(&vec![b'x'; MAX_HEAD_BYTES + 10]);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let attempts = obs.attempts();
    assert_eq!(attempts.len(), 2);
    assert!(attempts
        .iter()
        .all(|a| !a.allowed && a.reason.contains("head over")));
}

/// An observer that cannot record anything.
struct Broken;
impl EgressObserver for Broken {
    fn observe(&self, _: &EgressAttempt) -> Result<(), String> {
        Err("journal unavailable".into())
    }
}

#[test]
fn unrecorded_egress_is_refused() {
    let port = upstream();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(Broken));
    let reply = exchange(
        &p,
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n").as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("journal unavailable"));
}

#[test]
fn slow_clients_time_out() {
    let obs = MemoryObserver::default();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ProxyConfig::new(dir.path().join("e.sock"), Allowlist::default());
    cfg.head_timeout = Duration::from_millis(200);
    let p = EgressProxy::start(cfg, Arc::new(obs.clone())).unwrap();
    let mut s = UnixStream::connect(p.socket()).unwrap();
    s.write_all(b"GET http://x").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(obs.attempts().len(), 1);
}

#[test]
fn bridge_reaches_the_proxy_over_tcp() {
    let port = upstream();
    let obs = MemoryObserver::default();
    let (_d, p) = proxy(&[format!("127.0.0.1:{port}")], Arc::new(obs.clone()));
    let (addr, _h) = agp_egress::bridge::spawn("127.0.0.1:0".parse().unwrap(), p.socket()).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET http://127.0.0.1:{port}/via-bridge HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("GET /via-bridge"), "{out}");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(obs.attempts().len(), 2);
}

/// Counts what it is asked and allows everything.
#[derive(Default)]
struct CountingJudge(std::sync::Mutex<Vec<agp_egress::RequestView>>);

impl agp_egress::RequestJudge for CountingJudge {
    fn judge(&self, request: agp_egress::RequestView) -> agp_egress::VerdictFuture {
        self.0.lock().unwrap().push(request);
        Box::pin(async { agp_egress::Verdict::Allow("counted".into()) })
    }
}

/// A host nobody listed goes to the judge only once its addresses pass the checks: a metadata
/// address, a loopback name nobody opened, or a name that does not resolve is refused without
/// asking anyone. One that passes is asked about with its method and path.
#[test]
fn unlisted_destinations_reach_the_judge_only_past_the_address_checks() {
    let port = upstream();
    let judge = Arc::new(CountingJudge::default());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ProxyConfig::new(dir.path().join("egress.sock"), Allowlist::default());
    cfg.destination_judge = Some(judge.clone());
    cfg.private_hosts = vec!["localhost".into()];
    let obs = MemoryObserver::default();
    let p = EgressProxy::start(cfg, Arc::new(obs.clone())).unwrap();

    for target in [
        "169.254.169.254:80".to_owned(),
        format!("127.0.0.1:{port}"),
        "no-such-name.invalid:80".to_owned(),
    ] {
        let reply = exchange(
            &p,
            format!("GET http://{target}/latest/meta-data HTTP/1.1\r\n\r\n").as_bytes(),
        );
        assert!(reply.starts_with("HTTP/1.1 403"), "{target}: {reply}");
    }
    assert!(judge.0.lock().unwrap().is_empty());

    let reply = exchange(
        &p,
        format!("POST http://localhost:{port}/up/%6coad?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let asked = judge.0.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (
            asked[0].method.as_str(),
            asked[0].host.as_str(),
            asked[0].path.as_str()
        ),
        ("POST", "localhost", "/up/load"),
        "the path is shown normalized, without its query"
    );
    assert_eq!(asked[0].rule, agp_egress::UNLISTED_RULE);
    let allowed = obs
        .attempts()
        .into_iter()
        .filter(|a| a.allowed)
        .collect::<Vec<_>>();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].reason, "approved: counted");
}
