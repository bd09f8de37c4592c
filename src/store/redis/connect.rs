//! How to reach Redis: the URL, a password from the environment, and TLS.
//!
//! `rediss://` runs over rustls with the ring provider. The server is
//! checked against the system's roots, or only against `ca_file` when one is
//! given (a private CA); a client certificate is presented when the server
//! asks for one (`tls-auth-clients yes`).
//!
//! `redis+cluster://host:port[,host:port…]` (or `rediss+cluster://`) names
//! a Redis Cluster by some of its nodes; the client learns the rest, and
//! every later topology change, from them.

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
    /// On a cluster, send login checks to replicas (see `docs/data-model.md`
    /// for what that costs in staleness).
    pub read_from_replicas: bool,
    /// Replicas that must confirm an audience publish before it is
    /// acknowledged (`WAIT`); 0 acknowledges at once.
    pub min_replicas_ack: u32,
    /// How long a publish waits for those replicas (default 2 s).
    pub replica_ack_timeout: Option<std::time::Duration>,
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

/// Whether `url` asks for TLS (`rediss://` or `rediss+cluster://`).
pub fn uses_tls(url: &str) -> bool {
    if let Some(nodes) = cluster_nodes(url) {
        return nodes.is_ok_and(|n| n.first().is_some_and(|n| n.starts_with("rediss://")));
    }
    url.into_connection_info()
        .is_ok_and(|info| matches!(info.addr(), ConnectionAddr::TcpTls { .. }))
}

/// Whether `url` names a Redis Cluster.
pub fn is_cluster_url(url: &str) -> bool {
    cluster_nodes(url).is_some()
}

/// A single Redis, or a cluster reached through some of its nodes.
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(ClusterTarget),
}

/// What every cluster connection is built from.
#[derive(Clone)]
pub(crate) struct ClusterTarget {
    nodes: Vec<redis::ConnectionInfo>,
    certificates: Option<redis::TlsCertificates>,
}

impl ClusterTarget {
    /// A builder with the nodes, password and TLS set; callers add timeouts.
    pub(crate) fn builder(&self) -> redis::cluster::ClusterClientBuilder {
        let mut builder = redis::cluster::ClusterClientBuilder::new(self.nodes.clone())
            .tcp_settings(TcpSettings::default().set_nodelay(true));
        if let Some(certificates) = &self.certificates {
            builder = builder.certs(certificates.clone());
        }
        builder
    }
}

/// Reads `url` and `options` into a [`Target`]. Errors never show the URL
/// or the password; file errors name the file.
pub(crate) fn target(url: &str, options: &ConnectOptions) -> anyhow::Result<Target> {
    let Some(nodes) = cluster_nodes(url) else {
        return client(url, options).map(Target::Single);
    };
    let nodes = nodes?;
    let mut infos = Vec::with_capacity(nodes.len());
    for node in &nodes {
        infos.push(with_password(node_info(node)?, options)?);
    }
    let tls = nodes[0].starts_with("rediss://");
    let certificates = certificates(tls, options)?;
    if tls {
        crate::tls::install_crypto_provider();
    }
    Ok(Target::Cluster(ClusterTarget {
        nodes: infos,
        certificates,
    }))
}

fn node_info(node: &str) -> anyhow::Result<redis::ConnectionInfo> {
    node.into_connection_info()
        .context("invalid Redis Cluster URL (not shown: it may hold a password)")
}

/// The nodes of a `redis+cluster://` URL as single-node URLs sharing its
/// user info, or `None` for any other URL. The user info ends at the last
/// `@`, as in `redact_url`.
pub(crate) fn cluster_nodes(url: &str) -> Option<anyhow::Result<Vec<String>>> {
    let (scheme, rest) = url.split_once("://")?;
    let node_scheme = match scheme.to_ascii_lowercase().as_str() {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    Some((|| {
        let (user, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
        anyhow::ensure!(
            !hosts.contains(['/', '?', '#']),
            "a Redis Cluster URL takes no database, path or query: a cluster has only database 0"
        );
        let nodes: Vec<String> = hosts
            .split(',')
            .map(|h| format!("{node_scheme}://{user}{h}"))
            .collect();
        anyhow::ensure!(
            hosts.split(',').all(|h| !h.is_empty()),
            "a Redis Cluster URL lists nodes as host:port[,host:port…], with none empty"
        );
        Ok(nodes)
    })())
}

fn with_password(
    info: redis::ConnectionInfo,
    options: &ConnectOptions,
) -> anyhow::Result<redis::ConnectionInfo> {
    let Some(password) = &options.password else {
        return Ok(info);
    };
    anyhow::ensure!(
        info.redis_settings().password().is_none(),
        "the Redis URL carries a password and {PASSWORD_VAR} is set too; keep only {PASSWORD_VAR}"
    );
    let settings = info
        .redis_settings()
        .clone()
        .set_password(password.expose());
    Ok(info.set_redis_settings(settings))
}

/// The CA and client certificate `options` name, for a TLS URL.
fn certificates(
    tls: bool,
    options: &ConnectOptions,
) -> anyhow::Result<Option<redis::TlsCertificates>> {
    if !options.has_tls_files() {
        return Ok(None);
    }
    anyhow::ensure!(
        tls,
        "--redis-ca-file, --redis-client-cert and --redis-client-key need a rediss:// or rediss+cluster:// store URL"
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
    Ok(Some(redis::TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// A client for `url` with `options` applied. Errors never show the URL or
/// the password; file errors name the file.
pub fn client(url: &str, options: &ConnectOptions) -> anyhow::Result<redis::Client> {
    let info = url
        .into_connection_info()
        .context("invalid Redis URL (not shown: it may hold a password)")?
        // Checks are tiny; Nagle's delay would dominate their latency.
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let info = with_password(info, options)?;
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    let certificates = certificates(tls, options)?;
    if tls {
        crate::tls::install_crypto_provider();
    }
    match certificates {
        None => redis::Client::open(info).context("creating the Redis client"),
        Some(certificates) => redis::Client::build_with_tls(info, certificates)
            .context("setting up TLS for Redis (check the certificate and key files)"),
    }
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
