//! Egress destinations decided by a human: the real egress proxy, its judge asking this daemon,
//! curl through the proxy (over the same TCP bridge a sandbox uses), a real upstream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use agp_egress::{Allowlist, EgressProxy, MemoryObserver, ProxyConfig, Resolve, RunningProxy};

use super::*;
use crate::EgressJudge;

/// Every test name resolves to loopback, where the upstream listens.
struct Loopback;

impl Resolve for Loopback {
    fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }
}

/// An HTTP upstream answering each request with its request line; counts requests.
fn upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
                line.len()
            );
        }
    });
    (port, hits)
}

struct Egress {
    fx: Fixture,
    session: String,
    _dir: tempfile::TempDir,
    _proxy: RunningProxy,
    bridge: SocketAddr,
    port: u16,
    hits: Arc<AtomicUsize>,
    observer: MemoryObserver,
}

impl Egress {
    fn new(approval_timeout: Duration) -> Self {
        let fx = Fixture::new(approval_timeout);
        let params = SessionParams {
            intendant: "test".into(),
            repo: fx.repo.clone(),
            task: String::new(),
            mode: SessionMode::Gate,
        };
        let session = fx.rt.block_on(fx.daemon.open_session(params)).unwrap();
        let (port, hits) = upstream();
        let dir = tempfile::tempdir().unwrap();
        // Nothing is listed: every destination is new.
        let mut config = ProxyConfig::new(dir.path().join("egress.sock"), Allowlist::default());
        config.resolver = Arc::new(Loopback);
        // The upstream is on loopback; these names may reach it once approved.
        config.private_hosts = vec!["new.agp.test".into(), "other.agp.test".into()];
        config.destination_judge = Some(Arc::new(EgressJudge::new(
            fx.daemon.clone(),
            session.id.clone(),
            fx.rt.handle().clone(),
        )));
        config.judge_timeout = approval_timeout + Duration::from_secs(5);
        let observer = MemoryObserver::default();
        let proxy = EgressProxy::start(config, Arc::new(observer.clone())).unwrap();
        let (bridge, _) =
            agp_egress::bridge::spawn("127.0.0.1:0".parse().unwrap(), proxy.socket()).unwrap();
        Self {
            fx,
            session: session.token,
            _dir: dir,
            _proxy: proxy,
            bridge,
            port,
            hits,
            observer,
        }
    }

    /// curl through the proxy: (exit code, output).
    fn curl(&self, url: &str) -> (i32, String) {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "60", "--proxy"])
            .arg(format!("http://{}", self.bridge))
            .arg(url)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

#[test]
fn a_new_host_approved_goes_out_and_the_approval_is_bound_and_journaled() {
    let e = Egress::new(Duration::from_secs(60));
    // The agent's last call is shown with the request.
    let reply = connect(&e.fx.config.socket_path(), &e.session)
        .request(&bash("c1", "curl http://new.agp.test/v1/x"))
        .unwrap();
    assert_eq!(reply.decision, Decision::Allow);
    e.fx.channel.grant_by(&["alice"]);

    let (code, out) = e.curl(&e.url("new.agp.test", "/v1/x?q=1"));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("GET /v1/x?q=1 HTTP/1.1"), "{out}");
    assert_eq!(e.hits.load(Ordering::SeqCst), 1);

    let asked = e.fx.journal.of("approval.requested");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["tool"], crate::EGRESS_TOOL);
    assert_eq!(asked[0]["rule_id"], "agp.egress.destination");
    assert!(
        asked[0]["reason"]
            .as_str()
            .unwrap()
            .contains("new.agp.test"),
        "{asked:?}"
    );
    let call_id = asked[0]["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("egress-"), "{call_id}");
    let granted = e.fx.journal.of("approval.granted");
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0]["call_id"], call_id);
    assert_eq!(granted[0]["input_sha256"], asked[0]["input_sha256"]);
    assert_eq!(granted[0]["by"][0]["id"], "alice");

    let attempt = e
        .observer
        .attempts()
        .into_iter()
        .find(|a| a.host.as_deref() == Some("new.agp.test"))
        .unwrap();
    assert!(attempt.allowed);
    assert!(attempt.reason.contains("approved by alice"), "{attempt:?}");
}

