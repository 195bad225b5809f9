//! TLS for every PostgreSQL connection agp makes (the daemon's pool and LISTEN connection, the
//! checkpoint ledger, `agp verify --team`, the bench): [`connect_config`] is the one place a
//! `[state] url` becomes a driver configuration and a TLS connector.
//!
//! Policy, fail closed, with libpq's `sslmode` names: `disable` (plain text, only when written),
//! `require` and `verify-full` (chain and host name checked: a `require` a man in the middle
//! could answer is not what anyone writing it expects), `verify-ca` (chain only). Without
//! `sslmode`, a unix-socket host needs no TLS and a network host gets `verify-full`, so plain
//! text never crosses a network by accident. `prefer`/`allow` (which fall back to plain text)
//! and unknown values are refused. Roots: `sslrootcert=FILE` (PEM) in the URL, else the
//! webpki roots.
//!
//! The connector is a small `MakeTlsConnect` over tokio-rustls rather than the
//! `tokio-postgres-rustls` crate: that crate is not in the lockfile (it would add x509-cert and
//! sha2 for channel binding), and the glue is a few dozen lines over crates already built.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{self, ChannelBinding};

use super::super::StoreError;

/// What a `[state] url` asks of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    /// Chain checked against the roots, host name not.
    VerifyCa,
    /// Chain and host name checked (also what `require` means here).
    VerifyFull,
}

/// The URL with agp's TLS parameters taken out (tokio-postgres knows neither `verify-*` nor
/// `sslrootcert`), the mode written (if any) and the root file.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    rest: String,
    mode: Option<Mode>,
    root_file: Option<String>,
}

fn parse_mode(value: &str) -> Result<Mode, StoreError> {
    match value {
        "disable" => Ok(Mode::Disable),
        "require" | "verify-full" => Ok(Mode::VerifyFull),
        "verify-ca" => Ok(Mode::VerifyCa),
        "allow" | "prefer" => Err(StoreError::Invalid(format!(
            "[state] url: sslmode={value} may fall back to plain text; write sslmode=verify-full \
             (or sslmode=disable if plain text is really meant)"
        ))),
        other => Err(StoreError::Invalid(format!(
            "[state] url: unknown sslmode={other:?}; use disable, require, verify-ca or verify-full"
        ))),
    }
}

fn split(url: &str) -> Result<Split, StoreError> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_url {
        // The key=value form: quoting rules make rewriting it error-prone; its TLS parameters
        // are refused rather than half understood.
        if url.contains("sslmode") || url.contains("sslrootcert") {
            return Err(StoreError::Invalid(
                "[state] url: write sslmode/sslrootcert in the postgres://…?sslmode=… form".into(),
            ));
        }
        return Ok(Split {
            rest: url.to_owned(),
            mode: None,
            root_file: None,
        });
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok(Split {
            rest: url.to_owned(),
            mode: None,
            root_file: None,
        });
    };
    let (mut mode, mut root_file, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let new = parse_mode(&decode(value)?)?;
                if mode.is_some_and(|m| m != new) {
                    return Err(StoreError::Invalid(
                        "[state] url: sslmode is given twice with different values; keep one"
                            .into(),
                    ));
                }
                mode = Some(new);
            }
            "sslrootcert" => root_file = Some(decode(value)?),
            // Client certificates are not supported: refused, not ignored.
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(StoreError::Invalid(format!(
                    "[state] url: {key} is not supported; authenticate with a password"
                )))
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split {
        rest,
        mode,
        root_file,
    })
}

fn decode(value: &str) -> Result<String, StoreError> {
    let bad = || StoreError::Invalid(format!("[state] url: bad percent-encoding in {value:?}"));
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The driver configuration and TLS connector for `url`. The caller adds timeouts and names.
pub fn connect_config(url: &str) -> Result<(tokio_postgres::Config, MakeTls), StoreError> {
    let split = split(url)?;
    let mut config = tokio_postgres::Config::from_str(&split.rest)
        .map_err(|e| StoreError::Invalid(format!("[state] url: {e}")))?;
    let network = !config.get_hostaddrs().is_empty()
        || config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
    let mode = split.mode.unwrap_or(if network {
        Mode::VerifyFull
    } else {
        Mode::Disable
    });
    if mode == Mode::Disable {
        if split.root_file.is_some() {
            return Err(StoreError::Invalid(
                "[state] url: sslrootcert with sslmode=disable; drop one of them".into(),
            ));
        }
        config.ssl_mode(SslMode::Disable);
        return Ok((config, MakeTls { client: None }));
    }
    // Require: a server that answers "no TLS" ends the connection, never falls back.
    config.ssl_mode(SslMode::Require);
    let roots = roots(split.root_file.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Invalid(format!("TLS: {e}")))?;
    let client = if mode == Mode::VerifyCa {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| StoreError::Invalid(format!("TLS roots: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
    } else {
        builder.with_root_certificates(roots)
    }
    .with_no_client_auth();
    Ok((
        config,
        MakeTls {
            client: Some(Arc::new(client)),
        },
    ))
}

/// `text` (a failed connection) with the fix when TLS is why: the driver's words name the
/// symptom, not what to change.
pub fn with_fix(text: String) -> String {
    let fix = if text.contains("invalid peer certificate") {
        "check sslrootcert= (the CA that issued the server's certificate) and that the URL's \
         host is a name in that certificate (or use sslmode=verify-ca)"
    } else if text.contains("server does not support TLS") {
        "turn ssl on in the server, or write sslmode=disable if plain text is really meant"
    } else {
        return text;
    };
    format!("{text}; {fix}")
}

fn roots(file: Option<&str>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    let Some(file) = file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let pem = std::fs::read(file)
        .map_err(|e| StoreError::Invalid(format!("[state] url: sslrootcert={file}: {e}")))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            StoreError::Invalid(format!("[state] url: sslrootcert={file}: bad PEM: {e}"))
        })?;
        roots
            .add(cert)
            .map_err(|e| StoreError::Invalid(format!("[state] url: sslrootcert={file}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Invalid(format!(
            "[state] url: sslrootcert={file} holds no PEM certificate"
        )));
    }
    Ok(roots)
}

