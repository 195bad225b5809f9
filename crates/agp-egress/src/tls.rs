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

/// The certificates of a PEM file's text, for [`upstream_client_config`]'s extra roots (a
/// company CA the upstreams are signed by). A file holding none is an error: a root the user
/// configured must not silently vanish.
pub fn roots_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_roots_are_read_and_emptiness_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let two = format!("{}{}", cert.pem(), cert.pem());
        let roots = roots_from_pem(two.as_bytes()).unwrap();
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].as_ref(), cert.der().as_ref());
        assert!(upstream_client_config(&roots[..1]).is_ok());
        assert!(roots_from_pem(b"").is_err());
        assert!(roots_from_pem(b"just text\n").is_err());
    }
}
