//! A private `redis-server` process: loopback only, no persistence, its own
//! temporary directory, killed on drop. The benchmark starts one when no
//! `--redis` is given, and the integration tests start one per test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
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
        let mut server = RedisServer {
            port: free_port()?,
            dir: tempfile::tempdir().context("creating a directory for redis-server")?,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// Starts the process (again) on the same port and directory. A
    /// `dump.rdb` left there by an explicit `SAVE` is loaded.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
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

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
