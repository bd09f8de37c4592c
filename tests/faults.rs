//! The Redis protocol under real faults: a TCP proxy (`common::proxy`)
//! between one instance and Redis adds latency, loses replies, cuts pub/sub
//! alone or drops packets without a reset, and the tests check what the
//! issue promises: checks answer within their deadline, every write either
//! fully lands or leaves the live audience untouched, and no instance ever
//! answers from an old state as if it were fresh.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::proxy::FaultProxy;
use common::{ADMIN, Backend, Harness, RedisServer, lines};
use guestlist::app::{AppState, Tokens};
use guestlist::lookup::Checker;
use guestlist::nearcache::{NearCache, NearCacheOptions, StalePolicy};
use guestlist::routes::router;
use guestlist::store::redis::RedisStore;
use guestlist::store::{Store, StoreOptions};
use serde_json::Value;

/// One at a time: these tests time deadlines and staleness.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MAX_STALENESS: Duration = Duration::from_secs(1);

fn options() -> StoreOptions {
    StoreOptions {
        check_timeout: Duration::from_millis(150),
        admin_timeout: Duration::from_secs(1),
        max_staleness: MAX_STALENESS,
        ..StoreOptions::default()
    }
}

/// An instance as `serve` builds it: a Redis store at `url`, optionally with
/// a near-cache, behind the router.
async fn instance(
    url: &str,
    cache: Option<StalePolicy>,
    backend: Backend,
) -> (Harness, Option<NearCache>) {
    let redis = RedisStore::connect(url, options()).await.unwrap();
    let cache = cache.map(|on_stale| {
        NearCache::start(
            redis.clone(),
            NearCacheOptions {
                max_staleness: MAX_STALENESS,
                on_stale,
                ..NearCacheOptions::default()
            },
        )
    });
    let store: Arc<dyn Store> = Arc::new(redis);
    let mut state = AppState::new(store.clone(), Tokens::single(ADMIN), 64 << 20);
    state.checker = Checker::new(store.clone(), cache.clone());
    let h = Harness {
        app: router(state),
        store,
        backend,
        redis: None,
        data_dir: None,
    };
    (h, cache)
}

/// Redis, instance A connected to it directly, and instance B connected
/// through a fault proxy (with a near-cache when `cache` is set).
struct Pair {
    /// Kept alive as long as the test binds it.
    server: RedisServer,
    proxy: FaultProxy,
    a: Harness,
    b: Harness,
    cache: Option<NearCache>,
}

async fn pair(backend: Backend, cache: Option<StalePolicy>) -> Pair {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], server.port).into());
    let (a, _) = instance(&server.url(), None, backend).await;
    let (b, cache) = instance(&proxy.url(), cache, backend).await;
    Pair {
        server,
        proxy,
        a,
        b,
        cache,
    }
}

async fn member(h: &Harness, campaign: &str, user: u64) -> (StatusCode, Value) {
    h.get(&format!("/v1/campaigns/{campaign}/members/{user}"))
        .await
}

