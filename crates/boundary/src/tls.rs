//! TLS: the interception CA and its per-host certificates, the client
//! configuration for origins, the CA bundle handed to COMMAND, and reading
//! the server name of a ClientHello that passes through a tunnel.
//!
//! The CA's private key is the one secret of the proxy: by default it is
//! generated per run and held in memory only. With `--ca-dir` it is kept in
//! `DIR/ca.key` (mode 0600, the directory 0700) beside `DIR/ca.crt`, so that
//! clients can trust one CA across runs; `--jail` hides that directory from
//! COMMAND. Leaf certificates share one key generated per run and are cached
//! per host.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::target::Host;

/// Leaf configurations kept at most (the cache is cleared when full).
const LEAF_CACHE: usize = 4096;
/// How long a leaf certificate is valid, in days (and backdated one day
/// against clock skew).
const LEAF_DAYS: i64 = 30;
/// How long a generated CA is valid, in days.
const CA_DAYS: i64 = 3650;

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating a certificate")]
    Generate(#[source] rcgen::Error),
    /// A file of the CA directory or a CA file cannot be read or written.
    #[error("{what} {path}", path = path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {problem}", path = path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key file is readable by others.
    #[error("{path} is readable by group or others (mode {mode:o}); chmod 600 it", path = path.display())]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// rustls refused a configuration.
    #[error("TLS configuration")]
    Rustls(#[source] rustls::Error),
}

/// The interception CA.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    leaf_key: KeyPair,
    leaves: Mutex<HashMap<Host, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A CA generated now, held in memory only.
    pub fn generate() -> Result<CertificateAuthority, TlsError> {
        let key = KeyPair::generate().map_err(TlsError::Generate)?;
        let params = ca_params(&key);
        let cert = params.self_signed(&key).map_err(TlsError::Generate)?;
        CertificateAuthority::from_parts(params, key, cert.der().clone(), cert.pem())
    }

    /// The CA kept in `dir` (`ca.crt`, `ca.key`), created there if the
    /// directory holds none.
    pub fn load_or_create(dir: &Path) -> Result<CertificateAuthority, TlsError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if !key_path.exists() {
            let ca = CertificateAuthority::generate()?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| file_error("creating", dir, source))?;
            write_new(&key_path, ca.issuer.key().serialize_pem().as_bytes(), 0o600)?;
            write_new(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
            return Ok(ca);
        }
        let mode = std::fs::metadata(&key_path)
            .map_err(|source| file_error("reading", &key_path, source))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyMode {
                path: key_path,
                mode: mode & 0o777,
            });
        }
        let key_pem = std::fs::read_to_string(&key_path)
            .map_err(|source| file_error("reading", &key_path, source))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            problem: e.to_string(),
        })?;
        let cert_der = CertificateDer::from_pem_file(&cert_path).map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            problem: e.to_string(),
        })?;
        let cert_pem = std::fs::read_to_string(&cert_path)
            .map_err(|source| file_error("reading", &cert_path, source))?;
        let ca = CertificateAuthority::from_parts(ca_params(&key), key, cert_der, cert_pem)?;
        // The issuer is rebuilt from the key; prove that leaves it signs
        // verify against the stored certificate before relying on it.
        ca.check_chain().map_err(|problem| TlsError::Pem {
            path: cert_path,
            problem,
        })?;
        Ok(ca)
    }

    fn from_parts(
        params: CertificateParams,
        key: KeyPair,
        cert_der: CertificateDer<'static>,
        cert_pem: String,
    ) -> Result<CertificateAuthority, TlsError> {
        Ok(CertificateAuthority {
            issuer: Issuer::new(params, key),
            cert_der,
            cert_pem,
            leaf_key: KeyPair::generate().map_err(TlsError::Generate)?,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The server configuration presenting a certificate for `host` (ALPN
    /// h2 and http/1.1), issued on first use and cached.
    pub fn server_config(&self, host: &Host) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(config) = self.leaves().get(host) {
            return Ok(config.clone());
        }
        let config = Arc::new(self.issue(host)?);
        let mut leaves = self.leaves();
        if leaves.len() >= LEAF_CACHE {
            leaves.clear();
        }
        leaves.insert(host.clone(), config.clone());
        Ok(config)
    }

    fn leaves(&self) -> std::sync::MutexGuard<'_, HashMap<Host, Arc<ServerConfig>>> {
        // A poisoned cache is still a valid cache.
        self.leaves.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issue(&self, host: &Host) -> Result<ServerConfig, TlsError> {
        let name = match host {
            Host::Name(name) => name.clone(),
            Host::Ipv4(a) => a.to_string(),
            Host::Ipv6(a) => a.to_string(),
        };
        let mut params = CertificateParams::new(vec![name.clone()]).map_err(TlsError::Generate)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, LEAF_DAYS);
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(TlsError::Generate)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), self.cert_der.clone()], key)
            .map_err(TlsError::Rustls)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Issues a leaf and verifies it against the CA certificate.
    fn check_chain(&self) -> Result<(), String> {
        let host = Host::Name("warden-ca-check.invalid".into());
        let name = CertificateParams::new(vec!["warden-ca-check.invalid".into()])
            .map_err(|e| e.to_string())?;
        let leaf = name
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(
                leaf.der(),
                &[],
                &crate::upstream::server_name(&host).map_err(|e| e.to_string())?,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .map(|_| ())
            .map_err(|e| format!("ca.key does not belong to this certificate ({e})"))
    }
}

