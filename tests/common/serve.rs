//! A real `guestlist serve` process on a free loopback port, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ADMIN;

pub struct Serve {
    child: Child,
    pub base: String,
    log: std::path::PathBuf,
}

impl Serve {
    /// Starts `serve` on `store` with the admin token [`ADMIN`], no check
    /// token, and `extra` flags; its log goes to a file named after `name`
    /// in the temp directory, kept so a failure can be read.
    pub fn start(name: &str, store: &str, extra: &[&str]) -> Serve {
        Self::start_with_env(name, store, extra, &[])
    }

    /// [`Serve::start`] with extra environment variables (secrets among them).
    pub fn start_with_env(name: &str, store: &str, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let port = guestlist::redis_server::free_port().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("guestlist-test-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_guestlist"))
            .args(["serve", "--listen", &listen, "--store", store])
            .args(extra)
            .env("GUESTLIST_ADMIN_TOKEN", ADMIN)
            .env_remove("GUESTLIST_ADMIN_TOKENS")
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting guestlist serve");
        Serve {
            child,
            base: format!("http://{listen}"),
            log,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "guestlist serve exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within 20 s; see {}",
                self.base,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
