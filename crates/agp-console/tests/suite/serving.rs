//! The console on a real socket: where it may listen, the token flow over TCP and over TLS, and
//! live updates (server-sent events) when the journal grows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agp_console::data::*;
use agp_console::serve::check_listen;
use agp_console::{Console, ConsoleError, ConsoleOptions, Settings, TlsFiles};
use agp_contracts::Journal as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::support::{journal, FixedData, Rows};

/// Index figures from the journal file itself: its line count is the entry count.
struct Lines {
    journal: PathBuf,
    rows: FixedData,
}

impl ConsoleData for Lines {
    fn catch_up(&self) -> Result<u64, DataError> {
        let text = std::fs::read_to_string(self.journal.join("entries.jsonl"))
            .map_err(|e| DataError::Failed(e.to_string()))?;
        Ok(text.lines().count() as u64)
    }
    fn stats(&self) -> Result<JournalStats, DataError> {
        self.rows.stats()
    }
    fn sessions(&self, q: &SessionQuery) -> Result<Page<SessionRow>, DataError> {
        self.rows.sessions(q)
    }
    fn session(&self, id: &str) -> Result<Option<SessionRow>, DataError> {
        self.rows.session(id)
    }
    fn timeline(&self, s: &str, q: &TimelineQuery) -> Result<Page<CallRow>, DataError> {
        self.rows.timeline(s, q)
    }
    fn session_events(&self, s: &str) -> Result<Vec<EventRow>, DataError> {
        self.rows.session_events(s)
    }
    fn entry(&self, seq: u64) -> Result<Option<EntryView>, DataError> {
        self.rows.entry(seq)
    }
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        view_only: true,
        journal_dir: dir.join("journal"),
        verifier_key: None,
        policy_path: None,
        eval_context: agp_contracts::EvalContext {
            project_root: "/repo".into(),
            home: "/home/u".into(),
            agp_home: dir.to_path_buf(),
        },
        operator: "alice".into(),
    }
}

fn options(dir: &std::path::Path, listen: &str, tls: Option<TlsFiles>) -> ConsoleOptions {
    ConsoleOptions {
        listen: listen.parse().unwrap(),
        tls,
        allow_hosts: vec![],
        settings: settings(dir),
    }
}

#[test]
fn a_non_loopback_address_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    for addr in [
        "0.0.0.0:8080",
        "192.0.2.1:8080",
        "[::]:8080",
        "[2001:db8::1]:80",
    ] {
        let err = check_listen(&options(dir.path(), addr, None)).unwrap_err();
        assert!(matches!(err, ConsoleError::NeedsTls(_)), "{addr}");
        let line = err.to_string();
        assert!(line.contains("--tls-cert FILE --tls-key FILE"), "{line}");
        assert!(!line.contains('\n'));
    }
    for addr in ["127.0.0.1:0", "127.8.9.1:80", "[::1]:0"] {
        check_listen(&options(dir.path(), addr, None)).unwrap();
    }
    let tls = TlsFiles {
        cert: "c.pem".into(),
        key: "k.pem".into(),
    };
    check_listen(&options(dir.path(), "0.0.0.0:8443", Some(tls))).unwrap();
    let mut named = options(dir.path(), "127.0.0.1:0", None);
    named.allow_hosts = vec!["console.example".into()];
    assert!(matches!(
        check_listen(&named),
        Err(ConsoleError::AllowHostNeedsTls)
    ));
}

/// One HTTP/1.1 exchange; the whole answer as text.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str, host: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n")
}

fn cookie_of(answer: &str) -> String {
    let line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {answer}"));
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_the_url_works_once_traded_and_the_journal_growing_is_pushed_live() {
    let dir = tempfile::tempdir().unwrap();
    let key = agp_journal::SignerKey::generate("agp.local/journal/live").unwrap();
    let writer = agp_journal::JournalWriter::open(
        &dir.path().join("journal"),
        key,
        agp_journal::JournalOptions::with_durability(agp_journal::Durability::Entry),
    )
    .unwrap();
    let data = Arc::new(Lines {
        journal: dir.path().join("journal"),
        rows: FixedData(Rows::default()),
    });
    let console = Console::bind(options(dir.path(), "127.0.0.1:0", None), data, None)
        .await
        .unwrap();
    let url = console.url().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(console.serve(async {
        let _ = stopped.await;
    }));
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let addr: SocketAddr = host.parse().unwrap();
    assert!(addr.ip().is_loopback());
    let connect = || tokio::net::TcpStream::connect(addr);

    let first = exchange(
        connect().await.unwrap(),
        &get(&format!("/{path}"), host, None),
    )
    .await;
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    let cookie = cookie_of(&first);
    let page = exchange(connect().await.unwrap(), &get("/", host, Some(&cookie))).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("data-testid=\"no-sessions\""));
    let evil = exchange(
        connect().await.unwrap(),
        &get("/", "evil.example", Some(&cookie)),
    )
    .await;
    assert!(evil.starts_with("HTTP/1.1 421"), "{evil}");

    // Live: the event stream reports the journal's new size once an entry is appended.
    let mut events = connect().await.unwrap();
    events
        .write_all(get("/events", host, Some(&cookie)).as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut want = None;
    loop {
        if want.is_none() && seen.contains("event: journal\ndata: ") {
            writer
                .append("session.started", Some("s-live"), serde_json::json!({}))
                .unwrap();
            let lines = std::fs::read_to_string(dir.path().join("journal/entries.jsonl"))
                .unwrap()
                .lines()
                .count();
            want = Some(format!("event: journal\ndata: {lines}\n"));
        }
        if want.as_ref().is_some_and(|w| seen.contains(w.as_str())) {
            break;
        }
        let n = events.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    writer.close().unwrap();
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// A self-signed certificate for 127.0.0.1, as PEM files.
fn self_signed(dir: &std::path::Path) -> (TlsFiles, rustls_pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.self_signed(&key).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (files, cert.der().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_console_speaks_https_only_and_its_cookie_is_secure() {
    let dir = tempfile::tempdir().unwrap();
    journal(dir.path());
    let (files, der) = self_signed(dir.path());
    let data = Arc::new(FixedData(Rows::default()));
    let console = Console::bind(options(dir.path(), "127.0.0.1:0", Some(files)), data, None)
        .await
        .unwrap();
    let url = console.url().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(console.serve(async {
        let _ = stopped.await;
    }));
    let rest = url.strip_prefix("https://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let addr: SocketAddr = host.parse().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    let first = exchange(tls, &get(&format!("/{path}"), host, None)).await;
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    let set = first
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(set.contains("; Secure"), "{set}");
    let cookie = cookie_of(&first);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let page = exchange(tls, &get("/", host, Some(&cookie))).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    // Plain HTTP on the TLS port gets no page.
    let plain = exchange(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        &get(&format!("/{path}"), host, None),
    )
    .await;
    assert!(!plain.contains("HTTP/1.1"), "{plain}");
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_bad_certificate_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "not a certificate").unwrap();
    let tls = TlsFiles {
        cert: dir.path().join("c.pem"),
        key: dir.path().join("k.pem"),
    };
    let Err(err) = Console::bind(
        options(dir.path(), "127.0.0.1:0", Some(tls)),
        Arc::new(FixedData(Rows::default())),
        None,
    )
    .await
    else {
        panic!("bound with a bad certificate");
    };
    assert!(matches!(err, ConsoleError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("c.pem"));
}
