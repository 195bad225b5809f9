//! Inspected hosts end to end: real curl and Python through the proxy (trusting the session CA
//! through the sandbox variables), a real HTTPS upstream with its own test CA, real sockets.

use std::io::{BufReader, Read, Write};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use agp_egress::{
    Effect, InspectHost, MemoryObserver, RequestJudge, RequestReport, RequestView, Rule, Verdict,
    VerdictFuture,
};

use super::tls_fixture::{self as fx, Fixed, Proxy, Setup, TableResolver, NAME};

fn rule(effect: Effect, methods: &[&str], paths: &[&str]) -> Rule {
    Rule {
        methods: methods.iter().map(ToString::to_string).collect(),
        paths: paths.iter().map(ToString::to_string).collect(),
        effect,
    }
}

/// The inspected test host: GET/POST under /v1/ allowed, /admin denied, the rest `require`;
/// `Authorization` injected from the credential GITHUB_TOKEN.
fn api_host(port: u16) -> InspectHost {
    let mut h = InspectHost::new(NAME, port);
    h.rules = vec![
        rule(Effect::Allow, &["GET", "POST"], &["/v1/"]),
        rule(Effect::Deny, &[], &["/admin"]),
    ];
    h.inject = vec![agp_egress::Injection {
        header: "Authorization".into(),
        credential: "GITHUB_TOKEN".into(),
        provider: Arc::new(Fixed("Bearer real-secret-value")),
    }];
    // The test upstream is on loopback: this name is an internal service, said so explicitly.
    h.allow_private = true;
    h
}

fn setup(up: &fx::Upstream, hosts: Vec<InspectHost>) -> Setup {
    Setup {
        allow: Vec::new(),
        hosts,
        resolver: Arc::new(TableResolver::with(&[(NAME, "127.0.0.1")])),
        judge: None,
        extra_roots: vec![up.ca_der.clone()],
    }
}

/// The reports once `n` have arrived: an allowed request is recorded after its response has
/// been relayed, so the client can finish a moment before its record lands.
fn reports(obs: &MemoryObserver, n: usize) -> Vec<RequestReport> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while obs.requests().len() < n && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    obs.requests()
}

fn by_path<'a>(reqs: &'a [RequestReport], path: &str) -> &'a RequestReport {
    reqs.iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("no report for {path}: {reqs:?}"))
}

