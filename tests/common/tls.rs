//! Certificates made inside the test, and a TLS-only `redis-server` using
//! them: a CA, a server certificate for 127.0.0.1 and localhost, a client
//! certificate, and a second CA that signed none of them. No key is committed.

use std::path::{Path, PathBuf};

use guestlist::redis_server::{ServerOptions, ServerTls};
use guestlist::store::redis::ConnectOptions;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::RedisServer;

/// PEM files in a temporary directory, deleted on drop.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = ca("guestlist test CA");
        pki.write("ca.pem", &ca.pem());
        pki.write("other-ca.pem", &self::ca("another test CA").pem());
        for (name, usage, sans) in [
            (
                "server",
                ExtendedKeyUsagePurpose::ServerAuth,
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", ExtendedKeyUsagePurpose::ClientAuth, vec![]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("guestlist test {name}"));
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &*ca).unwrap();
            pki.write(&format!("{name}.pem"), &cert.pem());
            pki.write(&format!("{name}-key.pem"), &key.serialize_pem());
        }
        pki
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.dir.path().join(name), pem).unwrap();
    }

    /// The path of one of the files: `ca.pem`, `other-ca.pem`,
    /// `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        assert!(path.exists(), "no {name} in the test PKI");
        path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A TLS-only redis-server with this PKI's server certificate; with
    /// `auth_clients`, it requires a client certificate from the CA.
    pub fn redis(&self, auth_clients: bool) -> RedisServer {
        RedisServer::start_with(self.server_options(auth_clients))
    }

    fn server_options(&self, auth_clients: bool) -> ServerOptions {
        ServerOptions {
            tls: Some(ServerTls {
                cert: self.path("server.pem"),
                key: self.path("server-key.pem"),
                ca: self.path("ca.pem"),
                auth_clients,
            }),
            ..ServerOptions::default()
        }
    }

    /// Options for TLS cluster nodes. The cluster bus demands a client
    /// certificate from every node, and the server certificate is for server
    /// authentication only, so nodes present the client certificate.
    pub fn cluster_options(&self) -> ServerOptions {
        self.server_options(false)
            .config(
                "tls-client-cert-file",
                self.path("client.pem").to_str().unwrap(),
            )
            .config(
                "tls-client-key-file",
                self.path("client-key.pem").to_str().unwrap(),
            )
    }

    /// Options that trust this PKI's CA (and present its client certificate
    /// when `client_cert`).
    pub fn connect_options(&self, client_cert: bool) -> ConnectOptions {
        ConnectOptions {
            ca_file: Some(self.path("ca.pem")),
            client_cert: client_cert.then(|| self.path("client.pem")),
            client_key: client_cert.then(|| self.path("client-key.pem")),
            ..ConnectOptions::default()
        }
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}
