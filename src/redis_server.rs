//! A private `redis-server` process: loopback only, no persistence, its own
//! temporary directory, killed on drop. The benchmark starts one when no
//! `--redis` is given, and the integration tests start one per test, some
//! with TLS or extra configuration ([`ServerOptions`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    options: ServerOptions,
}

/// How a private server differs from the plain default.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Serve TLS only (the plain port is closed), with these PEM files.
    pub tls: Option<ServerTls>,
    /// Configuration passed as `--name value…`, e.g. `maxmemory-policy`.
    pub config: Vec<(String, Vec<String>)>,
}

/// PEM files of a TLS server.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must chain to.
    pub ca: PathBuf,
    /// Whether clients must present a certificate.
    pub auth_clients: bool,
}

impl ServerOptions {
    /// Adds one `--name value` configuration directive.
    pub fn config(self, name: &str, value: &str) -> ServerOptions {
        self.config_args(name, &[value])
    }

    /// Adds a directive of several arguments, e.g. `rename-command CONFIG ""`.
    pub fn config_args(mut self, name: &str, values: &[&str]) -> ServerOptions {
        let values = values.iter().map(|v| v.to_string()).collect();
        self.config.push((name.to_string(), values));
        self
    }

    pub(crate) fn args(&self, port: u16) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |name: &str, value: &std::ffi::OsStr| {
            args.push(format!("--{name}").into());
            args.push(value.to_owned());
        };
        let port = port.to_string();
        match &self.tls {
            None => push("port", port.as_ref()),
            Some(tls) => {
                push("port", "0".as_ref());
                push("tls-port", port.as_ref());
                push("tls-cert-file", tls.cert.as_os_str());
                push("tls-key-file", tls.key.as_os_str());
                push("tls-ca-cert-file", tls.ca.as_os_str());
                let auth = if tls.auth_clients { "yes" } else { "no" };
                push("tls-auth-clients", auth.as_ref());
            }
        }
        for (name, values) in &self.config {
            args.push(format!("--{name}").into());
            args.extend(values.iter().map(Into::into));
        }
        args
    }
}

/// A free loopback port below 55536, so that port + 10000 (a cluster bus) is valid too.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        let port = listener.local_addr()?.port();
        if port < 55536 {
            return Ok(port);
        }
    }
    bail!("no free loopback port below 55536")
}

impl RedisServer {
    /// Starts `redis-server` from `PATH` on a free loopback port.
    pub fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(ServerOptions::default())
    }

    /// Starts `redis-server` from `PATH` on a free loopback port, configured by `options`.
    pub fn start_with(options: ServerOptions) -> anyhow::Result<RedisServer> {
        let mut server = RedisServer {
            port: free_port()?,
            dir: tempfile::tempdir().context("creating a directory for redis-server")?,
            child: None,
            options,
        };
        server.restart()?;
        Ok(server)
    }

    /// Starts the process (again) on the same port and directory. A
    /// `dump.rdb` left there by an explicit `SAVE` is loaded.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(self.options.args(self.port))
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting redis-server: it must be on PATH (Debian: apt-get install redis-server), \
                 or pass --redis URL to use a running server",
            )?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "redis-server exited at start ({status}) on port {}",
                    self.port
                );
            }
            if Instant::now() > deadline {
                bail!("redis-server did not accept connections within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port`, or `rediss://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
