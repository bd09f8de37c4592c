//! The near-cache against a real Redis: propagation between instances,
//! outages, memory, and the library API.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{ADMIN, Backend, Harness, RedisServer, lines, test_options};
use guestlist::app::{AppState, Tokens};
use guestlist::client::{Client, ClientOptions};
use guestlist::lookup::{Checker, Source};
use guestlist::nearcache::{NearCache, NearCacheOptions, StalePolicy};
use guestlist::routes::router;
use guestlist::store::Store;
use guestlist::store::redis::RedisStore;
use serde_json::{Value, json};

/// Tests here run one at a time: they time propagation and staleness, and a
/// neighbour's million-ID load would only add noise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An instance as `serve` builds it with `--store redis://…`: a Redis store
/// plus a near-cache, behind the HTTP router.
async fn instance(url: &str, options: NearCacheOptions) -> (Harness, NearCache) {
    let redis = RedisStore::connect(url, test_options()).await.unwrap();
    let cache = NearCache::start(redis.clone(), options);
    let store: Arc<dyn Store> = Arc::new(redis);
    let mut state = AppState::new(store.clone(), Tokens::single(ADMIN), 64 << 20);
    state.checker = Checker::new(store.clone(), Some(cache.clone()));
    state.metrics = Some(guestlist::telemetry::metrics());
    let h = Harness {
        app: router(state),
        store,
        backend: Backend::RedisSet,
        redis: None,
        data_dir: None,
    };
    (h, cache)
}