/// Runs curl through the proxy with only the sandbox's variables; returns (exit, stdout+stderr).
fn curl(p: &Proxy, env: &[(&str, std::path::PathBuf)], args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .args([
            "-sS",
            "-i",
            "--suppress-connect-headers",
            "--max-time",
            "60",
            "--proxy",
        ])
        .arg(format!("http://{}", p.tcp))
        .args(args)
        .output()
        .expect("curl runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn curl_allowed_requests_get_the_credential_and_share_one_connection() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let base = format!("https://{NAME}:{}", up.port);
    let body_file = p.dir.path().join("body");
    std::fs::write(&body_file, vec![b'x'; 70_000]).unwrap();

    let (code, out) = curl(
        &p,
        &p.env(),
        &[
            "-H",
            "Authorization: Bearer placeholder-from-the-agent",
            &format!("{base}/v1/models?access_token=abc"),
            &format!("{base}/v1/other"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert_eq!(
        out.matches("Authorization: Bearer real-secret-value")
            .count(),
        2,
        "{out}"
    );
    assert!(!out.contains("placeholder-from-the-agent"), "{out}");
    assert!(
        out.contains("GET /v1/models?access_token=abc HTTP/1.1"),
        "{out}"
    );
    // Keep-alive: both requests went over one upstream connection.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);

    // A chunked upload is streamed through.
    let (code, out) = curl(
        &p,
        &p.env(),
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", body_file.display()),
            &format!("{base}/v1/upload"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("body-bytes: 70000"), "{out}");

    let reqs = reports(&obs, 3);
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let models = by_path(&reqs, "/v1/models");
    assert_eq!(models.status, Some(200));
    assert_eq!(models.credentials, vec!["GITHUB_TOKEN".to_owned()]);
    assert!(models.rule.starts_with("rule 1"), "{}", models.rule);
    assert!(models.bytes_up > 0 && models.bytes_down > 0);
    assert!(by_path(&reqs, "/v1/upload").bytes_up > 70_000);
    let journaled = serde_json::to_string(&reqs).unwrap();
    assert!(!journaled.contains("real-secret-value"));
    assert!(!journaled.contains("access_token"));
}

#[test]
fn curl_refused_paths_get_a_clear_403() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let base = format!("https://{NAME}:{}", up.port);

    let (_, out) = curl(&p, &p.env(), &[&format!("{base}/admin/users")]);
    assert!(out.starts_with("HTTP/1.1 403 Forbidden"), "{out}");
    assert!(
        out.contains("agp egress: GET /admin/users is denied by rule 2 (deny * /admin)"),
        "{out}"
    );
    // Encoded letters are the same path; dot segments are refused outright.
    let (_, out) = curl(&p, &p.env(), &[&format!("{base}/%61dmin/users")]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let (_, out) = curl(
        &p,
        &p.env(),
        &["--path-as-is", &format!("{base}/v1/../admin")],
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("dot segment"), "{out}");
    // No rule and no approver: `require` is refused.
    let (_, out) = curl(&p, &p.env(), &[&format!("{base}/v2/thing")]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("needs approval and no approver is connected"),
        "{out}"
    );

    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
    let reqs = obs.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|r| !r.allowed && r.credentials.is_empty()));
}

#[test]
fn python_posts_through_the_proxy_and_sees_refusals() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let script = r#"
import sys, urllib.request, urllib.error
base = sys.argv[1]
r = urllib.request.urlopen(urllib.request.Request(base + "/v1/upload", data=b"y" * 100000, method="POST"))
print("status", r.status)
print(r.read().decode())
try:
    urllib.request.urlopen(base + "/admin")
except urllib.error.HTTPError as e:
    print("refused", e.code, e.read().decode())
"#;
    let out = Command::new("python3")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(p.env().iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("https_proxy", format!("http://{}", p.tcp))
        .args(["-c", script, &format!("https://{NAME}:{}", up.port)])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("status 200"), "{text}");
    assert!(text.contains("body-bytes: 100000"), "{text}");
    assert!(
        text.contains("Authorization: Bearer real-secret-value"),
        "{text}"
    );
    assert!(
        text.contains("refused 403 agp egress: GET /admin is denied"),
        "{text}"
    );
    let reqs = reports(&obs, 2);
    let upload = by_path(&reqs, "/v1/upload");
    assert_eq!((upload.method.as_str(), upload.allowed), ("POST", true));
    assert!(upload.bytes_up > 100_000);
    assert!(!by_path(&reqs, "/admin").allowed);
}

/// Answers from another thread, as a human through a channel would.
#[derive(Default)]
struct AskJudge {
    asked: Mutex<Vec<RequestView>>,
}

impl RequestJudge for AskJudge {
    fn judge(&self, request: RequestView) -> VerdictFuture {
        let yes = request.path.starts_with("/ask/yes");
        self.asked.lock().unwrap().push(request);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(if yes {
                Verdict::Allow("the tester said yes".into())
            } else {
                Verdict::Deny("the tester said no".into())
            });
        });
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Verdict::Deny("no answer".into()))
        })
    }
}

#[test]
fn require_is_answered_by_the_judge() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let judge = Arc::new(AskJudge::default());
    let mut s = setup(&up, vec![api_host(up.port)]);
    s.judge = Some(judge.clone());
    let p = fx::start(s, Arc::new(obs.clone()));
    let base = format!("https://{NAME}:{}", up.port);

    let (code, out) = curl(&p, &p.env(), &[&format!("{base}/ask/yes?q=1")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (_, out) = curl(&p, &p.env(), &[&format!("{base}/ask/no")]);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("refused: the tester said no"), "{out}");

    let asked = judge.asked.lock().unwrap();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].path, "/ask/yes");
    assert_eq!(asked[0].rule, "no rule matched (default: require)");
    let reqs = reports(&obs, 2);
    let yes = by_path(&reqs, "/ask/yes");
    assert!(yes.allowed && yes.reason.contains("the tester said yes"));
    assert!(!by_path(&reqs, "/ask/no").allowed);
}

