//! The instance's certificate authority, serving certificate and admin client certificate.
//!
//! Created on first start under the TLS directory (keys mode 0600) and reused afterwards; the
//! serving and client certificates are re-issued from the same CA when they near expiry.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Other(String),
}

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    ca_key_pem: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write a file atomically with the given mode (rename over the old one).
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(contents).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

const DAY: i64 = 86_400;

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time_now();
    params.not_before = now - time::Duration::seconds(300);
    params.not_after = now + time::Duration::seconds(days * DAY);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d
}

/// Seconds until the certificate in `pem` expires (negative when expired).
fn remaining_seconds(pem: &str) -> Option<i64> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = p.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp() - chrono::Utc::now().timestamp())
}

impl Pki {
    /// Load or create the PKI in `dir`.
    pub fn load_or_create(dir: &Path) -> Result<Pki, TlsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ca_crt = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let (ca_pem, ca_key_pem) = match (fs::read_to_string(&ca_crt), fs::read_to_string(&ca_key))
        {
            (Ok(c), Ok(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut p = CertificateParams::default();
                p.distinguished_name = dn("rdd-ca", &[]);
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                validity(&mut p, 3650);
                let cert = p.self_signed(&key)?;
                write_private(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
                write_private(&ca_crt, cert.pem().as_bytes(), 0o644)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let mut pki = Pki {
            ca_pem,
            ca_key_pem,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
            admin_cert_pem: String::new(),
            admin_key_pem: String::new(),
        };
        (pki.server_cert_pem, pki.server_key_pem) = pki.leaf(dir, "server", |p| {
            p.distinguished_name = dn("rdd-apiserver", &[]);
            p.subject_alt_names = vec![
                SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
                SanType::IpAddress(std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
                SanType::DnsName(
                    "localhost"
                        .try_into()
                        .map_err(|e: rcgen::Error| TlsError::Gen(e))?,
                ),
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            Ok(())
        })?;
        (pki.admin_cert_pem, pki.admin_key_pem) = pki.leaf(dir, "admin", |p| {
            p.distinguished_name = dn("rdd-admin", &["system:masters"]);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            Ok(())
        })?;
        Ok(pki)
    }

    /// A leaf certificate signed by the CA, reused while it has more than 30 days left.
    fn leaf(
        &self,
        dir: &Path,
        name: &str,
        configure: impl FnOnce(&mut CertificateParams) -> Result<(), TlsError>,
    ) -> Result<(String, String), TlsError> {
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        if let (Ok(c), Ok(k)) = (fs::read_to_string(&crt), fs::read_to_string(&key))
            && remaining_seconds(&c).is_some_and(|s| s > 30 * DAY)
        {
            return Ok((c, k));
        }
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, ca_key)?;
        let leaf_key = KeyPair::generate()?;
        let mut p = CertificateParams::default();
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut p, 365);
        configure(&mut p)?;
        let cert = p.signed_by(&leaf_key, &issuer)?;
        write_private(&key, leaf_key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&crt, cert.pem().as_bytes(), 0o644)?;
        Ok((cert.pem(), leaf_key.serialize_pem()))
    }

    /// Server config: client certificates signed by our CA are accepted but optional (bearer
    /// tokens are the other way in). ALPN offers h2 and HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = parse_certs(&self.server_cert_pem)?;
        let key = parse_key(&self.server_key_pem)?;
        let mut roots = RootCertStore::empty();
        for c in parse_certs(&self.ca_pem)? {
            roots.add(c)?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Other(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Other(format!("bad certificate PEM: {e}")))
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = pem.as_bytes();
    let mut keys = rustls_pemfile::pkcs8_private_keys(&mut reader);
    match keys.next() {
        Some(Ok(k)) => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            k.secret_pkcs8_der().to_vec(),
        ))),
        _ => Err(TlsError::Other("no PKCS#8 private key".into())),
    }
}

/// User and groups of a client certificate (CN = user, O = groups), as kube-apiserver reads them.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = c.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((user, groups))
}
