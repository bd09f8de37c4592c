//! A real `guestlist serve` process on a free loopback port, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ADMIN;

pub struct Serve {
    child: Child,
    pub base: String,
    log: std::path::PathBuf,
    /// Trusts the server's CA when it serves HTTPS.
    http: reqwest::Client,
}

impl Serve {
    /// Starts `serve` on `store` with the admin token [`ADMIN`], no check
    /// token, and `extra` flags; its log goes to a file named after `name`
    /// in the temp directory, kept so a failure can be read.
    pub fn start(name: &str, store: &str, extra: &[&str]) -> Serve {
        Self::start_with(name, Some(store), extra, &[])
    }

    /// Like [`Serve::start`], with `--store` only when `store` is given and
    /// with `envs` set (e.g. `GUESTLIST_STORE`, a password variable).
    pub fn start_with(
        name: &str,
        store: Option<&str>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Serve {
        let port = guestlist::redis_server::free_port().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("guestlist-test-{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_guestlist"));
        cmd.args(["serve", "--listen", &listen]);
        if let Some(store) = store {
            cmd.args(["--store", store]);
        }
        let child = cmd
            .args(extra)
            .env("GUESTLIST_ADMIN_TOKEN", ADMIN)
            .env_remove("GUESTLIST_ADMIN_TOKENS")
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting guestlist serve");
        guestlist::tls::install_crypto_provider();
        Serve {
            child,
            base: format!("http://{listen}"),
            log,
            http: reqwest::Client::new(),
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// For a server started with `--tls-cert/--tls-key`: its base URL is
    /// `https://`, and readiness is checked trusting only `ca_pem`.
    pub fn https(mut self, ca_pem: &str) -> Serve {
        self.base = self.base.replacen("http://", "https://", 1);
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
        self.http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        self
    }

    /// The text body of `GET path` with the admin token.
    pub async fn admin_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(super::ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        assert!(
            self.becomes_ready(Duration::from_secs(20)).await,
            "{} not ready within 20 s; see {}",
            self.base,
            self.log.display()
        );
    }

    /// Whether `/readyz` answers 200 within `timeout`; panics if the
    /// process exits first.
    pub async fn becomes_ready(&mut self, timeout: Duration) -> bool {
        let http = self.http.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "guestlist serve exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; `None` if
    /// it is still running then.
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The process id, to read what `ps` shows of it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}
