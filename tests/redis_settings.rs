//! `guestlist serve` warns at start-up about Redis settings that stall logins,
//! and only about those.

mod common;

use std::time::{Duration, Instant};

use common::serve::Serve;
use guestlist::redis_server::{RedisServer, ServerOptions};

fn well_configured() -> ServerOptions {
    ServerOptions::default()
        .config("lazyfree-lazy-expire", "yes")
        .config("lazyfree-lazy-user-del", "yes")
        .config("maxmemory", "256mb")
        .config("maxmemory-policy", "noeviction")
}

/// The serve log once the settings check has run (it runs in the background
/// after the store connects), or panics after 20 s.
async fn log_after_check(s: &mut Serve, marker: &str) -> String {
    s.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = s.log_text();
        if log.contains(marker) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {marker:?} in: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_lazy_user_del_is_off_and_names_nothing_else() {
    let redis =
        RedisServer::start_with(well_configured().config("lazyfree-lazy-user-del", "no")).unwrap();
    let mut s = Serve::start("settings-lazy-user-del", &redis.url(), &[]);
    let log = log_after_check(&mut s, "lazyfree-lazy-user-del is no").await;
    assert_eq!(log.matches("Redis setting:").count(), 1, "{log}");
    assert!(log.contains("set lazyfree-lazy-user-del yes"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_eviction_can_drop_campaign_data() {
    let redis =
        RedisServer::start_with(well_configured().config("maxmemory-policy", "volatile-lru"))
            .unwrap();
    let mut s = Serve::start("settings-eviction", &redis.url(), &[]);
    let log = log_after_check(&mut s, "maxmemory-policy is volatile-lru").await;
    assert_eq!(log.matches("Redis setting:").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_config_command_is_reported_as_unchecked_not_as_a_failure() {
    let redis = RedisServer::start_with(
        ServerOptions::default().config_args("rename-command", &["CONFIG", ""]),
    )
    .unwrap();
    let mut s = Serve::start_with(
        "settings-no-config",
        Some(&redis.url()),
        &[],
        &[("RUST_LOG", "info")],
    );
    let log = log_after_check(&mut s, "could not check Redis settings").await;
    assert!(!log.contains("Redis setting:"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_once_a_redis_that_was_down_at_start_comes_up() {
    let mut redis =
        RedisServer::start_with(well_configured().config("lazyfree-lazy-user-del", "no")).unwrap();
    redis.kill();
    let mut s = Serve::start("settings-late-redis", &redis.url(), &[]);
    // Long enough for a check made only at start to have given up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart().unwrap();
    let log = log_after_check(&mut s, "lazyfree-lazy-user-del is no").await;
    assert_eq!(log.matches("Redis setting:").count(), 1, "{log}");
}
