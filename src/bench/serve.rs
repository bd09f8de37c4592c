//! A real `guestlist serve` for the `--via http` runs: this same binary,
//! on a free loopback port, over the bench's Redis and key prefix, killed
//! when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::store::redis::ConnectOptions;

/// How the server under test is started.
pub(super) struct ServeSpec<'a> {
    pub(super) redis_url: &'a str,
    pub(super) key_prefix: &'a str,
    pub(super) near_cache: bool,
    /// The server's own deadline for a store check: the bench's, so the
    /// server does not give up before the client does.
    pub(super) check_timeout: Duration,
    pub(super) connect: &'a ConnectOptions,
}

pub(super) struct Served {
    child: Child,
    pub(super) base: String,
}

impl Served {
    /// Starts the server and waits until `/readyz` answers 200.
    pub(super) async fn start(spec: &ServeSpec<'_>) -> anyhow::Result<Served> {
        // The HTTP clients that drive the server need rustls' provider.
        crate::tls::install_crypto_provider();
        let exe = std::env::current_exe().context("finding the guestlist binary")?;
        let port = crate::redis_server::free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", &listen, "--store", spec.redis_url])
            .args(["--redis-key-prefix", spec.key_prefix])
            .args(["--near-cache", if spec.near_cache { "on" } else { "off" }])
            .arg("--check-timeout")
            .arg(format!("{}ms", spec.check_timeout.as_millis().max(1)));
        for (flag, path) in [
            ("--redis-ca-file", &spec.connect.ca_file),
            ("--redis-client-cert", &spec.connect.client_cert),
            ("--redis-client-key", &spec.connect.client_key),
        ] {
            if let Some(path) = path {
                cmd.arg(flag).arg(path);
            }
        }
        // The bench writes through its own store connection; the server
        // only answers checks, so its admin token is random and unused. A
        // Redis password reaches it through the inherited environment.
        let child = cmd
            .env(
                "GUESTLIST_ADMIN_TOKEN",
                format!("{:032x}", rand::random::<u128>()),
            )
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .env_remove("GUESTLIST_LISTEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting guestlist serve")?;
        let mut served = Served {
            child,
            base: format!("http://{listen}"),
        };
        served.wait_ready().await?;
        Ok(served)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("guestlist serve exited ({status}) before it was ready");
            }
            let ready = client.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("guestlist serve at {} was not ready within 60 s", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