async fn eventually(what: &str, limit: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The live audience read straight from Redis's snapshot through a healthy
/// connection, as the export sees it.
async fn live(h: &Harness, id: &str) -> Vec<u64> {
    h.export(id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_cache_that_missed_a_delete_and_recreate_never_serves_the_old_audience() {
    // Scenario 2: versions restart after delete and re-create, so an
    // instance that missed the middle states must not keep its entry only
    // because the version number matches.
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        cache,
    } = pair(Backend::RedisSet, Some(StalePolicy::Serve)).await;
    let cache = cache.unwrap();
    a.active("c").await;
    a.replace("c", &[1]).await;
    eventually("B caches version 1", Duration::from_secs(5), async || {
        cache.is_member("c", 1).is_some_and(|m| m.member)
    })
    .await;

    proxy.blackhole(true);
    assert_eq!(a.delete("/v1/campaigns/c").await.0, StatusCode::NO_CONTENT);
    a.active("c").await;
    assert_eq!(a.replace("c", &[2]).await["version"], 1);
    proxy.blackhole(false);
    proxy.cut_all();
    // Within the staleness bound B may still answer from what it had; past
    // it, and once reconciled, never from the deleted incarnation as fresh.
    tokio::time::sleep(MAX_STALENESS + Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, old) = member(&b, "c", 1).await;
        if old["member"] == true {
            assert_eq!(
                old["stale"], true,
                "B served the deleted audience as fresh: {old}"
            );
        }
        let (_, new) = member(&b, "c", 2).await;
        if new["member"] == true && new["stale"] == false && old["member"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never moved to the new incarnation: {old} {new}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_a_catalog_older_than_the_bound_are_flagged_stale() {
    // Scenario 5: an instance whose catalog stopped reconciling must not
    // answer "which campaigns" from it as fresh. Only its admin connection
    // (the one that reconciles) is cut; checks still reach Redis.
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        ..
    } = pair(Backend::RedisPerUser, None).await;
    a.active("c").await;
    a.replace("c", &[1]).await;
    eventually("B lists c for user 1", Duration::from_secs(5), async || {
        b.campaigns_of(1).await == ["c"]
    })
    .await;

    proxy.cut_matching(b"SMEMBERS");
    a.replace("c", &[2]).await;
    // A single-campaign check reads the metadata with the probe: fresh.
    eventually(
        "B's member check sees the replace",
        Duration::from_secs(2),
        async || member(&b, "c", 2).await.1["member"] == true,
    )
    .await;
    assert_eq!(member(&b, "c", 1).await.1["member"], false);
    tokio::time::sleep(MAX_STALENESS + Duration::from_millis(500)).await;
    for user in [1, 2] {
        let (status, body) = b.get(&format!("/v1/users/{user}/campaigns")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["stale"], true,
            "user {user}: an old catalog answered as fresh: {body}"
        );
    }
    proxy.stop_cut_matching();
    eventually(
        "B's lists are fresh again",
        Duration::from_secs(5),
        async || {
            let (_, body) = b.get("/v1/users/2/campaigns").await;
            body["stale"] == false && body["campaigns"] == serde_json::json!(["c"])
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_entries_turn_stale_while_a_slow_reload_is_in_progress() {
    // Scenario 11: staleness must not wait for a background task. Here the
    // instance's Redis link is so slow that reconciling and loading a new
    // snapshot take seconds; an unchanged campaign's entry must still be
    // flagged stale once it has gone unconfirmed past the bound.
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        cache,
    } = pair(Backend::RedisSet, Some(StalePolicy::Serve)).await;
    let cache = cache.unwrap();
    a.active("x").await;
    a.replace("x", &[1]).await;
    eventually("B caches x", Duration::from_secs(5), async || {
        cache
            .is_member("x", 1)
            .is_some_and(|m| m.member && !m.stale)
    })
    .await;
    proxy.set_latency(Duration::from_millis(700));
    a.active("y").await;
    a.replace("y", &(0..50_000).collect::<Vec<_>>()).await;
    let watched = Instant::now();
    let mut flagged = false;
    while watched.elapsed() < Duration::from_secs(6) {
        let hit = cache.is_member("x", 1).unwrap();
        if hit.stale {
            flagged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set_latency(Duration::ZERO);
    assert!(
        flagged,
        "x stayed fresh for 6 s while its confirmations were held up"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_is_resolved_by_reading_the_revision_back() {
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        ..
    } = pair(Backend::RedisSet, None).await;
    a.active("c").await;
    a.replace("c", &[1, 2]).await;
    // Every fenced commit carries this script text; the proxy lets the
    // command reach Redis, then cuts the connection before the reply.
    for (op, body, expect) in [
        ("replace", lines(&[3, 4]), vec![3, 4]),
        ("add", lines(&[5]), vec![3, 4, 5]),
        ("remove", lines(&[3]), vec![4, 5]),
    ] {
        let fired = proxy.fired();
        proxy.cut_after(b"A fenced commit", 1);
        let (status, r) = b.upload("c", op, "text/plain", body).await;
        tokio::time::timeout(Duration::from_secs(10), proxy.wait_fired(fired + 1))
            .await
            .unwrap_or_else(|_| panic!("{op}: no fenced commit reached Redis ({status}: {r})"));
        assert_eq!(live(&a, "c").await, expect, "{op}: the commit ran");
        assert_eq!(
            status,
            StatusCode::OK,
            "{op}: a landed write must be reported as landed: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_blackhole_fail_cleanly_and_checks_keep_their_deadline() {
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        cache,
    } = pair(Backend::RedisSet, Some(StalePolicy::Serve)).await;
    let cache = cache.unwrap();
    a.active("c").await;
    a.replace("c", &[1, 2]).await;
    // Ended, so never cached: its checks always go to the store.
    a.create("d", -2, -1).await;
    eventually("B caches c", Duration::from_secs(5), async || {
        cache.is_member("c", 1).is_some_and(|m| m.member)
    })
    .await;

    proxy.blackhole(true);
    // A cached campaign answers at once (stale once past the bound); one
    // that must go to the store fails within its deadline, never hangs.
    let started = Instant::now();
    let (status, body) = member(&b, "d", 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a store check took {:?}",
        started.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    tokio::time::sleep(MAX_STALENESS).await;
    let (status, body) = member(&b, "c", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["member"].clone(), body["stale"].clone()),
        (true.into(), true.into())
    );

    let started = Instant::now();
    let (status, body) = b.upload("c", "replace", "text/plain", lines(&[9])).await;
    assert!(
        !status.is_success(),
        "a write through a blackhole succeeded: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the write hung for {:?}",
        started.elapsed()
    );
    assert_eq!(
        live(&a, "c").await,
        vec![1, 2],
        "the failed write changed the audience"
    );

    proxy.blackhole(false);
    proxy.cut_all();
    eventually("B writes again", Duration::from_secs(10), async || {
        b.upload("c", "replace", "text/plain", lines(&[7])).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(live(&a, "c").await, vec![7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_redis_near_the_deadline_never_half_applies_a_write() {
    let _serial = SERIAL.lock().await;
    let Pair {
        server: _redis,
        proxy,
        a,
        b,
        ..
    } = pair(Backend::RedisPerUser, None).await;
    a.active("c").await;
    a.replace("c", &[1, 2, 3]).await;
    // Round trips of 2 × 230 ms against a 1 s admin deadline: some calls make
    // it, some time out, at every step of the protocol.
    proxy.set_latency(Duration::from_millis(230));
    let mut expected = vec![1, 2, 3];
    for round in 0..6u64 {
        let (op, ids) = if round % 2 == 0 {
            ("add", vec![100 + round])
        } else {
            ("remove", vec![expected[0]])
        };
        let (status, _) = b.upload("c", op, "text/plain", lines(&ids)).await;
        let now = live(&a, "c").await;
        let mut applied = expected.clone();
        if op == "add" {
            applied.push(ids[0]);
        } else {
            applied.retain(|u| *u != ids[0]);
        }
        applied.sort();
        assert!(
            now == expected || now == applied,
            "round {round}: half-applied: {now:?}"
        );
        if status.is_success() {
            assert_eq!(
                now, applied,
                "round {round}: reported success but did not land"
            );
        }
        // Per-user answers agree with the snapshot, user by user.
        for u in applied.iter().chain(&expected) {
            let (_, body) = member(&a, "c", *u).await;
            assert_eq!(body["member"], now.contains(u), "round {round}: user {u}");
        }
        expected = now;
    }
}
