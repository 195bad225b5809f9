//! The measurement behind `agp bench egress`: latency a request gains by going through the
//! proxy, against a real HTTPS upstream on loopback, for CONNECT pass-through and for terminated
//! TLS (inspected host, warm certificate cache, a rule and a header injection on the way).
//!
//! All three clients keep one connection open and take turns request by request, so the
//! machine's load falls on all three alike.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::guard::Resolve;
use crate::observer::{EgressAttempt, EgressObserver, RequestReport};
use crate::rules::{CredentialProvider, Effect, Injection, InspectHost, Rule};
use crate::{
    Allowlist, BurstSummary, EgressProxy, InspectConfig, ProxyConfig, RunningProxy, SessionCa,
};

const NAME: &str = "bench.agp.test";
const BODY: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench set-up failed: {0}")]
    Setup(String),
    #[error("bench I/O failed: {0}")]
    Io(#[from] io::Error),
}

fn setup<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Setup(e.to_string())
}

/// Per-request latencies of each path, sorted, and fresh-connection set-up times.
#[derive(Debug, Clone)]
pub struct Samples {
    pub direct: Vec<Duration>,
    pub pass_through: Vec<Duration>,
    pub terminated: Vec<Duration>,
    /// New connection to a first response, direct.
    pub direct_connect: Vec<Duration>,
    /// New CONNECT tunnel and TLS handshake with a cached leaf, to a first response.
    pub terminated_connect: Vec<Duration>,
}

/// Runs `warmup` untimed then `requests` timed requests on each path, and `connections` fresh
/// connections for the set-up figures.
pub fn measure(requests: usize, warmup: usize, connections: usize) -> Result<Samples, BenchError> {
    let dir = tempdir()?;
    let result = run(&dir, requests, warmup, connections);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir() -> io::Result<std::path::PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("agp-bench-egress-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

fn run(
    dir: &std::path::Path,
    requests: usize,
    warmup: usize,
    connections: usize,
) -> Result<Samples, BenchError> {
    let (port, upstream_ca) = upstream()?;
    let ca = Arc::new(SessionCa::create_with_system_bundle(dir, None).map_err(setup)?);
    let mut host = InspectHost::new(NAME, port);
    host.allow_private = true;
    host.rules = vec![Rule {
        methods: vec!["GET".into()],
        paths: vec!["/bench".into()],
        effect: Effect::Allow,
    }];
    host.inject = vec![Injection {
        header: "Authorization".into(),
        credential: "BENCH_TOKEN".into(),
        provider: Arc::new(Constant),
    }];
    let mut inspect = InspectConfig::new(ca.clone(), vec![host]).map_err(setup)?;
    inspect.upstream_tls =
        crate::tls::upstream_client_config(std::slice::from_ref(&upstream_ca)).map_err(setup)?;
    let mut cfg = ProxyConfig::new(
        dir.join("egress.sock"),
        Allowlist::parse(&[format!("127.0.0.1:{port}")]).map_err(setup)?,
    );
    cfg.resolver = Arc::new(Loopback);
    cfg.inspect = Some(Arc::new(inspect));
    let observer = Arc::new(BurstSummary::new(
        Arc::new(Discard),
        Duration::from_secs(10),
    ));
    let proxy = EgressProxy::start(cfg, observer).map_err(setup)?;

    let upstream_roots = [upstream_ca];
    let session_roots = [ca.ca_der().clone()];
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let open_direct = || -> Result<Client<TcpStream>, BenchError> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        Client::new(tcp, &upstream_roots, port)
    };
    let open_pass = || -> Result<Client<UnixStream>, BenchError> {
        Client::new(
            tunnel(&proxy, &format!("127.0.0.1:{port}"))?,
            &upstream_roots,
            port,
        )
    };
    let open_term = || -> Result<Client<UnixStream>, BenchError> {
        Client::new(
            tunnel(&proxy, &format!("{NAME}:{port}"))?,
            &session_roots,
            port,
        )
    };
    let mut direct = open_direct()?;
    let mut pass = open_pass()?;
    let mut term = open_term()?;
    for _ in 0..warmup {
        direct.request()?;
        pass.request()?;
        term.request()?;
    }
    let mut s = Samples {
        direct: Vec::with_capacity(requests),
        pass_through: Vec::with_capacity(requests),
        terminated: Vec::with_capacity(requests),
        direct_connect: Vec::with_capacity(connections),
        terminated_connect: Vec::with_capacity(connections),
    };
    for _ in 0..requests {
        s.direct.push(direct.request()?);
        s.pass_through.push(pass.request()?);
        s.terminated.push(term.request()?);
    }
    for _ in 0..connections {
        let t = Instant::now();
        open_direct()?.request()?;
        s.direct_connect.push(t.elapsed());
        let t = Instant::now();
        open_term()?.request()?;
        s.terminated_connect.push(t.elapsed());
    }
    for v in [
        &mut s.direct,
        &mut s.pass_through,
        &mut s.terminated,
        &mut s.direct_connect,
        &mut s.terminated_connect,
    ] {
        v.sort();
    }
    drop(proxy);
    Ok(s)
}

struct Constant;
impl CredentialProvider for Constant {
    fn value(&self) -> Result<String, String> {
        Ok("Bearer bench-credential".into())
    }
}

struct Loopback;
impl Resolve for Loopback {
    fn resolve(&self, _: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }
}

/// Records nothing: the bench measures the proxy, not the journal.
struct Discard;
impl EgressObserver for Discard {
    fn observe(&self, _: &EgressAttempt) -> Result<(), String> {
        Ok(())
    }
    fn request(&self, _: &RequestReport) -> Result<(), String> {
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    crate::tls::provider()
}

/// An HTTPS upstream on loopback answering every request with a fixed body, keep-alive.
fn upstream() -> Result<(u16, CertificateDer<'static>), BenchError> {
    let ca_key = KeyPair::generate().map_err(setup)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(setup)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "agp bench upstream CA");
    let ca = p.self_signed(&ca_key).map_err(setup)?;
    let key = KeyPair::generate().map_err(setup)?;
    let leaf = CertificateParams::new(vec![NAME.to_owned(), "127.0.0.1".to_owned()])
        .map_err(setup)?
        .signed_by(&key, &ca, &ca_key)
        .map_err(setup)?;
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(setup)?,
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name("agp-bench-upstream".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_nodelay(true);
                let config = config.clone();
                std::thread::spawn(move || {
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let _ = serve(rustls::StreamOwned::new(tls, tcp));
                });
            }
        })?;
    Ok((port, ca.der().clone()))
}