/// `verify-ca`: the webpki verifier, with only its host-name verdict set aside (it checks the
/// chain first, so a name error means the chain was good).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The connector handed to the driver. `None` under `sslmode=disable`, where the driver never
/// asks for TLS (it still calls `make_tls_connect`, with an empty name for a unix socket).
#[derive(Clone)]
pub struct MakeTls {
    client: Option<Arc<ClientConfig>>,
}

impl<S> tls::MakeTlsConnect<S> for MakeTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        Ok(Connect {
            client: self.client.clone(),
            name: ServerName::try_from(domain).ok().map(|n| n.to_owned()),
        })
    }
}

pub struct Connect {
    client: Option<Arc<ClientConfig>>,
    /// `None` when the host is no valid TLS name (a unix socket): TLS to it is refused.
    name: Option<ServerName<'static>>,
}

impl<S> tls::TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let client = self
                .client
                .ok_or_else(|| io::Error::other("TLS asked for under sslmode=disable"))?;
            let name = self
                .name
                .ok_or_else(|| io::Error::other("no host name to verify the certificate for"))?;
            let stream = tokio_rustls::TlsConnector::from(client)
                .connect(name, stream)
                .await?;
            Ok(TlsStream(stream))
        })
    }
}

pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding; the certificate check is what binds the server.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> Result<(Mode, bool), String> {
        let (config, make) = connect_config(url).map_err(|e| e.to_string())?;
        let mode = match (config.get_ssl_mode(), make.client.is_some()) {
            (SslMode::Disable, false) => Mode::Disable,
            (SslMode::Require, true) => split(url).unwrap().mode.unwrap_or(Mode::VerifyFull),
            other => return Err(format!("inconsistent: {other:?}")),
        };
        Ok((mode, make.client.is_some()))
    }

    #[test]
    fn a_network_host_without_sslmode_gets_verify_full_and_a_socket_gets_none() {
        assert_eq!(
            mode_of("postgres://agp@db.example:5432/x").unwrap(),
            (Mode::VerifyFull, true)
        );
        assert_eq!(
            mode_of("postgres://agp@127.0.0.1/x").unwrap(),
            (Mode::VerifyFull, true)
        );
        assert_eq!(
            mode_of("postgres://agp@%2Ftmp%2Fpg:5432/x").unwrap(),
            (Mode::Disable, false)
        );
        assert_eq!(
            mode_of("host=db.example user=agp").unwrap(),
            (Mode::VerifyFull, true)
        );
        // hostaddr is a network address even with a socket-looking host.
        assert_eq!(
            mode_of("postgres://agp@%2Ftmp%2Fpg/x?hostaddr=10.0.0.1").unwrap(),
            (Mode::VerifyFull, true)
        );
    }

    #[test]
    fn sslmode_values_map_fail_closed() {
        let url = |m: &str| format!("postgres://agp@db.example/x?sslmode={m}");
        assert_eq!(mode_of(&url("disable")).unwrap(), (Mode::Disable, false));
        assert_eq!(mode_of(&url("require")).unwrap(), (Mode::VerifyFull, true));
        assert_eq!(
            mode_of(&url("verify-full")).unwrap(),
            (Mode::VerifyFull, true)
        );
        assert_eq!(mode_of(&url("verify-ca")).unwrap(), (Mode::VerifyCa, true));
        for bad in ["prefer", "allow", "Require", "", "verify_full", "on"] {
            let err = mode_of(&url(bad)).unwrap_err();
            assert!(err.contains("sslmode"), "{bad}: {err}");
        }
        assert!(mode_of("postgres://h/x?sslmode=disable&sslmode=require").is_err());
        assert!(mode_of("postgres://h/x?sslcert=/c.pem").is_err());
        assert!(mode_of("host=h sslmode=verify-full").is_err());
    }

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let s = split("postgres://u@h/db?application_name=a&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3")
            .unwrap();
        assert_eq!(
            s,
            Split {
                rest: "postgres://u@h/db?application_name=a&connect_timeout=3".into(),
                mode: Some(Mode::VerifyCa),
                root_file: Some("/etc/ca.pem".into()),
            }
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable").unwrap().rest,
            "postgres://u@h/db"
        );
        assert!(split("postgres://u@h/db?sslrootcert=%zz").is_err());
    }

    #[test]
    fn a_root_file_must_exist_hold_pem_and_not_be_paired_with_disable() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = |u: String| connect_config(&u).err().unwrap().to_string();
        assert!(e(format!("postgres://h/x?sslrootcert={}", empty.display())).contains("no PEM"));
        assert!(e("postgres://h/x?sslrootcert=/nonexistent/ca.pem".into()).contains("nonexistent"));
        assert!(e(format!(
            "postgres://h/x?sslmode=disable&sslrootcert={}",
            empty.display()
        ))
        .contains("drop one"));
    }
}
