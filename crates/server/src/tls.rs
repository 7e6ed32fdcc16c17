//! The server's TLS configuration (rustls with the ring provider, never
//! aws-lc). The client side is [`warden_api::tls`].

use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use warden_api::tls::{load_certs, provider};

use crate::ServerError;
use crate::config::TlsFiles;

/// The server side: the certificate chain and key from PEM files, HTTP/2
/// and HTTP/1.1 offered by ALPN.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let tls = |what: String| {
        move |cause: Box<dyn std::error::Error + Send + Sync>| ServerError::Tls { what, cause }
    };
    let certs = load_certs(&files.cert)
        .map_err(|e| tls(format!("the certificate {}", files.cert.display()))(e.into()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| tls(format!("reading the key {}", files.key.display()))(e.into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("the protocol versions".into())(e.into()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls("the certificate and key do not fit".into())(e.into()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
