//! The admin portal driven end to end in Debian's headless Chromium
//! (`/usr/bin/chromium`, via playwright-core from npm) against a real
//! `guestlist serve` on the embedded store. The steps are in
//! `tests/browser/portal.mjs`; screenshots land in `target/portal-screenshots/`.
//!
//! Needs `chromium` (Debian package) and Node.js; the npm dependency is
//! installed from `tests/browser/package-lock.json` on first run. Set
//! `GUESTLIST_SKIP_BROWSER_TEST=1` to skip it on a machine without them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "portal-browser-test-token";

/// Stops the server even when the test fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(base: &str, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    guestlist::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("guestlist serve exited early: {status}");
        }
        let probe = client.get(format!("{base}/healthz")).send().await;
        if probe.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn npm_install(dir: &Path) {
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        // Debian's chromium is the browser; never let a tool fetch its own.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .expect("running npm (install Node.js and npm)");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

#[tokio::test]
async fn an_administrator_runs_a_campaign_through_the_portal() {
    if std::env::var_os("GUESTLIST_SKIP_BROWSER_TEST").is_some() {
        eprintln!("GUESTLIST_SKIP_BROWSER_TEST is set: skipping the browser test");
        return;
    }
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the portal browser test needs Debian's chromium: apt-get install chromium \
         (or set GUESTLIST_SKIP_BROWSER_TEST=1)"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    npm_install(&browser_dir);

    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let base = format!(
        "http://127.0.0.1:{}",
        guestlist::redis_server::free_port().unwrap()
    );
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_guestlist"))
            .args(["serve", "--listen", base.trim_start_matches("http://")])
            .arg("--store")
            .arg(data.path().join("store"))
            .env("GUESTLIST_ADMIN_TOKENS", format!("alice:{TOKEN}"))
            .env_remove("GUESTLIST_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting guestlist serve"),
    );
    wait_healthy(&base, &mut server).await;

    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("portal-screenshots");
    let output = Command::new("node")
        .arg(browser_dir.join("portal.mjs"))
        .current_dir(&browser_dir)
        .env("BASE_URL", &base)
        .env("ADMIN_TOKEN", TOKEN)
        .env("WORK_DIR", work.path())
        .env("SHOT_DIR", &shots)
        .output()
        .expect("running node (install Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}"
    );
    for name in [
        "01-signin",
        "03-campaign-uploaded",
        "05d-csv-column-preview",
        "06-campaigns",
        "09-audit",
    ] {
        let shot = shots.join(format!("{name}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 10_000, "{} missing or empty", shot.display());
    }
}