#[test]
fn domain_fronting_is_refused() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let base = format!("https://{NAME}:{}", up.port);

    // Host header naming another host than the TLS server name.
    let (_, out) = curl(
        &p,
        &p.env(),
        &["-H", "Host: other.agp.test", &format!("{base}/v1/x")],
    );
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");
    assert!(out.contains("domain fronting"), "{out}");
    // An absolute target naming another host.
    let (s, head) = fx::connect(&p, &format!("{NAME}:{}", up.port));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut t = fx::tls(s, NAME, &[p.ca.ca_der().clone()]);
    write!(
        t,
        "GET https://other.agp.test/v1/x HTTP/1.1\r\nHost: {NAME}:{}\r\n\r\n",
        up.port
    )
    .unwrap();
    let out = fx::read_response(&mut BufReader::new(&mut t)).unwrap();
    assert!(out.starts_with("HTTP/1.1 421"), "{out}");

    // A TLS server name other than the CONNECT host: no handshake.
    let (s, _) = fx::connect(&p, &format!("{NAME}:{}", up.port));
    let mut t = fx::tls(s, "other.agp.test", &[p.ca.ca_der().clone()]);
    let r = t.write_all(b"GET /v1/x HTTP/1.1\r\nHost: other.agp.test\r\n\r\n");
    let mut buf = Vec::new();
    let read = r.and_then(|()| t.read_to_end(&mut buf));
    assert!(
        read.is_err() || buf.is_empty(),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert!(obs
        .attempts()
        .iter()
        .any(|a| !a.allowed && a.reason.contains("domain fronting")));
    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn pass_through_connect_stays_end_to_end() {
    let inspected = fx::upstream(false);
    let plain = fx::upstream(false);
    let obs = MemoryObserver::default();
    let mut s = setup(&inspected, vec![api_host(inspected.port)]);
    s.allow = vec![format!("127.0.0.1:{}", plain.port)];
    let p = fx::start(s, Arc::new(obs.clone()));
    let test_ca = p.dir.path().join("upstream-ca.pem");
    std::fs::write(&test_ca, &plain.ca_pem).unwrap();
    let url = format!("https://127.0.0.1:{}/through", plain.port);

    // Trusting only the upstream's own CA works: the client sees the upstream's certificate.
    let only_upstream = [("CURL_CA_BUNDLE", test_ca.clone())];
    let (code, out) = curl(&p, &only_upstream, &[&url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GET /through HTTP/1.1"), "{out}");
    assert!(!out.contains("real-secret-value"), "{out}");
    // Trusting only the session bundle fails: nothing was terminated.
    let (code, out) = curl(&p, &p.env(), &[&url]);
    assert_eq!(code, 60, "{out}");
    assert!(obs.requests().is_empty());
}

#[test]
fn dns_answers_are_checked_once_and_never_re_resolved() {
    // The upstream closes after each response, so every request needs a new upstream
    // connection; the resolver turns to the metadata address after its first answer.
    let up = fx::upstream(true);
    let obs = MemoryObserver::default();
    let resolver = Arc::new(TableResolver {
        rebind_to: Some("169.254.169.254".parse().unwrap()),
        ..TableResolver::with(&[(NAME, "127.0.0.1")])
    });
    let mut s = setup(&up, vec![api_host(up.port)]);
    s.resolver = resolver.clone();
    let p = fx::start(s, Arc::new(obs.clone()));
    let base = format!("https://{NAME}:{}", up.port);
    let (code, out) = curl(
        &p,
        &p.env(),
        &[
            &format!("{base}/v1/a"),
            &format!("{base}/v1/b"),
            &format!("{base}/v1/c"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert_eq!(up.connections.load(Ordering::SeqCst), 3);
    // curl reuses its one proxy connection: one CONNECT, one resolution.
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
}

fn exchange(p: &Proxy, request: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(p.running.socket()).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn private_metadata_and_rebinding_destinations_are_refused() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let mut meta_host = InspectHost::new("meta.agp.test", 443);
    meta_host.allow_private = true;
    let mut s = setup(&up, vec![meta_host, InspectHost::new("loop.agp.test", 443)]);
    s.allow = vec![
        "internal.agp.test".into(),
        "metadata.google.internal".into(),
        "169.254.169.254:80".into(),
    ];
    s.resolver = Arc::new(TableResolver::with(&[
        ("internal.agp.test", "93.184.216.34"),
        ("internal.agp.test", "10.0.0.7"),
        ("meta.agp.test", "169.254.169.254"),
        ("loop.agp.test", "127.0.0.1"),
        ("metadata.google.internal", "8.8.8.8"),
    ]));
    let p = fx::start(s, Arc::new(obs.clone()));

    for (req, why) in [
        // One private answer among public ones refuses the name.
        (
            "CONNECT internal.agp.test:443 HTTP/1.1\r\n\r\n",
            "resolves to 10.0.0.7, a private address",
        ),
        ("GET http://internal.agp.test/ HTTP/1.1\r\n\r\n", "10.0.0.7"),
        // Private names open private ranges, never metadata.
        (
            "CONNECT meta.agp.test:443 HTTP/1.1\r\n\r\n",
            "cloud metadata",
        ),
        // An inspected host not marked private may not resolve to loopback.
        (
            "CONNECT loop.agp.test:443 HTTP/1.1\r\n\r\n",
            "a loopback address",
        ),
        (
            "GET http://metadata.google.internal/computeMetadata/v1/ HTTP/1.1\r\n\r\n",
            "metadata service",
        ),
        // A private literal nobody listed.
        (
            "CONNECT 192.168.1.1:443 HTTP/1.1\r\n\r\n",
            "not on the egress allowlist",
        ),
    ] {
        let out = exchange(&p, req);
        assert!(out.starts_with("HTTP/1.1 403"), "{req}: {out}");
        assert!(out.contains(why), "{req}: {out}");
    }
    assert!(obs.attempts().iter().all(|a| !a.allowed));
}

#[test]
fn smuggling_oversized_heads_and_h2_are_handled() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let authority = format!("{NAME}:{}", up.port);
    let open = || {
        let (s, head) = fx::connect(&p, &authority);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        fx::tls(s, NAME, &[p.ca.ca_der().clone()])
    };

    // Both Content-Length and Transfer-Encoding: refused, and the hidden request never runs.
    let mut t = open();
    write!(
        t,
        "POST /v1/a HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 40\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = t.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("request smuggling"), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    // HTTP/2 is not negotiated.
    assert_eq!(t.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut t = open();
    let big = "a".repeat(agp_egress::MAX_HEAD_BYTES);
    write!(
        t,
        "GET /v1/a HTTP/1.1\r\nHost: {authority}\r\nX-Big: {big}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = t.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    // A WebSocket upgrade is refused, not silently downgraded.
    let mut t = open();
    write!(
        t,
        "GET /v1/ws HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    .unwrap();
    let out = fx::read_response(&mut BufReader::new(&mut t)).unwrap();
    assert!(out.starts_with("HTTP/1.1 501"), "{out}");

    // Plain http to an inspected host would skip the rules.
    let out = exchange(
        &p,
        &format!("GET http://{authority}/admin HTTP/1.1\r\n\r\n"),
    );
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(out.contains("is inspected: reach it over https"), "{out}");

    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn an_upstream_the_proxy_cannot_verify_is_not_reached() {
    // The proxy trusts the web PKI roots only here, not the upstream's test CA.
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let mut s = setup(&up, vec![api_host(up.port)]);
    s.extra_roots.clear();
    let p = fx::start(s, Arc::new(obs.clone()));
    let (_, out) = curl(
        &p,
        &p.env(),
        &[&format!("https://{NAME}:{}/v1/models", up.port)],
    );
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("TLS with api.agp.test"), "{out}");
    let reqs = reports(&obs, 1);
    let r = by_path(&reqs, "/v1/models");
    assert!(
        r.upstream_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate")),
        "{r:?}"
    );
    assert_eq!(r.status, None);
    assert!(obs.upstreams().iter().any(|u| u.error.is_some()));
}

#[test]
fn git_trusts_the_session_ca_through_its_variable() {
    let up = fx::upstream(false);
    let obs = MemoryObserver::default();
    let p = fx::start(setup(&up, vec![api_host(up.port)]), Arc::new(obs.clone()));
    let out = Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.dir.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(p.env().iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("https_proxy", format!("http://{}", p.tcp))
        .args([
            "ls-remote",
            &format!("https://{NAME}:{}/v1/repo.git", up.port),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The upstream is not a git server: git fails after reading its answer, not on TLS.
    assert!(!stderr.to_ascii_lowercase().contains("ssl"), "{stderr}");
    let reqs = reports(&obs, 1);
    let r = by_path(&reqs, "/v1/repo.git/info/refs");
    assert_eq!((r.allowed, r.status), (true, Some(200)));
    assert_eq!(r.credentials, vec!["GITHUB_TOKEN".to_owned()]);
}
