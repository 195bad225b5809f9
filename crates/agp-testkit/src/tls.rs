//! A test certificate authority for HTTPS fake servers: the CA's PEM for the client side (a
//! proxy's extra roots, a client's CA file) and a server configuration presenting a leaf it
//! issued for `127.0.0.1` and `localhost`.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestCa {
    /// A fresh CA and a leaf for the loopback names.
    pub fn new() -> Result<Self, String> {
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.distinguished_name
            .push(DnType::CommonName, "agp test upstream CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).map_err(e)?;

        let leaf_key = KeyPair::generate().map_err(e)?;
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).map_err(e)?;
        leaf.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(e)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> =
            vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Api, FakeModel, Turn};
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};

    #[test]
    fn fake_model_over_https_is_verified_by_the_ca_and_records_headers() {
        let ca = TestCa::new().unwrap();
        let model = FakeModel::start_tls(
            Api::Anthropic,
            vec![Turn::Text("hi".into())],
            ca.server.clone(),
        )
        .unwrap();
        assert!(model.base_url().starts_with("https://127.0.0.1:"));
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let tcp = std::net::TcpStream::connect(model.addr()).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let body = r#"{"messages":[]}"#;
        write!(
            tls,
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Api-Key: k-1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
        let r = &model.requests()[0];
        assert!(r.headers.contains(&("X-Api-Key".into(), "k-1".into())));
    }
}
