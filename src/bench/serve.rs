//! A real `guestlist serve` as a child process, for measurements through
//! HTTP: the same binary, flags and code path a deployment runs.
//!
//! The server listens on a free loopback port, reads its store URL and admin
//! token from its environment (never its argv, which every user of the
//! machine can read), logs to a file in a private temp directory, and is
//! killed when the [`Serve`] is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The `--store` URL, given to the child as `GUESTLIST_STORE`.
    pub store: String,
    /// Answer checks from the in-process near-cache (`--near-cache`).
    pub near_cache: bool,
    /// Further flags, e.g. `--upload-pacing off`.
    pub extra_args: Vec<String>,
    /// The binary to run; the running one when `None` (tests pass
    /// `env!("CARGO_BIN_EXE_guestlist")`).
    pub exe: Option<PathBuf>,
    /// How long the server may take to answer `/readyz` with 200.
    pub ready_within: Duration,
}

impl ServeOptions {
    pub fn new(store: impl Into<String>) -> ServeOptions {
        ServeOptions {
            store: store.into(),
            near_cache: false,
            extra_args: Vec::new(),
            exe: None,
            ready_within: Duration::from_secs(30),
        }
    }
}

/// A running `guestlist serve`, killed on drop.
pub struct Serve {
    child: Child,
    addr: std::net::SocketAddr,
    admin_token: String,
    log: PathBuf,
    /// Holds the log file's directory until the server is gone.
    _dir: tempfile::TempDir,
}

impl Serve {
    /// Starts the server and waits until it reports ready.
    pub async fn start(options: &ServeOptions) -> anyhow::Result<Serve> {
        let exe = match &options.exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("finding the guestlist binary")?,
        };
        let port = crate::redis_server::free_port()?;
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = tempfile::tempdir().context("creating a directory for the server's log")?;
        let log = dir.path().join("serve.log");
        let admin_token = format!("bench-{:032x}", rand::random::<u128>());
        let near_cache = if options.near_cache { "on" } else { "off" };
        let child = Command::new(&exe)
            .args(["serve", "--listen", &addr.to_string()])
            .args(["--near-cache", near_cache])
            .args(&options.extra_args)
            .env("GUESTLIST_STORE", &options.store)
            .env("GUESTLIST_ADMIN_TOKEN", &admin_token)
            .env_remove("GUESTLIST_ADMIN_TOKENS")
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).context("creating the server's log")?)
            .spawn()
            .with_context(|| format!("starting {} serve", exe.display()))?;
        let mut serve = Serve {
            child,
            addr,
            admin_token,
            log,
            _dir: dir,
        };
        serve.wait_ready(options.ready_within).await?;
        Ok(serve)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The admin token the server was started with.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// What the server wrote to its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.base_url());
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "guestlist serve exited at start ({status}):\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "guestlist serve was not ready within {within:?}:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
