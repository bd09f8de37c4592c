//! `/readyz` as a load balancer and a stranger see it, against the real
//! `serve` binary and a real Redis that the test stops: counts only, no
//! campaign ids, no driver error text; the per-campaign cache state is
//! behind the admin token at `/v1/cache`.

mod common;

use std::time::{Duration, Instant};

use chrono::{Duration as Span, Utc};
use common::serve::Serve;
use common::{ADMIN, RedisServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHECK: &str = "reader-token-0123456789";
const CAMPAIGN: &str = "secret-spring-promo";

/// Words a driver or OS error would carry; none may reach a client.
const DRIVER_WORDS: &[&str] = &[
    "refused",
    "IoError",
    "broken pipe",
    "os error",
    "Connection",
    "reset by peer",
    "timed out",
    "PING",
];

async fn get(base: &str, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn assert_leaks_nothing(body: &str) {
    assert!(!body.contains(CAMPAIGN), "a campaign id leaked: {body}");
    for word in DRIVER_WORDS {
        assert!(
            !body.to_lowercase().contains(&word.to_lowercase()),
            "driver text {word:?} leaked: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gives_counts_only_and_keeps_a_warm_cache_in_service_through_an_outage() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let env = [("GUESTLIST_CHECK_TOKEN", CHECK)];
    let mut cached = Serve::start_with("ready-cached", Some(&url), &[], &env);
    let mut direct = Serve::start_with("ready-direct", Some(&url), &["--near-cache", "off"], &env);
    cached.wait_ready().await;
    direct.wait_ready().await;

    let now = Utc::now();
    let created = reqwest::Client::new()
        .post(format!("{}/v1/campaigns", cached.base))
        .bearer_auth(ADMIN)
        .json(&json!({
            "id": CAMPAIGN,
            "name": "Spring",
            "design": "set",
            "starts_at": (now - Span::hours(1)).to_rfc3339(),
            "ends_at": (now + Span::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // The per-campaign state is the admin's to see.
    let (status, body) = get(&cached.base, "/v1/cache", Some(CHECK)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&cached.base, "/v1/cache", Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body.contains(CAMPAIGN) {
            break;
        }
        assert!(Instant::now() < deadline, "never cached: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, body) = get(&cached.base, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_leaks_nothing(&body);
    let ready = json(&body);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store_reachable"], true);
    assert_eq!(ready["near_cache"]["campaigns"], 1, "{body}");

    redis.kill();

    // No near-cache: nothing can answer, so out of service, and the reason
    // is a fixed code, not the driver's words.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = get(&direct.base, "/readyz", None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_leaks_nothing(&body);
    let unready = json(&body);
    assert_eq!(unready["error"], "store_unavailable", "{body}");
    assert_eq!(unready["store_reachable"], false, "{body}");

    // A warm cache that serves stale answers by policy keeps the instance in.
    let (status, body) = get(&cached.base, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_leaks_nothing(&body);
    assert_eq!(json(&body)["store_reachable"], false, "{body}");

    // The driver's reason is in the log, where an operator looks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !direct.log_text().contains("store is not ready") {
        assert!(
            Instant::now() < deadline,
            "not logged: {}",
            direct.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
