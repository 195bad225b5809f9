//! A real local HTTPS upstream with its own test CA, a proxy that inspects it, and clients.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agp_egress::{
    upstream_client_config, Allowlist, CredentialProvider, EgressObserver, EgressProxy,
    InspectConfig, InspectHost, ProxyConfig, RequestJudge, Resolve, RunningProxy, SessionCa,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

pub const NAME: &str = "api.agp.test";

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTPS upstream whose certificate (for `NAME` and 127.0.0.1) a test CA issued. Every
/// response's body is the request head it received plus the body length, so tests see exactly
/// what the proxy forwarded.
pub struct Upstream {
    pub port: u16,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    /// TLS connections accepted.
    pub connections: Arc<AtomicUsize>,
}

/// `close_each`: answer with `Connection: close` and close after every response.
pub fn upstream(close_each: bool) -> Upstream {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A subject of its own: a leaf whose issuer equals its subject looks self-signed to OpenSSL.
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "agp test upstream CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![NAME.to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            std::thread::spawn(move || {
                let tls = rustls::ServerConnection::new(config).unwrap();
                let stream = rustls::StreamOwned::new(tls, tcp);
                let _ = serve(stream, close_each);
            });
        }
    });
    Upstream {
        port,
        ca_der: ca.der().clone(),
        ca_pem: ca.pem(),
        connections,
    }
}

fn serve<S: Read + Write>(stream: S, close_each: bool) -> io::Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let lower = head.to_ascii_lowercase();
        let mut body = Vec::new();
        if let Some(cl) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
        {
            let n: usize = cl.trim().parse().unwrap();
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let text = format!("{head}body-bytes: {}\n", body.len());
        let conn = if close_each { "close" } else { "keep-alive" };
        write!(
            r.get_mut(),
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n{text}",
            text.len()
        )?;
        r.get_mut().flush()?;
        if close_each {
            return Ok(());
        }
    }
}

/// Answers names from a table (the connection that follows is the real one), counting calls.
#[derive(Default)]
pub struct TableResolver {
    pub names: Mutex<HashMap<String, Vec<IpAddr>>>,
    pub calls: AtomicUsize,
    /// After the first call, answer this instead (DNS rebinding).
    pub rebind_to: Option<IpAddr>,
}

impl TableResolver {
    pub fn with(names: &[(&str, &str)]) -> Self {
        let r = Self::default();
        for (n, ip) in names {
            r.names
                .lock()
                .unwrap()
                .entry((*n).to_owned())
                .or_default()
                .push(ip.parse().unwrap());
        }
        r
    }
}

impl Resolve for TableResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if let (Some(ip), true) = (self.rebind_to, call > 0) {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let names = self.names.lock().unwrap();
        let ips = names
            .get(host)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))?;
        Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
    }
}

/// A fixed credential.
pub struct Fixed(pub &'static str);
impl CredentialProvider for Fixed {
    fn value(&self) -> Result<String, String> {
        Ok(self.0.to_owned())
    }
}

pub struct Proxy {
    pub dir: tempfile::TempDir,
    pub running: RunningProxy,
    pub ca: Arc<SessionCa>,
    /// The TCP address of a bridge to the proxy's socket (for curl and Python).
    pub tcp: SocketAddr,
}

impl Proxy {
    /// The variables a sandbox would set (paths as seen on the host here).
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        SessionCa::sandbox_env(self.ca.ca_pem_path(), self.ca.bundle_pem_path())
    }
}

pub struct Setup {
    pub allow: Vec<String>,
    pub hosts: Vec<InspectHost>,
    pub resolver: Arc<dyn Resolve>,
    pub judge: Option<Arc<dyn RequestJudge>>,
    pub extra_roots: Vec<CertificateDer<'static>>,
}

pub fn start(setup: Setup, observer: Arc<dyn EgressObserver>) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    let ca = Arc::new(SessionCa::create(&ca_dir).unwrap());
    let mut inspect = InspectConfig::new(ca.clone(), setup.hosts).unwrap();
    inspect.upstream_tls = upstream_client_config(&setup.extra_roots).unwrap();
    if let Some(j) = setup.judge {
        inspect.judge = j;
    }
    let mut cfg = ProxyConfig::new(
        dir.path().join("egress.sock"),
        Allowlist::parse(&setup.allow).unwrap(),
    );
    cfg.resolver = setup.resolver;
    cfg.inspect = Some(Arc::new(inspect));
    let running = EgressProxy::start(cfg, observer).unwrap();
    let (tcp, _h) =
        agp_egress::bridge::spawn("127.0.0.1:0".parse().unwrap(), running.socket()).unwrap();
    Proxy {
        dir,
        running,
        ca,
        tcp,
    }
}

/// Opens a CONNECT tunnel and returns the stream after the proxy's answer head (and the head).
pub fn connect(p: &Proxy, authority: &str) -> (UnixStream, String) {
    let mut s = UnixStream::connect(p.running.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// TLS through a tunnel, trusting `roots`, naming `sni`.
pub fn tls(
    s: UnixStream,
    sni: &str,
    roots: &[CertificateDer<'static>],
) -> rustls::StreamOwned<rustls::ClientConnection, UnixStream> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(sni.to_owned()).unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, s)
}

/// Reads one response with a Content-Length body off a stream.
pub fn read_response<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(head);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let n = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; n];
    r.read_exact(&mut body)?;
    Ok(head + &String::from_utf8_lossy(&body))
}
