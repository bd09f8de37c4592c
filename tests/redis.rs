//! End-to-end behaviour against a real `redis-server` that each test starts:
//! the key contract, large atomic replaces, and outages.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{ADMIN, Backend, Harness, RedisServer, app_for, lines, test_options};
use guestlist::store::redis::RedisStore;
use guestlist::store::{Store, StoreOptions};
use serde_json::{Value, json};

/// These tests run one at a time. SLOWLOG measures wall time inside Redis;
/// on a 2-core machine, a neighbour test's redis-server competing for the
/// CPU would be recorded as a slow command.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A deterministic pseudo-random sequence (splitmix64), so failures reproduce.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30k_csv_audience_agrees_with_redis_cli_and_only_active_campaigns_match() {
    let _serial = SERIAL.lock().await;
    let h = Harness::with_limit(Backend::RedisSet, 8 << 20).await;
    const U: u64 = 4_242_424_242;
    h.create("live", -1, 1).await;
    h.create("soon", 1, 2).await;
    h.create("over", -2, -1).await;
    for id in ["soon", "over"] {
        h.replace(id, &[U]).await;
    }

    // 30,000 lines: a header, CRLF endings, and every 10th id repeated.
    let ids: Vec<u64> = (0..27_000u64)
        .map(|i| mix(i) % 1_000_000_000)
        .chain([U])
        .collect();
    let mut csv = String::from("user_id\r\n");
    let mut lines_written = 0;
    for (i, id) in ids.iter().enumerate() {
        csv.push_str(&format!("{id}\r\n"));
        lines_written += 1;
        if i % 10 == 0 && lines_written < 30_000 {
            csv.push_str(&format!("{id}\r\n"));
            lines_written += 1;
        }
    }
    while lines_written < 30_000 {
        csv.push_str(&format!("{U}\r\n"));
        lines_written += 1;
    }
    let unique: std::collections::BTreeSet<u64> = ids.iter().copied().collect();

    let (status, r) = h.upload("live", "replace", "text/csv", csv).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["received"], 30_000);
    assert_eq!(r["audience_size"], unique.len() as u64);
    assert_eq!(r["duplicates"], 30_000 - unique.len() as u64);
    assert_eq!(
        h.campaign("live").await["audience_size"],
        unique.len() as u64
    );

    let members: Vec<u64> = unique
        .iter()
        .copied()
        .step_by(unique.len() / 1_000)
        .take(1_000)
        .collect();
    let non_members: Vec<u64> = (0..)
        .map(|i| mix(1_000_000 + i) % 1_000_000_000)
        .filter(|id| !unique.contains(id))
        .take(1_000)
        .collect();
    assert_eq!((members.len(), non_members.len()), (1_000, 1_000));
    let (status, body) = h
        .post_json(
            "/v1/check",
            json!({"user_ids": members, "campaign": "live"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["member"] == true)
    );
    let (_, body) = h
        .post_json(
            "/v1/check",
            json!({"user_ids": non_members, "campaign": "live"}),
        )
        .await;
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["member"] == false)
    );
    for id in members.iter().take(50).chain(non_members.iter().take(50)) {
        let api = h.is_member("live", *id).await;
        let cli = h
            .redis()
            .cli(&["SISMEMBER", "guestlist:{live}:members", &id.to_string()]);
        assert_eq!(cli.trim() == "1", api, "user {id}: redis-cli said {cli:?}");
    }

    assert_eq!(h.campaigns_of(U).await, ["live"]);
    let cli = h
        .redis()
        .cli(&["SISMEMBER", "guestlist:{live}:members", &U.to_string()]);
    assert_eq!(cli.trim(), "1");
    let cli = h.redis().cli(&["SCARD", "guestlist:{live}:members"]);
    assert_eq!(cli.trim(), unique.len().to_string());
}

/// Serves the API on a real socket, for tests that need HTTP end to end.
async fn serve(store: Arc<dyn Store>, max_upload: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app_for(store, max_upload);
    tokio::spawn(guestlist::http::run(listener, app, std::future::pending()));
    format!("http://{addr}")
}

