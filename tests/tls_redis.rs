//! Redis over TLS, end to end: `guestlist serve --store rediss://…` against a
//! TLS-only `redis-server` whose CA, server and client certificates the test
//! made. The whole contract suite also runs over TLS (`contract.rs`,
//! `redis_tls`); here are the flags, client certificates and failures.

mod common;

use std::time::Duration;

use common::ADMIN;
use common::serve::Serve;
use common::tls::Pki;
use guestlist::store::redis::{ConnectOptions, Keys, RedisStore};
use guestlist::store::{Store, StoreError, StoreOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Whether a store over `connect` answers, or the error's full text; a
/// deadline turns a hang into a failure.
async fn readiness(url: &str, connect: &ConnectOptions) -> Result<(), String> {
    // Longer than the connection's retries, so the TLS error itself comes
    // back rather than a timeout.
    let options = StoreOptions {
        check_timeout: Duration::from_secs(10),
        ..common::test_options()
    };
    let store = RedisStore::open(url, connect, options, Keys::default())
        .await
        .unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(15), store.ready())
        .await
        .expect("a TLS failure must be an error, not a hang");
    ready.map_err(|e: StoreError| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_happy_path_over_rediss_with_a_private_ca() {
    let pki = Pki::new();
    let redis = pki.redis(false);
    assert!(redis.url().starts_with("rediss://"));
    let ca = pki.path("ca.pem");
    let mut s = Serve::start(
        "tls-happy-path",
        &redis.url(),
        &["--redis-ca-file", ca.to_str().unwrap()],
    );
    s.wait_ready().await;

    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", s.base);
    let r = http
        .post(url("/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "id": "tls-sale",
            "name": "TLS sale",
            "starts_at": "2020-01-01T00:00:00Z",
            "ends_at": "2099-01-01T00:00:00Z",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = http
        .put(url("/v1/campaigns/tls-sale/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("30\n10\n20\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth(ADMIN).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    for (user, member) in [(10, true), (20, true), (11, false)] {
        let (status, body) = get(url(&format!("/v1/campaigns/tls-sale/members/{user}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["member"], member, "user {user}: {body}");
    }
    let (_, body) = get(url("/v1/users/20/campaigns")).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["campaigns"], json!(["tls-sale"]), "{body}");
    let (status, export) = get(url("/v1/campaigns/tls-sale/audience")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export.lines().collect::<Vec<_>>(), ["10", "20", "30"]);

    let r = http
        .delete(url("/v1/campaigns/tls-sale"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = get(url("/v1/campaigns/tls-sale")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_private_ca_the_connection_fails_with_a_certificate_error() {
    let pki = Pki::new();
    let redis = pki.redis(false);

    // The system roots do not know the test CA; neither does another CA.
    let e = readiness(&redis.url(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let other = ConnectOptions {
        ca_file: Some(pki.path("other-ca.pem")),
        ..ConnectOptions::default()
    };
    let e = readiness(&redis.url(), &other).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    assert_eq!(
        readiness(&redis.url(), &pki.connect_options(false)).await,
        Ok(())
    );

    // The service starts (Redis may come later) but is never ready, and its
    // log says why.
    let mut s = Serve::start("tls-no-ca", &redis.url(), &[]);
    assert!(!s.becomes_ready(Duration::from_secs(3)).await);
    let log = s.log_text();
    assert!(log.contains("certificate"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_client_certificates_gets_one_from_the_flags() {
    let pki = Pki::new();
    let redis = pki.redis(true);

    assert!(
        readiness(&redis.url(), &pki.connect_options(false))
            .await
            .is_err()
    );
    assert_eq!(
        readiness(&redis.url(), &pki.connect_options(true)).await,
        Ok(())
    );

    // The paths also come from the environment.
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client-key.pem"),
    );
    let mut s = Serve::start_with(
        "tls-client-cert",
        Some(&redis.url()),
        &["--redis-ca-file", ca.to_str().unwrap()],
        &[
            ("GUESTLIST_REDIS_CLIENT_CERT", cert.to_str().unwrap()),
            ("GUESTLIST_REDIS_CLIENT_KEY", key.to_str().unwrap()),
        ],
    );
    s.wait_ready().await;
    drop(s);
    let mut s = Serve::start(
        "tls-no-client-cert",
        &redis.url(),
        &["--redis-ca-file", ca.to_str().unwrap()],
    );
    assert!(!s.becomes_ready(Duration::from_secs(3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_files_with_a_plain_url_are_refused_at_start() {
    let redis = common::RedisServer::start();
    let pki = Pki::new();
    let e = RedisStore::open(
        &redis.url(),
        &pki.connect_options(false),
        common::test_options(),
        Keys::default(),
    )
    .await
    .err()
    .expect("a CA file with redis:// is a mistake");
    assert!(e.to_string().contains("rediss://"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_measures_a_tls_redis_with_the_same_options() {
    use guestlist::bench::{BenchDesign, Plan, run_with};
    let pki = Pki::new();
    let redis = pki.redis(false);
    let plan = Plan {
        designs: vec![
            BenchDesign::Json,
            BenchDesign::Store(guestlist::domain::Design::Set),
        ],
        audiences: vec![500],
        concurrency: vec![2],
        modes: vec![guestlist::bench::Mode::Closed],
        duration: Duration::from_millis(200),
        warmup: Duration::from_millis(100),
        seed: 7,
        ..Plan::default()
    };
    let results = run_with(
        &redis.url(),
        &pki.connect_options(false),
        &plan,
        "test".into(),
    )
    .await
    .unwrap();
    assert_eq!(results.runs.len(), 2);
    for r in &results.runs {
        assert!(r.checks > 0 && r.errors == 0, "{r:?}");
    }
}
