//! `--store` as the `guestlist serve` binary reads it: a directory or a Redis
//! URL guestlist supports, anything else refused before anything is created;
//! and the Redis password kept off the command line.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::serve::Serve;

/// Runs `guestlist serve` with `args` in `cwd` and returns its output, or
/// panics if it is still running after 20 s (it started serving).
fn serve_exits(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_guestlist"))
        .current_dir(cwd)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("GUESTLIST_STORE")
        .env_remove("GUESTLIST_REDIS_PASSWORD")
        .env_remove("GUESTLIST_REDIS_PASSWORD_FILE")
        .envs(envs.iter().copied())
        .env("GUESTLIST_ADMIN_TOKEN", common::ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting guestlist serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve {args:?} kept running; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn unknown_url_schemes_are_refused_and_create_nothing() {
    for store in [
        "ftp://x",
        "redis+clsuter://x",
        "redis+cluster://127.0.0.1:7000,,127.0.0.1:7001",
        "redis+cluster://127.0.0.1:7000/2",
        "http://127.0.0.1:6379",
        "redis:/127.0.0.1",
        "",
        // A stray space from an env file, which once became a directory.
        " redis://127.0.0.1:6379",
        "./data ",
    ] {
        let cwd = tempfile::tempdir().unwrap();
        let out = serve_exits(cwd.path(), &["--store", store], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store:?} was accepted: {stderr}");
        assert!(
            stderr.contains("--store")
                && stderr.contains("redis://")
                && stderr.contains("rediss://"),
            "{store:?}: the error should list the accepted forms: {stderr}"
        );
        assert!(
            entries(cwd.path()).is_empty(),
            "{store:?} created {:?}",
            entries(cwd.path())
        );
    }
}

#[test]
fn a_malformed_cluster_url_says_what_a_cluster_url_takes() {
    let cwd = tempfile::tempdir().unwrap();
    let out = serve_exits(
        cwd.path(),
        &["--store", "redis+cluster://127.0.0.1:7000/1"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("a cluster has only database 0")
            && stderr.contains("redis+cluster://host:port[,host:port"),
        "{stderr}"
    );
    assert!(entries(cwd.path()).is_empty());
}

#[test]
fn reading_from_replicas_needs_a_cluster() {
    let cwd = tempfile::tempdir().unwrap();
    let out = serve_exits(
        cwd.path(),
        &["--store", "redis://127.0.0.1:1", "--read-from-replicas"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--read-from-replicas needs a redis+cluster://"),
        "{stderr}"
    );
}

#[test]
fn a_password_in_a_store_flag_is_refused_without_echoing_it() {
    let cwd = tempfile::tempdir().unwrap();
    let out = serve_exits(
        cwd.path(),
        &["--store", "redis://app:flag-hunter2@127.0.0.1:1"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("GUESTLIST_REDIS_PASSWORD"), "{stderr}");
    assert!(
        !stderr.contains("flag-hunter2"),
        "the password leaked: {stderr}"
    );
    assert!(entries(cwd.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_comes_from_the_environment_or_a_file() {
    let redis = guestlist::redis_server::RedisServer::start_with(
        guestlist::redis_server::ServerOptions::default().config("requirepass", "env-hunter2"),
    )
    .unwrap();
    let plain = redis.url();
    let with_password = plain.replace("redis://", "redis://:env-hunter2@");
    let secret_dir = tempfile::tempdir().unwrap();
    let file = secret_dir.path().join("redis-password");
    std::fs::write(&file, "env-hunter2\n").unwrap();
    let file = file.to_str().unwrap();

    // In GUESTLIST_STORE (not argv), a URL's password is allowed.
    let mut s = Serve::start_with(
        "password-in-store-env",
        None,
        &[],
        &[("GUESTLIST_STORE", &with_password)],
    );
    s.wait_ready().await;
    drop(s);
    let mut s = Serve::start_with(
        "password-env",
        Some(&plain),
        &[],
        &[("GUESTLIST_REDIS_PASSWORD", "env-hunter2")],
    );
    s.wait_ready().await;
    assert!(!s.log_text().contains("env-hunter2"), "{}", s.log_text());
    drop(s);
    let mut s = Serve::start_with(
        "password-file",
        Some(&plain),
        &[],
        &[("GUESTLIST_REDIS_PASSWORD_FILE", file)],
    );
    s.wait_ready().await;
    drop(s);

    // A wrong password is refused by Redis: never ready, and never shown.
    let mut s = Serve::start_with(
        "password-wrong",
        Some(&plain),
        &[],
        &[("GUESTLIST_REDIS_PASSWORD", "wrong-hunter3")],
    );
    assert!(!s.becomes_ready(Duration::from_secs(3)).await);
    assert!(!s.log_text().contains("wrong-hunter3"), "{}", s.log_text());
}

#[test]
fn a_password_in_both_the_url_and_the_environment_is_refused() {
    let cwd = tempfile::tempdir().unwrap();
    let out = serve_exits(
        cwd.path(),
        &[],
        &[
            ("GUESTLIST_STORE", "redis://:one-hunter2@127.0.0.1:1"),
            ("GUESTLIST_REDIS_PASSWORD", "two-hunter2"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("GUESTLIST_REDIS_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "a password leaked: {stderr}");
}
