//! TLS for both ends of the HTTP API: the server's certificate and key for
//! `serve --tls-cert/--tls-key`, and the trust anchors the CLI uses for an
//! `https://` server.
//!
//! Every TLS user in the process (the listener, reqwest, the Redis driver)
//! shares rustls with the `ring` provider; `aws-lc-rs` is kept out of the
//! build because its C library doubles the build time.

// Part of the library a login service embeds: every public item says what it is.
#![warn(missing_docs)]

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Makes `ring` the process's rustls provider. reqwest (built without a
/// provider of its own) panics on its first client without one, so this runs
/// before any client is built; later calls are no-ops.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server side: the certificate chain and private key from PEM files,
/// offered over HTTP/1.1 (the only protocol the listener speaks).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        cert.display()
    );
    // The key's own error text could quote key material; only the path is named.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        anyhow::anyhow!(
            "reading the TLS private key {}: no readable PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side: the CA certificates in a PEM bundle, for a server whose
/// certificate a private CA signed.
#[cfg(any(feature = "server", feature = "openfeature"))]
pub fn ca_certificates(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}
