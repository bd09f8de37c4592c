//! How to reach Redis: the URL, a password from the environment, and TLS.
//!
//! `rediss://` runs over rustls with the ring provider. The server is
//! checked against the system's roots, or only against `ca_file` when one is
//! given (a private CA); a client certificate is presented when the server
//! asks for one (`tls-auth-clients yes`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use redis::io::tcp::TcpSettings;
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::secret::Secret;

/// Everything besides the URL that a connection to Redis needs.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// PEM CA certificates trusted instead of the system roots (`rediss://` only).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (`rediss://` only).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Used instead of a password in the URL (the URL then must have none).
    pub password: Option<Secret>,
}

/// The environment variable holding the Redis password.
pub const PASSWORD_VAR: &str = "GUESTLIST_REDIS_PASSWORD";

impl ConnectOptions {
    /// Reads the password from [`PASSWORD_VAR`] or its `_FILE` variant.
    pub fn with_password_from_env(mut self) -> anyhow::Result<ConnectOptions> {
        self.password = crate::secret::from_env(PASSWORD_VAR)?;
        Ok(self)
    }

    fn has_tls_files(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

/// Whether `url` asks for TLS (`rediss://`).
pub fn uses_tls(url: &str) -> bool {
    url.into_connection_info()
        .is_ok_and(|info| matches!(info.addr(), ConnectionAddr::TcpTls { .. }))
}

/// A client for `url` with `options` applied. Errors never show the URL or
/// the password; file errors name the file.
pub fn client(url: &str, options: &ConnectOptions) -> anyhow::Result<redis::Client> {
    let info = url
        .into_connection_info()
        .context("invalid Redis URL (not shown: it may hold a password)")?
        // Checks are tiny; Nagle's delay would dominate their latency.
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let info = match &options.password {
        None => info,
        Some(password) => {
            anyhow::ensure!(
                info.redis_settings().password().is_none(),
                "the Redis URL carries a password and {PASSWORD_VAR} is set too; keep only {PASSWORD_VAR}"
            );
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose());
            info.set_redis_settings(settings)
        }
    };
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    if !options.has_tls_files() {
        if tls {
            crate::tls::install_crypto_provider();
        }
        return redis::Client::open(info).context("creating the Redis client");
    }
    anyhow::ensure!(
        tls,
        "--redis-ca-file, --redis-client-cert and --redis-client-key need a rediss:// store URL"
    );
    let client_tls = match (&options.client_cert, &options.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_pem(cert, "--redis-client-cert")?,
            client_key: read_pem(key, "--redis-client-key")?,
        }),
        _ => anyhow::bail!("--redis-client-cert and --redis-client-key go together"),
    };
    let root_cert = options
        .ca_file
        .as_deref()
        .map(|ca| read_pem(ca, "--redis-ca-file"))
        .transpose()?;
    crate::tls::install_crypto_provider();
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .context("setting up TLS for Redis (check the certificate and key files)")
}

fn read_pem(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_need_a_tls_url_and_come_in_pairs() {
        let options = ConnectOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ConnectOptions::default()
        };
        let e = client("redis://127.0.0.1:6379", &options).unwrap_err();
        assert!(e.to_string().contains("rediss://"), "{e:#}");
        let e = client("rediss://127.0.0.1:6379", &options).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ca.pem"), "{e:#}");
        let options = ConnectOptions {
            client_cert: Some("/nonexistent/cert.pem".into()),
            ..ConnectOptions::default()
        };
        let e = client("rediss://127.0.0.1:6379", &options).unwrap_err();
        assert!(e.to_string().contains("go together"), "{e:#}");
    }

    #[test]
    fn a_password_from_the_environment_replaces_none_in_the_url() {
        let options = ConnectOptions {
            password: Some(Secret::new("hunter2")),
            ..ConnectOptions::default()
        };
        let c = client("redis://app@127.0.0.1:6379", &options).unwrap();
        let settings = c.get_connection_info().redis_settings();
        assert_eq!(settings.password(), Some("hunter2"));
        assert_eq!(settings.username(), Some("app"));
        let e = client("redis://:other@127.0.0.1:6379", &options).unwrap_err();
        let shown = format!("{e:#}");
        assert!(shown.contains(PASSWORD_VAR), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("other"),
            "{shown}"
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let options = ConnectOptions {
            password: Some(Secret::new("hunter2")),
            ..ConnectOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
