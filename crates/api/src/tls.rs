//! TLS for the client (rustls with the ring provider, never aws-lc), and
//! the PEM certificate loading the server shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why trusted certificates could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A PEM file could not be read or parsed.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        cause: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    /// A certificate was refused as a trust anchor.
    #[error("{} cannot be trusted", path.display())]
    Anchor {
        /// The file it came from.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        cause: rustls::Error,
    },
    /// No CA was given and the system has no root certificates.
    #[error("no system root certificates found; pass --ca-cert")]
    NoSystemRoots,
    /// rustls refused the protocol versions (cannot happen with the ring
    /// provider's defaults).
    #[error("setting up tls")]
    Rustls(#[source] rustls::Error),
}

/// The crypto provider every TLS configuration of the project uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let read = |cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(ConfigError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// The client side: trust `ca` when given, otherwise the system's roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|cause| ConfigError::Anchor {
                    path: path.to_owned(),
                    cause,
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConfigError::NoSystemRoots);
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a failed handshake means, in words, with the fix, when it is a
/// certificate the client refused (rustls names the problem in a form
/// only its authors read, e.g. `Other(OtherError(CaUsedAsEndEntity))`).
pub fn explain_handshake(error: &std::io::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::InvalidCertificate(problem) = rustls_error else {
        return None;
    };
    const HOW: &str = "make a CA and a server certificate signed by it (docs/security.md, \"TLS certificates\") and give the server the server certificate, the client the CA (--ca-cert)";
    Some(match problem {
        C::UnknownIssuer => format!(
            "the server's certificate is not signed by a CA this client trusts: give the CA that signed it with --ca-cert, or {HOW}"
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate does not name the host in the URL: connect with a name or address the certificate lists (its subject alternative names), or make a certificate that lists this one".to_owned()
        }
        C::Expired | C::ExpiredContext { .. } => {
            "the server's certificate has expired: renew it".to_owned()
        }
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet: check the clocks of both machines".to_owned()
        }
        C::Revoked => "the server's certificate has been revoked".to_owned(),
        C::BadEncoding => "the server's certificate is malformed".to_owned(),
        C::BadSignature => "the server's certificate has a bad signature".to_owned(),
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "the server presents a CA certificate as its own (a self-signed certificate made with `openssl req -x509` is one): a server needs a certificate of its own, signed by a CA; {HOW}"
        ),
        other => format!("the server's certificate was refused ({other:?})"),
    })
}