fn serve<S: Read + Write>(stream: S) -> io::Result<()> {
    let mut r = BufReader::new(stream);
    let body = vec![b'b'; BODY];
    loop {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
        out.extend_from_slice(&body);
        r.get_mut().write_all(&out)?;
        r.get_mut().flush()?;
    }
}

fn tunnel(proxy: &RunningProxy, authority: &str) -> Result<UnixStream, BenchError> {
    let mut s = UnixStream::connect(proxy.socket())?;
    write!(
        s,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            break;
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(BenchError::Setup(format!(
            "the proxy refused CONNECT {authority}: {}",
            String::from_utf8_lossy(&head).trim()
        )));
    }
    Ok(s)
}

struct Client<S: Read + Write> {
    io: BufReader<rustls::StreamOwned<rustls::ClientConnection, S>>,
    request: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    fn new(io: S, roots: &[CertificateDer<'static>], port: u16) -> Result<Self, BenchError> {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).map_err(setup)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_root_certificates(store)
            .with_no_client_auth();
        let name = ServerName::try_from(NAME.to_owned()).map_err(setup)?;
        let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(setup)?;
        Ok(Self {
            io: BufReader::new(rustls::StreamOwned::new(conn, io)),
            request: format!("GET /bench HTTP/1.1\r\nHost: {NAME}:{port}\r\n\r\n").into_bytes(),
        })
    }

    /// One request to its whole response.
    fn request(&mut self) -> Result<Duration, BenchError> {
        let t = Instant::now();
        self.io.get_mut().write_all(&self.request)?;
        self.io.get_mut().flush()?;
        let mut len = None;
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line)? == 0 {
                return Err(BenchError::Setup("connection closed mid-response".into()));
            }
            if line == "\r\n" {
                break;
            }
            if line.starts_with("HTTP/1.1 ") && !line.starts_with("HTTP/1.1 200") {
                return Err(BenchError::Setup(format!(
                    "unexpected answer: {}",
                    line.trim()
                )));
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; len.unwrap_or(0)];
        self.io.read_exact(&mut body)?;
        Ok(t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_answers() {
        let s = measure(5, 1, 2).unwrap();
        assert_eq!(s.direct.len(), 5);
        assert_eq!(s.terminated.len(), 5);
        assert_eq!(s.terminated_connect.len(), 2);
    }
}