async fn wait_warm(cache: &NearCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.is_warm() {
        assert!(Instant::now() < deadline, "near-cache never warmed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn member(h: &Harness, campaign: &str, user: u64) -> (StatusCode, Value) {
    h.get(&format!("/v1/campaigns/{campaign}/members/{user}"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_on_one_instance_reaches_the_other_within_a_second() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let (a, _) = instance(&server.url(), NearCacheOptions::default()).await;
    let (b, cache_b) = instance(&server.url(), NearCacheOptions::default()).await;
    a.active("promo").await;
    a.replace("promo", &[1]).await;
    wait_warm(&cache_b).await;

    let mut lags = Vec::new();
    for round in 2..12u64 {
        // Each round the audience becomes exactly {round}.
        let written = Instant::now();
        a.replace("promo", &[round]).await;
        loop {
            let (status, body) = member(&b, "promo", round).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // While B's catalog is ahead of its cache, checks go to Redis
            // (fresh); the lag measured is until the cache itself answers.
            if body["member"] == true && body["source"] == "cache" {
                // The old member is gone in the same instant.
                let (_, old) = member(&b, "promo", round - 1).await;
                assert_eq!(old["member"], false, "round {round}: {old}");
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(1),
                "round {round}: instance B still answers from the old audience after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lags.push(written.elapsed());
    }
    lags.sort();
    eprintln!(
        "propagation lag A→B over {} replaces: min {:?}, median {:?}, max {:?}",
        lags.len(),
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    let (_, metrics) = b.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("guestlist_cache_invalidation_lag_seconds_bucket"),
        "the lag histogram is exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_keeps_answering_through_an_outage_and_flags_staleness() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::start();
    let staleness = Duration::from_millis(1500);
    let serve = NearCacheOptions {
        max_staleness: staleness,
        ..NearCacheOptions::default()
    };
    let refuse = NearCacheOptions {
        max_staleness: staleness,
        on_stale: StalePolicy::Error,
        ..NearCacheOptions::default()
    };
    let (h, cache) = instance(&server.url(), serve).await;
    let (strict, strict_cache) = instance(&server.url(), refuse).await;
    h.active("promo").await;
    h.replace("promo", &[10, 20]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.is_member("promo", 10).is_none() || strict_cache.is_member("promo", 10).is_none() {
        assert!(Instant::now() < deadline, "caches never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.cli(&["SAVE"]);
    server.kill();
    let down = Instant::now();
    // Every check answers 200 from the last known audience, fresh then stale.
    let mut saw_stale = false;
    while down.elapsed() < staleness + Duration::from_millis(1500) {
        for (user, want) in [(10, true), (11, false)] {
            let (status, body) = member(&h, "promo", user).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["member"], want);
            assert_eq!(body["source"], "cache");
            if body["stale"] == true {
                saw_stale = true;
            } else {
                assert!(
                    down.elapsed() < staleness + Duration::from_millis(500),
                    "still fresh long after the bound: {body}"
                );
            }
        }
        let (status, body) = h.get("/v1/users/20/campaigns").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["campaigns"], serde_json::json!(["promo"]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_stale, "answers never turned stale");
    let (status, body) = member(&strict, "promo", 10).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "cache_stale");
    // Serving stale answers is within the policy, so the instance stays in
    // service; the strict one cannot answer and leaves it.
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["store_reachable"], false, "{body}");
    assert_eq!(body["near_cache"]["stale"], 1, "{body}");
    let (status, body) = strict.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = h.get("/v1/cache").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["near_cache"]["campaigns"][0]["stale"], true, "{body}");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = member(&h, "promo", 10).await;
        assert_eq!(status, StatusCode::OK);
        if body["stale"] == false {
            assert_eq!(body["member"], true);
            break;
        }
        assert!(Instant::now() < deadline, "never fresh again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while member(&strict, "promo", 10).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "strict instance never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn info_output_bytes(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_id_audience_costs_at_most_four_bytes_per_id_to_hold_and_to_load() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let (a, _) = instance(&server.url(), NearCacheOptions::default()).await;
    a.active("big").await;
    // 1,000,000 distinct pseudo-random ids below 100,000,000.
    let mut ids = roaring::RoaringTreemap::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while ids.len() < 1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids.insert(x % 100_000_000);
    }
    let list: Vec<u64> = ids.iter().collect();
    let (status, body) = a.upload("big", "replace", "text/plain", lines(&list)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A fresh instance loads it: count what Redis sends it.
    let before = info_output_bytes(&server);
    let started = Instant::now();
    let (b, cache_b) = instance(&server.url(), NearCacheOptions::default()).await;
    wait_warm(&cache_b).await;
    let loaded_in = started.elapsed();
    let sent = info_output_bytes(&server) - before;
    let per_id = sent as f64 / 1e6;
    eprintln!("reload: {sent} bytes from Redis ({per_id:.2} B/ID) in {loaded_in:?}");
    assert!(per_id <= 4.0, "{per_id} bytes per id transferred");

    let status = cache_b.status();
    assert_eq!(status.campaigns[0].ids, 1_000_000);
    let (_, text) = b.get("/metrics").await;
    let held = metric(text.as_str().unwrap(), "guestlist_cache_bytes ");
    assert!(held / 1e6 <= 4.0, "{held} bytes held for 1M ids");
    for user in list.iter().step_by(100_003) {
        let (_, body) = member(&b, "big", *user).await;
        assert_eq!(
            (body["member"].as_bool(), body["source"].as_str()),
            (Some(true), Some("cache"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_over_the_memory_budget_are_answered_by_the_store() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let tiny = NearCacheOptions {
        max_bytes: 64,
        ..NearCacheOptions::default()
    };
    let (h, cache) = instance(&server.url(), tiny).await;
    h.active("small").await;
    h.active("large").await;
    h.replace("small", &[1]).await;
    h.replace("large", &(0..50_000).map(|i| i * 7).collect::<Vec<_>>())
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.is_member("small", 1).is_none() || cache.status().skipped != 1 {
        assert!(Instant::now() < deadline, "{:?}", cache.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, small) = member(&h, "small", 1).await;
    assert_eq!(small["source"], "cache");
    let (_, large) = member(&h, "large", 7).await;
    assert_eq!(
        (large["source"].as_str(), large["member"].as_bool()),
        (Some("store"), Some(true))
    );
    // Not every campaign is cached, so "which campaigns" goes to the store.
    let (_, body) = h.get("/v1/users/1/campaigns").await;
    assert_eq!(body["source"], "store");
    assert_eq!(body["campaigns"], serde_json::json!(["small"]));
    assert_eq!(cache.status().skipped, 1);
    let (_, text) = h.get("/metrics").await;
    assert!(metric(text.as_str().unwrap(), "guestlist_cache_skipped_campaigns ") >= 1.0);
}

/// Snowflake-style IDs: a millisecond timestamp over a year above 22 bits
/// of worker and sequence, ascending and distinct.
fn snowflakes(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut ids: Vec<u64> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((1_700_000_000_000 + x % 31_536_000_000) << 22) | (x >> 42)
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Sparse 64-bit IDs are stored compactly in Redis, and the budget counts
/// what the cache really holds: an audience whose snapshot would fit is
/// refused when its held form does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflake_ids_are_compact_and_the_budget_counts_their_real_heap() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let (a, cache_a) = instance(&server.url(), NearCacheOptions::default()).await;
    a.active("snow").await;
    let ids = snowflakes(100_000);
    let n = ids.len() as u64;
    let (status, body) = a.upload("snow", "replace", "text/plain", lines(&ids)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let key = server.cli(&["--scan", "--pattern", "*:snapshot:*"]);
    let snapshot: u64 = server.cli(&["STRLEN", key.trim()]).trim().parse().unwrap();
    eprintln!("snapshot: {:.2} bytes per ID", snapshot as f64 / n as f64);
    assert!(snapshot <= 10 * n, "{snapshot} bytes for {n} snowflakes");

    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let status = cache_a.status();
        if let Some(c) = status
            .campaigns
            .iter()
            .find(|c| c.id == "snow" && c.version == 1)
        {
            break c.bytes;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("held: {:.2} bytes per ID", held as f64 / n as f64);
    assert!(held <= 10 * n, "{held} bytes held for {n} snowflakes");
    for user in ids.iter().step_by(9_973) {
        let (_, body) = member(&a, "snow", *user).await;
        assert_eq!(
            (body["member"].as_bool(), body["source"].as_str()),
            (Some(true), Some("cache"))
        );
    }

    // A budget the snapshot fits in but the held form does not.
    assert!(snapshot < held - 1, "snapshot {snapshot}, held {held}");
    let tight = NearCacheOptions {
        max_bytes: held - 1,
        ..NearCacheOptions::default()
    };
    let (b, cache_b) = instance(&server.url(), tight).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache_b.status().skipped != 1 {
        assert!(Instant::now() < deadline, "{:?}", cache_b.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cache_b.status().campaigns.is_empty());
    let (_, body) = member(&b, "snow", ids[0]).await;
    assert_eq!(
        (body["member"].as_bool(), body["source"].as_str()),
        (Some(true), Some("store"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_client_answers_from_its_near_cache() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let h = Harness {
        redis: None,
        ..instance(&server.url(), NearCacheOptions::default()).await.0
    };
    h.active("vip").await;
    h.create("later", 1, 2).await;
    h.replace("vip", &[5, 6]).await;
    h.replace("later", &[5]).await;

    let client = Client::connect(&server.url(), ClientOptions::default())
        .await
        .unwrap();
    assert!(client.wait_until_warm(Duration::from_secs(5)).await);
    let answer = client.campaigns_for(5).await.unwrap();
    assert_eq!(answer.campaigns, ["vip"]);
    assert_eq!(answer.source, Source::Cache);
    assert!(!answer.stale);
    let m = client.is_member("vip", 6).await.unwrap();
    assert!(m.member && m.active && m.source == Source::Cache);
    assert!(!client.is_member("vip", 7).await.unwrap().member);
    let later = client.is_member("later", 5).await.unwrap();
    assert!(
        later.member && !later.active,
        "scheduled campaigns are cached too"
    );
    assert!(client.is_member("ghost", 1).await.is_err());
    let ids: Vec<String> = client
        .status()
        .campaigns
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["later", "vip"]);

    // A change made elsewhere reaches the client.
    h.replace("vip", &[7]).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !client.is_member("vip", 7).await.unwrap().member {
        assert!(
            Instant::now() < deadline,
            "the client never saw the replace"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server);
}

/// Waits until `cache` holds version 1 of `campaign`; returns its bytes.
async fn held_bytes(cache: &NearCache, campaign: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cache.status();
        if let Some(c) = status
            .campaigns
            .iter()
            .find(|c| c.id == campaign && c.version == 1)
        {
            return c.bytes;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create_typed(h: &Harness, id: &str, id_type: &str) {
    let now = chrono::Utc::now();
    let (status, body) = h
        .post_json(
            "/v1/campaigns",
            serde_json::json!({
                "id": id,
                "name": id,
                "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "design": "set",
                "user_id_type": id_type,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// String campaigns are held as keyed 128-bit fingerprints and UUID ones
/// exactly: every member is found and a million non-members are refused,
/// straight from the cache, at at most 17 bytes per ID (printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_and_uuid_campaigns_are_cached_with_no_false_answer() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let (a, cache) = instance(&server.url(), NearCacheOptions::default()).await;

    create_typed(&a, "emails", "string").await;
    let members: Vec<String> = (0..100_000)
        .map(|i| format!("user-{i:06}+{}@example.com", i % 7))
        .collect();
    let (status, body) = a
        .upload("emails", "replace", "text/plain", members.join("\n"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = held_bytes(&cache, "emails").await;
    eprintln!(
        "strings: {:.2} bytes per ID held in the near-cache",
        held as f64 / members.len() as f64
    );
    assert!(held <= 17 * members.len() as u64, "{held} bytes");
    let named = |text: &str| guestlist::ids::User::parse(text).unwrap();
    for m in &members {
        let hit = cache.is_member_named("emails", &named(m)).unwrap();
        assert!(hit.member, "{m} not found");
    }
    // Near misses (another domain, another case, another tag) and plain
    // strangers: not one is answered "member".
    let mut false_members = 0;
    for i in 0..1_000_000u32 {
        let probe = match i % 4 {
            0 => format!("user-{:06}+{}@example.org", i % 100_000, i % 7),
            1 => format!("User-{:06}+{}@example.com", i % 100_000, i % 7),
            2 => format!("user-{:06}+{}@example.com", i % 100_000, (i % 7) + 7),
            _ => format!("stranger-{i}"),
        };
        if cache
            .is_member_named("emails", &named(&probe))
            .unwrap()
            .member
        {
            false_members += 1;
        }
    }
    assert_eq!(false_members, 0);
    let (_, body) = a
        .get("/v1/campaigns/emails/members/user-000042%2B0%40example.com")
        .await;
    assert_eq!(
        (body["member"].as_bool(), body["source"].as_str()),
        (Some(true), Some("cache")),
        "{body}"
    );

    create_typed(&a, "devices", "uuid").await;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let uuids: Vec<u128> = (0..10_000)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect();
    let upper: Vec<String> = uuids
        .iter()
        .map(|u| {
            uuid::Uuid::from_u128(*u)
                .hyphenated()
                .to_string()
                .to_uppercase()
        })
        .collect();
    let (status, body) = a
        .upload("devices", "replace", "text/plain", upper.join("\n"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = held_bytes(&cache, "devices").await;
    eprintln!(
        "UUIDs: {:.2} bytes per ID held in the near-cache",
        held as f64 / uuids.len() as f64
    );
    assert!(held <= 17 * uuids.len() as u64, "{held} bytes");
    for u in &uuids {
        let text = uuid::Uuid::from_u128(*u).simple().to_string();
        assert!(
            cache
                .is_member_named("devices", &named(&text))
                .unwrap()
                .member
        );
    }
    for _ in 0..100_000 {
        let stranger = uuid::Uuid::from_u128((u128::from(next()) << 64) | u128::from(next()));
        let hit = cache
            .is_member_named("devices", &named(&stranger.to_string()))
            .unwrap();
        assert!(!hit.member, "{stranger}");
    }
    // A text that cannot be a UUID is the store's to refuse.
    assert!(cache.is_member_named("devices", &named("alice")).is_none());
    let (_, body) = a
        .get(&format!("/v1/campaigns/devices/members/{}", upper[0]))
        .await;
    assert_eq!(
        (body["member"].as_bool(), body["source"].as_str()),
        (Some(true), Some("cache")),
        "{body}"
    );
    assert_eq!(
        body["user_id"],
        upper[0].to_lowercase(),
        "canonical, as the store answers"
    );
    // A batch check echoes each user canonically too.
    let (status, body) = a
        .post_json(
            "/v1/check",
            json!({"user_ids": [upper[0], upper[1]], "campaign": "devices"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "cache", "{body}");
    assert_eq!(
        body["results"],
        json!([
            {"user_id": upper[0].to_lowercase(), "member": true},
            {"user_id": upper[1].to_lowercase(), "member": true},
        ])
    );
    // A user that cannot be a UUID is refused in a batch as on its own.
    let (status, body) = a
        .post_json(
            "/v1/check",
            json!({"user_ids": [upper[0], "alice"], "campaign": "devices"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("takes uuid user ids")),
        "{body}"
    );
    let (status, body) = a.get("/v1/campaigns/devices/members/alice").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