#[test]
fn the_request_shown_carries_method_host_path_and_the_recent_call() {
    let e = Egress::new(Duration::from_secs(60));
    // The QueueChannel keeps no requests; the pending row holds exactly what the channel got.
    connect(&e.fx.config.socket_path(), &e.session)
        .request(&bash("c1", "curl -X POST http://new.agp.test/upload"))
        .unwrap();
    e.fx.channel.grant_by(&["alice"]);
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "--data", "x", "--proxy"])
        .arg(format!("http://{}", e.bridge))
        .arg(e.url("new.agp.test", "/upload/./a"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = e.fx.channel.requests.lock().unwrap()[0].clone();
    let egress = &shown.redacted_input["egress"];
    assert_eq!(egress["method"], "POST");
    assert_eq!(egress["host"], "new.agp.test");
    assert_eq!(egress["port"], e.port);
    assert_eq!(egress["path"], "/upload/a");
    let recent = &shown.redacted_input["agent_recent_call"];
    assert_eq!(recent["call_id"], "c1");
    assert_eq!(recent["tool"], "Bash");
    assert_eq!(
        recent["input"]["command"],
        "curl -X POST http://new.agp.test/upload"
    );
    assert!(shown.remember_secs.is_some());
}

#[test]
fn a_new_host_denied_is_refused_and_never_reached() {
    let e = Egress::new(Duration::from_secs(60));
    e.fx.channel.answer(ApprovalOutcome::Denied {
        by: human("bob"),
        reason: Some("not that host".into()),
    });
    let (_, out) = e.curl(&e.url("new.agp.test", "/"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("not that host"), "{out}");
    assert_eq!(e.hits.load(Ordering::SeqCst), 0);
    assert_eq!(e.fx.journal.of("approval.denied").len(), 1);
    let refused = e
        .observer
        .attempts()
        .into_iter()
        .find(|a| a.host.as_deref() == Some("new.agp.test"))
        .unwrap();
    assert!(!refused.allowed);
}

#[test]
fn allow_this_host_for_the_session_covers_that_host_only() {
    let e = Egress::new(Duration::from_secs(60));
    e.fx.channel.grant_for_session_by(&["alice"]);
    let (_, out) = e.curl(&e.url("new.agp.test", "/a"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(e.fx.journal.of("approval.remembered").len(), 1);

    // Another path and method on the same host: not asked again, journaled as remembered.
    let (_, out) = e.curl(&e.url("new.agp.test", "/b"));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(e.fx.channel.asked.load(Ordering::SeqCst), 1);
    let granted = e.fx.journal.of("approval.granted");
    assert_eq!(granted.len(), 2);
    assert_eq!(granted[1]["remembered"], true);

    // Another host is asked about (and refused here).
    e.fx.channel.answer(ApprovalOutcome::Denied {
        by: human("alice"),
        reason: None,
    });
    let (_, out) = e.curl(&e.url("other.agp.test", "/a"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(e.fx.channel.asked.load(Ordering::SeqCst), 2);
    assert_eq!(e.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn no_answer_within_the_approval_timeout_refuses() {
    let e = Egress::new(Duration::from_secs(1));
    let (_, out) = e.curl(&e.url("new.agp.test", "/"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("timed out"), "{out}");
    assert_eq!(e.fx.journal.of("approval.timeout").len(), 1);
    assert_eq!(e.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_harness_cannot_pose_an_egress_approval() {
    let e = Egress::new(Duration::from_secs(60));
    let got = connect(&e.fx.config.socket_path(), &e.session).request(&call(
        "c1",
        crate::EGRESS_TOOL,
        json!({"egress": {"host": "evil.example"}}),
    ));
    assert!(got.is_err(), "{got:?}");
    assert!(e.fx.journal.of("approval.requested").is_empty());
}

/// Identical requests waiting together share one question (and its outcome); different ones
/// past the bound are refused without asking anyone.
#[test]
fn parallel_requests_share_a_question_and_a_flood_is_bounded() {
    let max = crate::egress_judge::MAX_PENDING;
    // Nobody answers: every question waits until the approval timeout.
    let e = Egress::new(Duration::from_secs(10));
    let paths: Vec<String> = std::iter::repeat_n("/same".to_owned(), 4)
        .chain((1..max).map(|n| format!("/other{n}")))
        .collect();
    let waiting: Vec<_> = paths
        .iter()
        .map(|path| {
            let url = e.url("new.agp.test", path);
            let bridge = e.bridge;
            let path = path.clone();
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .args(["-sS", "-i", "--max-time", "60", "--proxy"])
                    .arg(format!("http://{bridge}"))
                    .arg(url)
                    .output()
                    .unwrap();
                (path, String::from_utf8_lossy(&out.stdout).into_owned())
            })
        })
        .collect();
    eventually(
        || format!("{max} questions were not asked"),
        || e.fx.channel.asked.load(Ordering::SeqCst) == max,
    );
    let (_, out) = e.curl(&e.url("new.agp.test", "/one-too-many"));
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("already waiting"), "{out}");

    for t in waiting {
        let (path, out) = t.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 403"), "{path}: {out}");
        assert!(out.contains("timed out"), "{path}: {out}");
    }
    // Four requests for /same, one question; nothing more was asked.
    assert_eq!(e.fx.channel.asked.load(Ordering::SeqCst), max);
    assert_eq!(e.fx.journal.of("approval.requested").len(), max);
    assert_eq!(e.fx.journal.of("approval.timeout").len(), max);
    assert_eq!(e.hits.load(Ordering::SeqCst), 0);
}