fn client() -> reqwest::Client {
    guestlist::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn replace_over_http(base: &str, id: &str, ids: impl Iterator<Item = u64>) -> Value {
    let body = ids.fold(String::new(), |mut s, id| {
        s.push_str(&id.to_string());
        s.push('\n');
        s
    });
    let r = client()
        .put(format!("{base}/v1/campaigns/{id}/audience"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Replaces a big audience while a loop checks two users, then asserts the
/// swap was atomic for readers and that Redis never ran a slow command.
async fn replace_under_load(design: &str, size: u64) {
    let server = RedisServer::start();
    server.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let base = serve(store, 256 << 20).await;
    let http = client();
    let now = chrono::Utc::now();
    let r = http
        .post(format!("{base}/v1/campaigns"))
        .bearer_auth(ADMIN)
        .json(&json!({
            "id": "big", "name": "Big", "design": design,
            "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Old: the even numbers below 2·size. New: the lower half of those, plus
    // as many odd numbers above. So 10 is in both, 2·size-2 only in the old.
    let both = 10u64;
    let old_only = 2 * size - 2;
    let new_only = size + 1;
    let r = replace_over_http(&base, "big", (0..size).map(|i| i * 2)).await;
    assert_eq!(r["audience_size"], size);
    server.cli(&["SLOWLOG", "RESET"]);

    let swapped = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (base, swapped, checks) = (base.clone(), swapped.clone(), checks.clone());
        tokio::spawn(async move {
            let http = client();
            let member = |user: u64| {
                let http = http.clone();
                let url = format!("{base}/v1/campaigns/big/members/{user}");
                async move {
                    let r = http.get(url).bearer_auth(ADMIN).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.json::<Value>().await.unwrap()["member"]
                        .as_bool()
                        .unwrap()
                }
            };
            let mut after_swap = 0;
            while after_swap < 200 {
                let done = swapped.load(Ordering::SeqCst);
                assert!(member(both).await, "a user in both lists answered false");
                let old = member(old_only).await;
                if done {
                    assert!(!old, "a user only in the old list came back after the swap");
                    after_swap += 1;
                }
                checks.fetch_add(2, Ordering::Relaxed);
            }
        })
    };

    let new_ids = (0..size).map(|i| if i < size / 2 { i * 2 } else { 2 * i + 1 });
    let r = replace_over_http(&base, "big", new_ids).await;
    swapped.store(true, Ordering::SeqCst);
    assert_eq!(r["audience_size"], size);
    assert_eq!(r["version"], 2);
    watcher
        .await
        .expect("the concurrent checker saw a wrong answer");
    assert!(checks.load(Ordering::Relaxed) > 400);

    let r = http
        .get(format!("{base}/v1/campaigns/big/members/{new_only}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["member"], true);
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let (waited, slow): (Vec<_>, Vec<_>) = common::slowlog("redis", &mut conn)
        .into_iter()
        .partition(common::SlowEntry::bounded_by_its_arguments);
    let lines = |entries: &[common::SlowEntry]| {
        entries
            .iter()
            .map(common::SlowEntry::line)
            .collect::<Vec<_>>()
            .join("\n")
    };
    println!(
        "{} bounded chunk commands took 10 to 50 ms (a CPU wait or a table doubling):\n{}",
        waited.len(),
        lines(&waited)
    );
    assert!(
        slow.is_empty(),
        "commands slower than 10 ms:\n{}",
        lines(&slow)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_million_ids_is_atomic_and_never_slow_for_redis() {
    let _serial = SERIAL.lock().await;
    replace_under_load("set", 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitmap_replaces_of_a_million_ids_are_atomic_and_never_slow_for_redis() {
    let _serial = SERIAL.lock().await;
    replace_under_load("bitmap", 1_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_replaces_are_atomic_and_never_slow_for_redis() {
    let _serial = SERIAL.lock().await;
    replace_under_load("per-user", 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_and_old_generations_do_not_linger() {
    let _serial = SERIAL.lock().await;
    for design in ["set", "per-user", "bitmap"] {
        let server = RedisServer::start();
        let store: Arc<dyn Store> = Arc::new(
            RedisStore::connect(&server.url(), test_options())
                .await
                .unwrap(),
        );
        let h = Harness {
            app: app_for(store.clone(), 1 << 20),
            store,
            backend: match design {
                "set" => Backend::RedisSet,
                "bitmap" => Backend::RedisBitmap,
                _ => Backend::RedisPerUser,
            },
            redis: Some(server),
            data_dir: None,
        };
        h.active("c").await;
        h.replace("c", &(0..5_000).collect::<Vec<_>>()).await;
        h.replace("c", &(2_000..4_000).collect::<Vec<_>>()).await;
        // Background clean-up of the old generation, once no instance can
        // still be reading it (twice the staleness bound).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let staging = h
                .redis()
                .cli(&["--scan", "--pattern", "guestlist:{c}:*staging:*"]);
            let trash = h
                .redis()
                .cli(&["--scan", "--pattern", "guestlist:{c}:trash:*"]);
            // User 0 was only in the first generation: its key must be gone.
            let user0 = h.redis().cli(&["EXISTS", "guestlist:user:{0}:campaigns"]);
            if staging.trim().is_empty() && trash.trim().is_empty() && user0.trim() == "0" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{design}: leftovers: staging={staging:?} trash={trash:?} user0={user0:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every remaining key of the campaign expires.
        for key in h
            .redis()
            .cli(&["--scan", "--pattern", "guestlist:*"])
            .lines()
        {
            if [
                "guestlist:campaigns",
                "guestlist:catalog-version",
                "guestlist:audit",
            ]
            .contains(&key)
            {
                continue;
            }
            let ttl: i64 = h.redis().cli(&["TTL", key]).trim().parse().unwrap();
            // -2: the key went between the scan and now (the clean-up of
            // the old generation's per-user keys runs on in the
            // background). Gone is as good as expiring; -1 is the leak.
            assert!(
                ttl > 0 || ttl == -2,
                "{design}: {key} has no expiry (TTL {ttl})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_change_moves_the_expiry_of_every_key() {
    let _serial = SERIAL.lock().await;
    for backend in [
        Backend::RedisSet,
        Backend::RedisPerUser,
        Backend::RedisBitmap,
    ] {
        let h = Harness::new(backend).await;
        h.active("c").await;
        h.replace("c", &[1, 2, 3]).await;
        let key = match backend {
            Backend::RedisSet => "guestlist:{c}:members",
            Backend::RedisBitmap => "guestlist:{c}:bitmap",
            _ => "guestlist:user:{2}:campaigns",
        };
        let ttl = |k: &str| -> i64 { h.redis().cli(&["TTL", k]).trim().parse().unwrap() };
        let week = 7 * 24 * 3600;
        assert!(
            (week..week + 2 * 3600).contains(&ttl(key)),
            "{key}: {}",
            ttl(key)
        );
        let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
        let (status, _) = h
            .patch_json("/v1/campaigns/c", json!({"ends_at": later}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let moved = ttl(key);
        assert!(moved > 36 * 24 * 3600, "{key} still expires in {moved}s");
        assert!(ttl("guestlist:{c}:meta") > 36 * 24 * 3600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_fail_fast_while_redis_is_down_and_recover_by_themselves() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::start();
    let deadline = Duration::from_millis(50);
    let options = StoreOptions {
        check_timeout: deadline,
        ..test_options()
    };
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url(), options).await.unwrap());
    let h = Harness {
        app: app_for(store.clone(), 1 << 20),
        store,
        backend: Backend::RedisSet,
        redis: None,
        data_dir: None,
    };
    h.active("c").await;
    h.replace("c", &[1, 2, 3]).await;
    assert!(h.is_member("c", 2).await);

    let expect_unavailable = |what: &'static str| {
        let h = &h;
        async move {
            for path in ["/v1/campaigns/c/members/2", "/v1/users/2/campaigns"] {
                let start = Instant::now();
                let (status, body) = h.get(path).await;
                let took = start.elapsed();
                assert_eq!(
                    status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{what} {path}: {body}"
                );
                assert_eq!(body["error"], "store_unavailable");
                // The deadline is 50 ms; allow scheduling noise but never a hang.
                assert!(took < Duration::from_secs(1), "{what} {path} took {took:?}");
            }
            let (status, body) = h.get("/readyz").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {body}");
            assert_eq!(body["error"], "store_unavailable");
        }
    };

    // A hung Redis (stopped, socket open): the deadline must fire.
    server.signal("STOP");
    expect_unavailable("stopped").await;
    server.signal("CONT");
    assert!(h.is_member("c", 2).await);

    // A dead Redis: save its data so the restarted one has it, then kill it.
    server.cli(&["SAVE"]);
    server.kill();
    expect_unavailable("killed").await;
    server.restart();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = h.get("/v1/campaigns/c/members/2").await;
        if status == StatusCode::OK {
            assert_eq!(body["member"], true);
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!h.is_member("c", 9).await);
    assert_eq!(h.campaigns_of(3).await, ["c"]);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_sees_campaigns_and_audiences_written_by_the_first() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let a: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let ha = Harness::over(a, Backend::RedisPerUser);
    let hb = Harness::over(b, Backend::RedisPerUser);
    ha.active("shared").await;
    ha.replace("shared", &[1, 2]).await;
    // B may still hold the campaign as it was created (generation 0) until
    // the change announcement or the poll reaches it: visibility is bounded,
    // not instant, so both replaces are awaited the same way.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !hb.is_member("shared", 1).await {
        assert!(
            Instant::now() < deadline,
            "instance B never saw the first replace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ha.replace("shared", &[3]).await;
    // B learns the new generation from the catalog poll (once a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    while hb.is_member("shared", 1).await || !hb.is_member("shared", 3).await {
        assert!(
            Instant::now() < deadline,
            "instance B never saw the replace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hb.campaigns_of(3).await, ["shared"]);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_campaign_are_refused_not_interleaved() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisSet).await;
    h.active("c").await;
    // Hold the writer lease as another instance would.
    h.redis()
        .cli(&["SET", "guestlist:{c}:lock", "someone-else", "PX", "60000"]);
    let (status, body) = h.upload("c", "replace", "text/plain", lines(&[1, 2])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "audience_busy");
    assert_eq!(h.campaign("c").await["version"], 0);
    h.redis().cli(&["DEL", "guestlist:{c}:lock"]);
    h.replace("c", &[1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_fenced_by_the_writer_lease() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisSet).await;
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    h.replace("c", &[3]).await;
    let audit_before = h.get("/v1/audit?campaign=c").await;
    h.redis()
        .cli(&["SET", "guestlist:{c}:lock", "someone-else", "PX", "60000"]);
    let (status, body) = h
        .post_json("/v1/campaigns/c/rollback", json!({"version": 1}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "audience_busy");
    assert_eq!(h.campaign("c").await["version"], 2);
    assert_eq!(h.export("c").await, [3]);
    assert_eq!(h.get("/v1/audit?campaign=c").await, audit_before);
    h.redis().cli(&["DEL", "guestlist:{c}:lock"]);
    let (status, body) = h
        .post_json("/v1/campaigns/c/rollback", json!({"version": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        h.redis()
            .cli(&["SISMEMBER", "guestlist:{c}:members", "2"])
            .trim(),
        "1"
    );
}

/// Keys whose names match `pattern`, with their TTLs.
fn ttls(h: &Harness, pattern: &str) -> Vec<(String, i64)> {
    h.redis()
        .cli(&["--scan", "--pattern", pattern])
        .lines()
        .map(|k| {
            (
                k.to_string(),
                h.redis().cli(&["TTL", k]).trim().parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_version_expires_with_the_newest_write_not_its_own() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisSet).await;
    h.active("c").await;
    h.replace("c", &[1]).await;
    // Version 1's expiry as its own write set it, earlier than the next
    // write's (as when an ended campaign's data lives a retention from its
    // last write).
    let first = h
        .redis()
        .cli(&["--scan", "--pattern", "guestlist:{c}:snapshot:*"]);
    let first = first.trim();
    h.redis().cli(&["EXPIRE", first, "100"]);
    h.replace("c", &[2]).await;
    let ttl: i64 = h.redis().cli(&["TTL", first]).trim().parse().unwrap();
    assert!(
        ttl > 7 * 24 * 3600 - 60,
        "kept version 1 expires in {ttl}s, before its record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_its_snapshots_and_lets_go_of_the_rest() {
    let _serial = SERIAL.lock().await;
    for backend in [
        Backend::RedisSet,
        Backend::RedisPerUser,
        Backend::RedisBitmap,
    ] {
        let server = RedisServer::start();
        let options = StoreOptions {
            keep_versions: 2,
            ..test_options()
        };
        let store: Arc<dyn Store> =
            Arc::new(RedisStore::connect(&server.url(), options).await.unwrap());
        let h = Harness {
            redis: Some(server),
            ..Harness::over(store, backend)
        };
        h.active("c").await;
        for v in 1..=4u64 {
            h.replace("c", &[v, v + 10]).await;
        }
        let (_, r) = h.upload("c", "add", "text/plain", "99\n").await;
        assert_eq!(r["version"], 5);
        // The two kept versions name their snapshots; every other snapshot
        // was let go with the minute readers get.
        let kept: Vec<String> = h
            .redis()
            .cli(&["HVALS", "guestlist:{c}:versions"])
            .lines()
            .map(|json| {
                let v: Value = serde_json::from_str(json).unwrap();
                v["snapshot"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            h.redis()
                .cli(&["HKEYS", "guestlist:{c}:versions"])
                .lines()
                .collect::<Vec<_>>()
                .len(),
            2
        );
        let week = 7 * 24 * 3600;
        let snapshots = ttls(&h, "guestlist:{c}:snapshot:*");
        let mut seen_kept = 0;
        for (key, ttl) in &snapshots {
            if kept.iter().any(|stamp| key.ends_with(stamp.as_str())) {
                seen_kept += 1;
                assert!(
                    ttl > &(week - 60),
                    "{backend:?}: kept {key} expires in {ttl}s"
                );
            } else {
                assert!(
                    (0..=60).contains(ttl),
                    "{backend:?}: {key} lingers (TTL {ttl})"
                );
            }
        }
        assert_eq!(seen_kept, 2, "{backend:?}: {snapshots:?}");
        let history_ttl: i64 = h
            .redis()
            .cli(&["TTL", "guestlist:{c}:versions"])
            .trim()
            .parse()
            .unwrap();
        assert!(history_ttl > week - 60, "{history_ttl}");

        // A delete takes the history with it: the old versions at once, the
        // live snapshot after the minute its clean-up reads it in.
        assert_eq!(h.delete("/v1/campaigns/c").await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            h.redis().cli(&["EXISTS", "guestlist:{c}:versions"]).trim(),
            "0"
        );
        let left = ttls(&h, "guestlist:{c}:snapshot:*");
        // Kept: v5 (live) and v4. v4 is unlinked; what is left (v5 and the
        // versions that fell off earlier) all go within the minute.
        assert_eq!(left.len(), 4, "{backend:?}: {left:?}");
        assert!(
            left.iter().all(|(_, ttl)| (0..=60).contains(ttl)),
            "{backend:?}: {left:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_per_user_campaign_never_inherits_old_members() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisPerUser).await;
    h.active("flash").await;
    h.replace("flash", &[42, 43]).await;
    // Another campaign keeps user 42's key alive after "flash" is gone.
    h.active("other").await;
    h.replace("other", &[42]).await;
    let (status, _) = h.delete("/v1/campaigns/flash").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.active("flash").await;
    h.replace("flash", &[7]).await;
    assert!(
        !h.is_member("flash", 42).await,
        "an old generation came back"
    );
    assert!(h.is_member("flash", 7).await);
    assert_eq!(h.campaigns_of(42).await, ["other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_instances_keep_answering_from_the_old_generation_until_they_switch() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let a: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let b: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&server.url(), test_options())
            .await
            .unwrap(),
    );
    let ha = Harness::over(a, Backend::RedisPerUser);
    let hb = Harness::over(b, Backend::RedisPerUser);
    ha.active("c").await;
    ha.replace("c", &[1, 2]).await;
    // B learns the first generation by pub/sub or, at worst, its next poll.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !hb.is_member("c", 1).await {
        assert!(Instant::now() < deadline, "B never saw the first audience");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // User 1 is in both generations: B must never say no while it catches up.
    ha.replace("c", &[1, 3]).await;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            hb.is_member("c", 1).await,
            "instance B answered false for a user in both lists"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hb.is_member("c", 3).await);
    drop(server);
}

/// A dropped store lets go of Redis: its reconciler, its connections and its
/// change subscription end, so a process that opens and drops stores (the
/// bench, a library user) does not pile up connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_closes_every_connection() {
    let _serial = SERIAL.lock().await;
    let server = RedisServer::start();
    let clients = || {
        server
            .cli(&["CLIENT", "LIST"])
            .lines()
            .filter(|l| !l.contains("cmd=client"))
            .count()
    };
    let store = RedisStore::connect(&server.url(), test_options())
        .await
        .unwrap();
    store.ready().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients() < 3 {
        assert!(Instant::now() < deadline, "the store never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(5);
    while clients() > 0 {
        assert!(
            Instant::now() < deadline,
            "connections left 5 s after the store was dropped:\n{}",
            server.cli(&["CLIENT", "LIST"])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
