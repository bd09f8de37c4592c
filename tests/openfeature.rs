//! The OpenFeature provider against real backends: a `guestlist serve`
//! process over HTTP (and the example login service run against it), and
//! the library's near-cache over a real Redis. Each reason and error code
//! of the provider is produced the way it happens in production.

mod common;

use std::time::{Duration, Instant};

use common::serve::Serve;
use common::{ADMIN, RedisServer, lines};
use guestlist::client::{Client, ClientOptions};
use guestlist::nearcache::StalePolicy;
use guestlist::openfeature::GuestlistProvider;
use open_feature::provider::{FeatureProvider, ProviderStatus, ResolutionDetails};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, EvaluationResult};
use serde_json::json;

fn user(id: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(id)
}

/// The value, reason and variant of a resolution.
fn said(r: EvaluationResult<ResolutionDetails<bool>>) -> (bool, String, String) {
    let r = r.unwrap_or_else(|e| panic!("resolution failed: {e:?}"));
    (
        r.value,
        r.reason.map(|r| r.to_string()).unwrap_or_default(),
        r.variant.unwrap_or_default(),
    )
}

fn code(r: EvaluationResult<ResolutionDetails<bool>>) -> EvaluationErrorCode {
    match r {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e.code,
    }
}

/// Creates `id` through the API, active or starting tomorrow, holding `ids`.
async fn campaign(base: &str, id: &str, active: bool, ids: &[u64]) {
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    let starts = if active {
        now - chrono::Duration::hours(1)
    } else {
        now + chrono::Duration::days(1)
    };
    let r = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": id, "name": id, "starts_at": starts.to_rfc3339(), "ends_at": (now + chrono::Duration::days(7)).to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .put(format!("{base}/v1/campaigns/{id}/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(lines(ids))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_each_answer_and_failure_has_its_reason_or_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start("openfeature", dir.path().to_str().unwrap(), &[]);
    serve.wait_ready().await;
    campaign(&serve.base, "spring-sale", true, &[42, 7]).await;
    campaign(&serve.base, "winter-sale", false, &[42]).await;

    // A server never reached: not ready (and the status says why), each
    // evaluation trying again.
    let closed = format!(
        "http://127.0.0.1:{}",
        guestlist::redis_server::free_port().unwrap()
    );
    let nowhere = GuestlistProvider::http(&closed, None).unwrap();
    assert!(!nowhere.start().await);
    assert_eq!(nowhere.status(), ProviderStatus::Error);
    for _ in 0..2 {
        assert_eq!(
            code(nowhere.resolve_bool_value("spring-sale", &user("42")).await),
            EvaluationErrorCode::ProviderNotReady
        );
    }
    // Not started, a reachable server answers, and the provider is ready.
    let unstarted = GuestlistProvider::http(&serve.base, None).unwrap();
    assert_eq!(unstarted.status(), ProviderStatus::NotReady);
    let answer = unstarted
        .resolve_bool_value("spring-sale", &user("42"))
        .await;
    assert!(said(answer).0, "user 42 is in spring-sale");
    assert_eq!(unstarted.status(), ProviderStatus::Ready);

    let p = GuestlistProvider::http(&serve.base, None).unwrap();
    assert!(p.start().await);
    let ask = |flag: &'static str, key: &'static str| {
        let p = &p;
        async move { p.resolve_bool_value(flag, &user(key)).await }
    };
    // The embedded store answers: no cache in between.
    assert_eq!(
        said(ask("spring-sale", "42").await),
        (true, "TARGETING_MATCH".into(), "member".into())
    );
    assert_eq!(
        said(ask("spring-sale", "5").await),
        (false, "DEFAULT".into(), "not_member".into())
    );
    assert_eq!(
        said(ask("winter-sale", "42").await),
        (false, "STATIC".into(), "inactive".into())
    );
    assert_eq!(
        code(ask("autumn-sale", "42").await),
        EvaluationErrorCode::FlagNotFound
    );
    assert_eq!(
        code(ask("spring-sale", "forty-two").await),
        EvaluationErrorCode::InvalidContext
    );
    // A campaign of string IDs: the targeting key as it is, a `/` and a
    // `+` included, compared exactly.
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    let r = http
        .post(format!("{}/v1/campaigns", serve.base))
        .bearer_auth(ADMIN)
        .json(
            &json!({"id": "vip", "name": "vip", "user_id_type": "string",
            "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::days(1)).to_rfc3339()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .put(format!("{}/v1/campaigns/vip/audience", serve.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("bob+vip@example.com\nteam/ops\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (key, member) in [
        ("bob+vip@example.com", true),
        ("team/ops", true),
        ("Bob+vip@example.com", false),
    ] {
        assert_eq!(said(ask("vip", key).await).0, member, "{key}");
    }
    assert_eq!(
        code(
            p.resolve_bool_value("spring-sale", &EvaluationContext::default())
                .await
        ),
        EvaluationErrorCode::TargetingKeyMissing
    );
    let as_int = p.resolve_int_value("spring-sale", &user("42")).await;
    assert_eq!(as_int.unwrap_err().code, EvaluationErrorCode::TypeMismatch);

    // The example login service, run as the README shows.
    // Examples are built next to the tests: target/<profile>/examples.
    let deps = std::env::current_exe().unwrap();
    let example = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/openfeature");
    for (args, want) in [
        (
            ["spring-sale", "42"],
            "spring-sale for user 42: true (TARGETING_MATCH, member)",
        ),
        (
            ["spring-sale", "5"],
            "spring-sale for user 5: false (DEFAULT, not_member)",
        ),
        (
            ["winter-sale", "42"],
            "winter-sale for user 42: false (STATIC, inactive)",
        ),
        (
            ["autumn-sale", "42"],
            "autumn-sale for user 42: false (ERROR, FLAG_NOT_FOUND",
        ),
    ] {
        let out = std::process::Command::new(&example)
            .args(args)
            .env("GUESTLIST_SERVER", &serve.base)
            .env_remove("GUESTLIST_CHECK_TOKEN")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running {}: {e} (`cargo test` builds the examples; with --test alone, run `cargo build --examples` first)",
                    example.display()
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with(want), "{args:?}: {stdout}");
    }

    // The server goes away after the provider started: a general error,
    // which the SDK turns into the caller's default.
    serve.kill();
    match code(ask("spring-sale", "42").await) {
        EvaluationErrorCode::General(message) => {
            assert!(message.contains("did not answer"), "{message}")
        }
        other => panic!("expected GENERAL, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_answers_are_cached_then_stale_through_an_outage() {
    let redis = RedisServer::start();
    let mut serve = Serve::start("openfeature-redis", &redis.url(), &["--near-cache", "off"]);
    serve.wait_ready().await;
    campaign(&serve.base, "spring-sale", true, &[42, 7]).await;

    let options = ClientOptions {
        max_staleness: Duration::from_millis(500),
        on_stale: StalePolicy::Serve,
        check_timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let client = Client::connect(&redis.url(), options).await.unwrap();
    let p = GuestlistProvider::library(client);
    assert_eq!(
        code(p.resolve_bool_value("spring-sale", &user("42")).await),
        EvaluationErrorCode::ProviderNotReady,
        "not started"
    );
    assert!(p.start().await);
    assert_eq!(p.status(), ProviderStatus::Ready);
    assert_eq!(
        said(p.resolve_bool_value("spring-sale", &user("42")).await),
        (true, "CACHED".into(), "member".into())
    );
    assert_eq!(
        said(p.resolve_bool_value("spring-sale", &user("5")).await),
        (false, "CACHED".into(), "not_member".into())
    );
    assert_eq!(
        code(p.resolve_bool_value("autumn-sale", &user("42")).await),
        EvaluationErrorCode::FlagNotFound
    );

    // Redis stops answering: past the staleness bound the cached copy still
    // answers, said to be stale.
    redis.signal("STOP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        let r = said(p.resolve_bool_value("spring-sale", &user("42")).await);
        if r.1 != "CACHED" {
            break r;
        }
        assert!(Instant::now() < deadline, "never stale");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    redis.signal("CONT");
    assert_eq!(
        stale,
        (
            true,
            EvaluationReason::Other("STALE".into()).to_string(),
            "member".into()
        )
    );
}
