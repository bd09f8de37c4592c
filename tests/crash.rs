//! A writer killed with SIGKILL in the middle of a big replace: the old
//! audience keeps answering, the campaign takes a new write within the
//! lease, and nothing it staged outlives its TTL.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::serve::Serve;
use common::{ADMIN, Backend, Harness, RedisServer, lines, test_options};
use guestlist::store::Store;
use guestlist::store::redis::RedisStore;

/// `staged` is a redis-cli command whose output is neither empty nor `0`
/// once the replace is staging.
async fn crash_mid_replace(design: Backend, staged: &[&str]) {
    let server = RedisServer::start();
    let mut writer = Serve::start(
        &format!("crash-{design:?}"),
        &server.url(),
        &["--near-cache", "off"],
    );
    writer.wait_ready().await;
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let other = Harness::over(store, design);
    other.active("c").await;
    other.replace("c", &[1, 2, 3]).await;

    let body = lines(&(10..1_000_010).collect::<Vec<_>>());
    let url = format!("{}/v1/campaigns/c/audience", writer.base);
    let upload = tokio::spawn(async move {
        reqwest::Client::new()
            .put(url)
            .bearer_auth(ADMIN)
            .header("content-type", "text/plain")
            .body(body)
            .send()
            .await
            .map(|r| r.status())
    });
    // Kill it once it is well into staging.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server.cli(staged);
        if !out.trim().is_empty() && out.trim() != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replace never started staging"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    writer.kill();
    let killed = Instant::now();
    let outcome = upload.await.unwrap();
    assert!(outcome.is_err(), "the killed writer answered: {outcome:?}");

    // The old audience answers, exactly.
    assert_eq!(other.export("c").await, vec![1, 2, 3]);
    assert!(other.is_member("c", 2).await);
    assert!(!other.is_member("c", 500_000).await);
    assert_eq!(other.campaign("c").await["version"], 1);

    // Every key the dead writer staged carries an expiry.
    for key in server
        .cli(&["--scan", "--pattern", "guestlist:{c}:*"])
        .lines()
    {
        let ttl: i64 = server.cli(&["TTL", key]).trim().parse().unwrap();
        assert!(
            ttl > 0 && ttl <= 7 * 24 * 3600 + 86_400 * 2,
            "{key} has TTL {ttl}"
        );
        if key.contains("staging") || key.contains(":lock") {
            assert!(ttl <= 3_600, "{key} outlives the staging TTL: {ttl}");
        }
    }

    // The dead writer's lease runs out; then the campaign takes writes.
    loop {
        let (status, body) = other
            .upload("c", "replace", "text/plain", lines(&[9]))
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            killed.elapsed() < Duration::from_secs(35),
            "the campaign stayed locked for {:?} after its writer died",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        killed.elapsed() > Duration::from_secs(5),
        "the lease of a dead writer should still hold for a while"
    );
    assert_eq!(other.export("c").await, vec![9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_writer_killed_mid_replace_changes_nothing_and_frees_the_campaign() {
    crash_mid_replace(
        Backend::RedisSet,
        &["--scan", "--pattern", "guestlist:{c}:staging:*"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_writer_killed_mid_replace_changes_nothing_and_frees_the_campaign() {
    // User 20,000's key appears only once staging is a few round trips in.
    crash_mid_replace(
        Backend::RedisPerUser,
        &["EXISTS", "guestlist:user:{20000}:campaigns"],
    )
    .await;
}
