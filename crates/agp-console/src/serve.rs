//! Binding and serving: loopback only, unless the address is another one *and* TLS is
//! configured; one HTTP/1 connection per task, TLS (rustls, as agp-egress uses) when asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::data::{Approvals, ConsoleData};
use crate::security::{random_token, Guard};
use crate::{live, router, AppState, Settings};

/// Longest a client may take for its TLS handshake, and for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (each live page holds one for its event stream); more wait.
const MAX_CONNECTIONS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "refusing to serve the console on {0} without TLS: listen on 127.0.0.1 (the default), or \
         pass --tls-cert FILE --tls-key FILE"
    )]
    NeedsTls(SocketAddr),
    #[error(
        "--allow-host names other hosts for a console on a non-loopback address with TLS only"
    )]
    AllowHostNeedsTls,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the TLS {what} {path}: {reason}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no randomness for the access token: {0}")]
    Random(String),
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// More Host names to answer to (the certificate's name), TLS only.
    pub allow_hosts: Vec<String>,
    pub settings: Settings,
}

/// A bound console, not yet serving.
pub struct Console {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AppState,
    publisher: live::Publisher,
    url: String,
}

/// Refuses a non-loopback address without TLS (an unspecified one, 0.0.0.0, is not loopback).
pub fn check_listen(opts: &ConsoleOptions) -> Result<(), ConsoleError> {
    if opts.tls.is_none() {
        if !opts.listen.ip().is_loopback() {
            return Err(ConsoleError::NeedsTls(opts.listen));
        }
        if !opts.allow_hosts.is_empty() {
            return Err(ConsoleError::AllowHostNeedsTls);
        }
    }
    Ok(())
}

/// The Host values the console answers to on `addr`.
pub fn hosts_for(addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{port}"));
    }
    hosts.extend(extra.iter().map(|h| format!("{h}:{port}")));
    hosts
}

/// The state and router for a console on `addr` (no socket): what [`Console::bind`] serves,
/// and what handler tests drive directly. Returns the publisher that feeds live updates.
pub fn app(
    addr: SocketAddr,
    tls: bool,
    allow_hosts: &[String],
    settings: Settings,
    data: Arc<dyn ConsoleData>,
    approvals: Option<Arc<dyn Approvals>>,
) -> Result<(AppState, live::Publisher), ConsoleError> {
    let token = random_token().map_err(|e| ConsoleError::Random(e.to_string()))?;
    let guard = Guard::new(token, hosts_for(addr, allow_hosts), addr.port(), tls);
    let (publisher, live) = live::channel();
    let state = AppState {
        guard: Arc::new(guard),
        data,
        approvals,
        settings: Arc::new(settings),
        live,
        verifying: Arc::new(tokio::sync::Mutex::new(())),
    };
    Ok((state, publisher))
}

impl Console {
    pub async fn bind(
        opts: ConsoleOptions,
        data: Arc<dyn ConsoleData>,
        approvals: Option<Arc<dyn Approvals>>,
    ) -> Result<Console, ConsoleError> {
        check_listen(&opts)?;
        let tls = opts.tls.as_ref().map(load_tls).transpose()?;
        let listener =
            TcpListener::bind(opts.listen)
                .await
                .map_err(|source| ConsoleError::Bind {
                    addr: opts.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ConsoleError::Bind {
            addr: opts.listen,
            source,
        })?;
        let (state, publisher) = app(
            addr,
            tls.is_some(),
            &opts.allow_hosts,
            opts.settings,
            data,
            approvals,
        )?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}/?token={}", state.guard.token());
        Ok(Console {
            listener,
            tls,
            state,
            publisher,
            url,
        })
    }

    /// The address to open, with the access token: print it to the one who started the console.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let Console {
            listener,
            tls,
            state,
            publisher,
            ..
        } = self;
        let watcher = publisher.spawn(state.data.clone(), &state.settings.journal_dir);
        let app = router(state);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("console: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (app, tls) = (app.clone(), tls.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let service = TowerToHyperService::new(app);
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT);
                let served = match tls {
                    None => http.serve_connection(TokioIo::new(stream), service).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(s)) => http.serve_connection(TokioIo::new(s), service).await,
                            Ok(Err(e)) => return tracing::debug!("console: TLS handshake: {e}"),
                            Err(_) => return tracing::debug!("console: TLS handshake timed out"),
                        }
                    }
                };
                if let Err(e) = served {
                    tracing::debug!("console: connection: {e}");
                }
            });
        }
        watcher.abort();
    }
}

fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, ConsoleError> {
    let err = |what, path: &PathBuf, reason: String| ConsoleError::Tls {
        what,
        path: path.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| err("certificate", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "certificate",
            &files.cert,
            "no certificate in it".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err("key", &files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| err("certificate and key", &files.cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_answers_to_its_address_and_on_loopback_to_localhost() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(hosts_for(v4, &[]), ["127.0.0.1:8080", "localhost:8080"]);
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(hosts_for(v6, &[]), ["[::1]:8080", "localhost:8080"]);
        let public: SocketAddr = "192.0.2.7:8443".parse().unwrap();
        assert_eq!(
            hosts_for(public, &["console.example".into()]),
            ["192.0.2.7:8443", "console.example:8443"]
        );
    }
}