/// The CA's parameters, derived from its key alone (so that a stored key
/// rebuilds the same issuer): a name carrying the key's fingerprint.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint = hex::encode(&Sha256::digest(key.public_key_raw())[..6]);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("warden boundary CA {fingerprint}"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "warden boundary");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_DAYS);
    params
}

/// Valid from a day ago to `days` from now.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let day = |offset: i64| {
        let date = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * offset))
            .unwrap_or(jiff::Timestamp::MAX);
        let date = jiff::tz::Offset::UTC.to_datetime(date).date();
        rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8)
    };
    params.not_before = day(-1);
    params.not_after = day(days);
}

/// The ring provider, for every TLS configuration of the proxy.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots origins are verified against: the system's, plus `extra` PEM
/// files (`--upstream-ca`).
pub fn upstream_roots(extra: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "reading a system root certificate");
    }
    roots.add_parsable_certificates(native.certs);
    for path in extra {
        let certs = read_certificates(path)?;
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// Every certificate of a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            problem: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// A client configuration for origins offering `alpn`.
pub fn client_config(
    roots: Arc<RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The bundle COMMAND trusts: the system roots and the interception CA, in
/// a fresh private directory (removed with the returned guard).
pub fn write_bundle(ca: &CertificateAuthority) -> Result<(tempfile::TempDir, PathBuf), TlsError> {
    let dir = tempfile::Builder::new()
        .prefix("warden-boundary-")
        .tempdir()
        .map_err(|source| file_error("creating", &std::env::temp_dir(), source))?;
    let path = dir.path().join("ca-bundle.pem");
    let mut text = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        text.push_str(&pem_certificate(&cert));
    }
    text.push_str(ca.cert_pem());
    write_new(&path, text.as_bytes(), 0o644)?;
    // The directory itself must be reachable by COMMAND (same user).
    let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    Ok((dir, path))
}

fn pem_certificate(der: &CertificateDer<'_>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.as_ref().to_vec()), config)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| file_error("creating", path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| file_error("writing", path, source))
}

fn file_error(what: &'static str, path: &Path, source: std::io::Error) -> TlsError {
    TlsError::File {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Reads the server name of a TLS ClientHello from the first bytes of a
/// tunnel. Feed bytes as they arrive; the answer is known once the whole
/// ClientHello is in.
#[derive(Default)]
pub struct HelloReader {
    acceptor: rustls::server::Acceptor,
}

impl std::fmt::Debug for HelloReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloReader").finish_non_exhaustive()
    }
}

/// What the first bytes of a tunnel are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// A ClientHello, with its server name if it sent one.
    Tls(Option<String>),
    /// Not TLS.
    NotTls,
}

impl HelloReader {
    /// Feeds the next bytes (the caller keeps them to forward).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Hello {
        while !bytes.is_empty() {
            if self.acceptor.read_tls(&mut bytes).is_err() {
                return Hello::NotTls;
            }
        }
        match self.acceptor.accept() {
            Ok(None) => Hello::Incomplete,
            Ok(Some(accepted)) => Hello::Tls(
                accepted
                    .client_hello()
                    .server_name()
                    .map(|name| name.to_owned()),
            ),
            Err(_) => Hello::NotTls,
        }
    }
}
