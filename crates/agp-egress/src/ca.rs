//! The per-session certificate authority that lets the proxy terminate TLS for inspected hosts.
//!
//! Created on the host for one session: its private key lives only in this process's memory and
//! is never written anywhere; its certificate is written to a file the sandbox gets read-only,
//! together with a bundle (the host's system roots plus the session CA) that replaces the
//! sandbox's system bundle. Leaf certificates are issued per server name on first use and kept
//! (a warm cache), so only the first connection to a host pays for signing.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// Where a host's system trust bundle usually is (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How long the session CA and its leaves are valid: a session is hours, not weeks, and a leaked
/// certificate file is worth nothing once it expires.
const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot create a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A session's CA: its key in memory, its certificate on disk.
pub struct SessionCa {
    key: KeyPair,
    cert: rcgen::Certificate,
    ca_pem: PathBuf,
    bundle_pem: PathBuf,
    system_bundle: Option<PathBuf>,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for SessionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SessionCa")
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

impl SessionCa {
    /// Creates a CA and writes `ca.pem` and `bundle.pem` (mode 0644, created fresh: an existing
    /// file is an error, so a stale or planted certificate is never reused) into `dir`.
    pub fn create(dir: &Path) -> Result<Self, CaError> {
        let system = SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        Self::create_with_system_bundle(dir, system.as_deref())
    }

    /// As [`SessionCa::create`], with the system bundle to combine named (`None`: the bundle
    /// holds the session CA only).
    pub fn create_with_system_bundle(dir: &Path, system: Option<&Path>) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "agp");
        dn.push(DnType::CommonName, "agp session egress CA");
        params.distinguished_name = dn;
        // Path length 0: it can sign leaves, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let cert = params.self_signed(&key)?;

        let ca_pem = dir.join("ca.pem");
        write_new(&ca_pem, cert.pem().as_bytes())?;
        let mut bundle = match system {
            Some(p) => std::fs::read(p).unwrap_or_default(),
            None => Vec::new(),
        };
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(cert.pem().as_bytes());
        let bundle_pem = dir.join("bundle.pem");
        write_new(&bundle_pem, &bundle)?;
        Ok(Self {
            key,
            cert,
            ca_pem,
            bundle_pem,
            system_bundle: system.map(Path::to_path_buf),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The session CA's certificate alone (for `NODE_EXTRA_CA_CERTS`, which adds to Node's roots).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem
    }

    /// System roots plus the session CA: for variables that replace the trust store, and to be
    /// bound over the sandbox's system bundle.
    pub fn bundle_pem_path(&self) -> &Path {
        &self.bundle_pem
    }

    /// The system bundle the combined bundle was built from, if one was found.
    pub fn system_bundle(&self) -> Option<&Path> {
        self.system_bundle.as_deref()
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        self.cert.der()
    }

    /// Variables a sandbox sets so the usual clients trust the session CA, given where the files
    /// are seen inside the sandbox (`ca` for [`Self::ca_pem_path`], `bundle` for
    /// [`Self::bundle_pem_path`]). Every variable but Node's replaces its tool's store, so it
    /// gets the combined bundle: pass-through hosts must keep verifying against system roots.
    pub fn sandbox_env(ca: &Path, bundle: &Path) -> Vec<(&'static str, PathBuf)> {
        let b = bundle.to_path_buf();
        vec![
            ("SSL_CERT_FILE", b.clone()),
            ("NODE_EXTRA_CA_CERTS", ca.to_path_buf()),
            ("REQUESTS_CA_BUNDLE", b.clone()),
            ("CURL_CA_BUNDLE", b.clone()),
            ("CARGO_HTTP_CAINFO", b.clone()),
            ("GIT_SSL_CAINFO", b),
        ]
    }

    /// The TLS server configuration presenting a leaf for `name` (a DNS name or an IP literal),
    /// issued on first use and cached. ALPN offers `http/1.1` only: the proxy reads HTTP/1.1,
    /// and clients fall back to it when h2 is not offered.
    pub fn server_config(&self, name: &str) -> Result<Arc<ServerConfig>, CaError> {
        let mut leaves = self
            .leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = leaves.get(name) {
            return Ok(c.clone());
        }
        let config = Arc::new(self.issue(name)?);
        leaves.insert(name.to_owned(), config.clone());
        Ok(config)
    }

    fn issue(&self, name: &str) -> Result<ServerConfig, CaError> {
        let leaf_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let leaf = params.signed_by(&leaf_key, &self.cert, &self.key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), self.cert.der().clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for a sandbox clock slightly behind the host's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + VALIDITY;
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    let err = |source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_certificates_only_and_leaves_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys.pem");
        std::fs::write(
            &sys,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        )
        .unwrap();
        let ca = SessionCa::create_with_system_bundle(dir.path(), Some(&sys)).unwrap();
        let ca_text = std::fs::read_to_string(ca.ca_pem_path()).unwrap();
        assert!(ca_text.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(!ca_text.contains("PRIVATE KEY"));
        let bundle = std::fs::read_to_string(ca.bundle_pem_path()).unwrap();
        assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\nAAAA\n"));
        assert!(bundle.ends_with(&ca_text));
        assert!(!format!("{ca:?}").contains("key"));

        let a = ca.server_config("api.example.com").unwrap();
        let b = ca.server_config("api.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(ca.server_config("10.1.2.3").is_ok());

        // A second CA in the same place is refused rather than overwriting the first.
        assert!(SessionCa::create_with_system_bundle(dir.path(), None).is_err());
    }

    #[test]
    fn sandbox_variables() {
        let env = SessionCa::sandbox_env(Path::new("/ca.pem"), Path::new("/bundle.pem"));
        let names: Vec<_> = env.iter().map(|(n, _)| *n).collect();
        for n in [
            "SSL_CERT_FILE",
            "NODE_EXTRA_CA_CERTS",
            "REQUESTS_CA_BUNDLE",
            "CARGO_HTTP_CAINFO",
            "GIT_SSL_CAINFO",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let node = env
            .iter()
            .find(|(n, _)| *n == "NODE_EXTRA_CA_CERTS")
            .unwrap();
        assert_eq!(node.1, Path::new("/ca.pem"));
    }
}
