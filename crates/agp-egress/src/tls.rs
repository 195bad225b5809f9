//! The proxy's TLS client towards real upstreams: verified normally.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// One crypto provider named explicitly, so the process-wide default (which another crate could
/// set differently) never decides what the proxy speaks.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for upstreams of inspected hosts: the web PKI roots (webpki-roots,
/// the Mozilla set compiled in, so the host's store cannot be swapped under a running proxy)
/// plus `extra` roots from the configuration (a company CA, or a test CA). ALPN `http/1.1`: the
/// proxy forwards HTTP/1.1.
pub fn upstream_client_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots.add(der.clone())?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
