//! Regression tests for correctness bugs of the Redis store, written against
//! its stable surface only: the HTTP API, and the Redis keys whose names are
//! a contract (`guestlist:campaigns`, `guestlist:catalog-version`,
//! `guestlist:{C}:meta`, `:lock`, `:members`, `:bitmap`, `guestlist:changes`).
//! They deliberately ignore per-user field names, snapshot keys and
//! generations, so they keep working when the store's internals change.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::{Duration as Span, Utc};
use common::monitor::{self, Command, Monitor, key_slot, multi_slot_transactions};
use common::{Backend, Harness, lines, test_options};
use guestlist::store::redis::RedisStore;
use serde_json::{Value, json};

/// One test at a time: SLOWLOG and MONITOR measure a whole machine's worth
/// of Redis work, and a neighbour test would show up in both.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Another service instance over the same Redis as `h`.
async fn second_instance(h: &Harness, backend: Backend) -> Harness {
    let store = RedisStore::connect(&h.redis().url(), test_options())
        .await
        .unwrap();
    Harness::over(Arc::new(store), backend)
}

/// The members among `users` according to one `POST /v1/check`.
async fn batch_members(h: &Harness, campaign: &str, users: &[u64]) -> BTreeSet<u64> {
    let (status, body) = h
        .post_json(
            "/v1/check",
            json!({"campaign": campaign, "user_ids": users}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("a results array");
    assert_eq!(results.len(), users.len());
    results
        .iter()
        .filter(|r| r["member"] == true)
        .map(|r| r["user_id"].as_u64().unwrap())
        .collect()
}

fn live_key(backend: Backend, campaign: &str) -> String {
    match backend {
        Backend::RedisBitmap => format!("guestlist:{{{campaign}}}:bitmap"),
        _ => format!("guestlist:{{{campaign}}}:members"),
    }
}

fn rfc3339_in(hours: i64) -> String {
    (Utc::now() + Span::hours(hours)).to_rfc3339()
}

/// Indices of the captured commands named `name` whose first key is `key`.
fn find(commands: &[Command], names: &[&str], key: &str) -> Vec<usize> {
    commands
        .iter()
        .enumerate()
        .filter(|(_, c)| names.contains(&c.name().as_str()) && c.arg(1) == key)
        .map(|(i, _)| i)
        .collect()
}

/// Collects independent expectations so one run reports all that fail.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

// ---------------------------------------------------------------------------
// The test helpers themselves.

#[test]
fn key_slots_match_redis_cluster() {
    // CRC16/XMODEM check value, and slots reported by CLUSTER KEYSLOT on a
    // cluster-enabled redis-server 7.0.
    assert_eq!(monitor::crc16(b"123456789"), 0x31C3);
    for (key, slot) in [
        ("foo", 12182),
        ("bar", 5061),
        ("123456789", 12739),
        ("", 0),
        ("{user1000}.following", 3443),
        ("{user1000}.followers", 3443),
        // An empty tag does not count: the whole key is hashed.
        ("foo{}{bar}", 8363),
        ("{}", 15257),
        // The tag ends at the first `}` after the first `{`.
        ("foo{{bar}}zap", 4015),
        ("foo{bar}{zap}", 5061),
        ("{a}}", 15495),
        ("a{b", 13340),
        ("{", 4092),
        ("}", 12090),
        ("guestlist:campaigns", 15057),
        ("guestlist:catalog-version", 7355),
        ("guestlist:{c}:meta", 7365),
    ] {
        assert_eq!(key_slot(key.as_bytes()), slot, "key {key:?}");
    }
}

#[test]
fn monitor_lines_are_unescaped_like_redis_cli_prints_them() {
    let line = r#"1795737154.954664 [0 127.0.0.1:37146] "set" "a\"b\\c" "x\ny\x01\xff" """#;
    let cmd = monitor::parse_line(line).unwrap();
    assert_eq!(cmd.client, "127.0.0.1:37146");
    assert!(!cmd.lua);
    assert_eq!(cmd.name(), "SET");
    assert_eq!(
        cmd.args,
        [
            b"set".to_vec(),
            b"a\"b\\c".to_vec(),
            b"x\ny\x01\xff".to_vec(),
            Vec::new()
        ]
    );
    let lua = monitor::parse_line(r#"1.5 [0 lua] "GET" "k""#).unwrap();
    assert!(lua.lua);
    assert_eq!(lua.keys().unwrap(), [b"k".as_slice()]);
    assert!(monitor::parse_line("OK").is_none());
}

#[test]
fn groups_take_the_script_commands_that_follow_a_script_call() {
    let capture = [
        r#"1.0 [0 127.0.0.1:1] "MULTI""#,
        r#"1.1 [0 127.0.0.1:2] "GET" "{x}a""#,
        r#"1.2 [0 127.0.0.1:1] "SET" "{t}k" "v""#,
        r#"1.3 [0 127.0.0.1:1] "EVAL" "..." "1" "{t}k" "x""#,
        r#"1.4 [0 lua] "SET" "{t}k" "x""#,
        r#"1.5 [0 127.0.0.1:1] "EXEC""#,
        r#"1.6 [0 127.0.0.1:3] "EVAL" "..." "1" "{s}k" "y""#,
        r#"1.7 [0 lua] "INCR" "zzz""#,
        r#"1.8 [0 127.0.0.1:3] "EVAL" "..." "2" "{s}k" "{s}j""#,
        r#"1.9 [0 127.0.0.1:3] "INCR" "zzz""#,
    ];
    let commands: Vec<Command> = capture
        .iter()
        .map(|l| monitor::parse_line(l).unwrap())
        .collect();
    let groups = monitor::groups(&commands);
    let shape: Vec<(&str, Vec<usize>)> = groups
        .iter()
        .map(|g| (g.kind.as_str(), g.commands.clone()))
        .collect();
    assert_eq!(
        shape,
        [
            ("MULTI", vec![0, 2, 3, 4, 5]),
            ("EVAL", vec![3, 4]),
            ("EVAL", vec![6, 7]),
            ("EVAL", vec![8]),
        ]
    );
    // Only the script reaching outside its declared slot is reported.
    let found = multi_slot_transactions(&commands);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("zzz"), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_sees_transactions_and_scripts_as_redis_runs_them() {
    // Checks the assumptions above against the real redis-server: a
    // transaction and a script reaching two slots are both caught.
    let _serial = SERIAL.lock().await;
    let server = common::RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let m = Monitor::start(server.port);
    let mut tx = redis::pipe();
    tx.atomic()
        .cmd("SET")
        .arg("{a}one")
        .arg(1)
        .ignore()
        .cmd("EVAL")
        .arg("return redis.call('INCR', KEYS[1])")
        .arg(1)
        .arg("{a}two")
        .ignore();
    tx.query_async::<()>(&mut conn).await.unwrap();
    redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[1], 1); return redis.call('INCR', 'elsewhere')")
        .arg(1)
        .arg("{b}one")
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    let mut tx = redis::pipe();
    tx.atomic()
        .cmd("SET")
        .arg("{a}one")
        .arg(2)
        .ignore()
        .cmd("INCR")
        .arg("{b}two")
        .ignore();
    tx.query_async::<()>(&mut conn).await.unwrap();
    let commands = m.stop();
    let found = multi_slot_transactions(&commands);
    assert_eq!(found.len(), 2, "{found:#?}\n{commands:#?}");
    assert!(found[0].starts_with("EVAL") && found[0].contains("elsewhere"));
    assert!(found[1].starts_with("MULTI") && found[1].contains("{b}two"));
}

// ---------------------------------------------------------------------------
// Scenarios.

/// Scenario 1: per-user campaign `c` gets user 5 by a small add, is deleted
/// and created again. The old entry must not count for the new campaign:
/// otherwise a deleted audience silently comes back, and a user who was
/// never targeted by the new campaign is treated as a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_per_user_campaign_does_not_inherit_members_added_in_small_steps() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisPerUser).await;
    h.active("c").await;
    let (status, body) = h.upload("c", "add", "text/plain", lines(&[5])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.is_member("c", 5).await);
    let (status, body) = h.delete("/v1/campaigns/c").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Straight away: the old audience's clean-up runs in the background
    // seconds later, and the new campaign must be right before that too.
    h.active("c").await;
    assert!(
        !h.is_member("c", 5).await,
        "user 5 of the deleted campaign is a member of the new one"
    );
    assert!(!h.campaigns_of(5).await.contains(&"c".to_string()));
    // Once the new campaign has an audience of its own, the user's campaign
    // list consults it too: user 5 must still be out.
    let (status, body) = h.upload("c", "add", "text/plain", lines(&[6])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !h.is_member("c", 5).await,
        "user 5 of the deleted campaign is a member after a small add to the new one"
    );
    assert!(h.is_member("c", 6).await);
    assert_eq!(h.campaigns_of(5).await, Vec::<String>::new());
    assert_eq!(h.campaigns_of(6).await, ["c"]);
}

/// Scenario 3: a replace of a million ids loses its lease mid-build (here it
/// is deleted; in production it expires or is taken over), and another
/// instance then replaces the audience with `[7]`. The first writer must
/// notice and fail instead of publishing over the second: two admins would
/// otherwise each be told their upload won, and the older one would be live.
/// The lease must also be short, so a crashed writer does not block a
/// campaign for ten minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_lost_its_lease_never_publishes() {
    let _serial = SERIAL.lock().await;
    let h = Arc::new(Harness::with_limit(Backend::RedisSet, 64 << 20).await);
    h.active("c").await;
    let lock = "guestlist:{c}:lock";
    let big: Vec<u64> = (0..1_000_000u64).map(|i| 1_000_000 + 3 * i).collect();
    let writer = {
        let (h, body) = (h.clone(), lines(&big));
        tokio::spawn(async move { h.upload("c", "replace", "text/plain", body).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.redis().cli(&["EXISTS", lock]).trim() != "1" {
        assert!(
            !writer.is_finished(),
            "the big replace ended before its lease was seen"
        );
        assert!(
            Instant::now() < deadline,
            "the big replace never took its lease"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pttl: i64 = h.redis().cli(&["PTTL", lock]).trim().parse().unwrap();
    h.redis().cli(&["DEL", lock]);
    assert_eq!(
        h.redis()
            .cli(&["HGET", "guestlist:{c}:meta", "version"])
            .trim(),
        "0",
        "the big replace published before its lease was taken away; the scenario did not happen"
    );

    let b = second_instance(&h, Backend::RedisSet).await;
    b.replace("c", &[7]).await;

    let (status, body) = writer.await.unwrap();
    assert!(
        !status.is_success(),
        "the writer whose lease was taken away still reported success: {status} {body}"
    );
    let live = h.export("c").await;
    assert!(
        live == [7],
        "the live audience is not [7] but {} ids, starting {:?}",
        live.len(),
        &live[..live.len().min(5)]
    );
    for id in [big[0], big[500_000], big[999_999]] {
        let member = h
            .redis()
            .cli(&["SISMEMBER", "guestlist:{c}:members", &id.to_string()]);
        assert_eq!(member.trim(), "0", "user {id} of the lost write is live");
    }
    // Scenario 9: the refused writer cleans up what it staged; that must
    // never include the snapshot the other writer published (both were
    // "version 1"). Clean-up may run in the background: give it time, then
    // the published audience must still be readable.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.export("c").await,
        [7],
        "the published snapshot was removed by the refused writer's clean-up"
    );
    assert!(
        (1..=30_000).contains(&pttl),
        "the writer lease has a PTTL of {pttl} ms while held; at most 30000 expected"
    );
}

/// Scenario 4: creating a campaign. Other instances reload their catalog
/// when `guestlist:catalog-version` moves, reading `guestlist:campaigns`.
/// If the version moves before the id is in the index, a reload in between
/// misses the campaign and, since the version no longer moves, keeps
/// missing it. The bump must also stay out of any transaction or script
/// holding `{c}` keys: the two live in different cluster slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_indexes_the_campaign_before_it_bumps_the_catalog_version() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisSet).await;
    let m = Monitor::start(h.redis().port);
    h.active("c").await;
    let commands = m.stop();

    let indexed = commands.iter().position(|c| {
        c.name() == "SADD"
            && c.arg(1) == "guestlist:campaigns"
            && c.args[2..].iter().any(|a| a == b"c")
    });
    let indexed = indexed.expect("create never sent SADD guestlist:campaigns c");
    let bumps = find(&commands, &["INCR", "INCRBY"], "guestlist:catalog-version");
    for &bump in &bumps {
        assert!(
            bump > indexed,
            "INCR guestlist:catalog-version (command {bump}) ran before SADD guestlist:campaigns c (command {indexed})"
        );
    }
    for group in monitor::groups(&commands) {
        if !group.commands.iter().any(|i| bumps.contains(i)) {
            continue;
        }
        for &i in &group.commands {
            let keys = commands[i].keys().unwrap_or_default();
            assert!(
                !keys.iter().any(|k| k.windows(3).any(|w| w == b"{c}")),
                "the catalog bump shares a {} with {}",
                group.kind,
                commands[i].summary()
            );
        }
    }
}

/// Scenario 6: one campaign's meta hash is malformed (a field missing, or a
/// time that does not parse), by a bug, a partial write or a hand edit. The
/// rest of the catalog must keep working: listing, the login path on a
/// fresh instance, and the visibility of new campaigns. Otherwise one bad
/// key takes down every campaign on every instance that restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_meta_hash_does_not_stop_the_catalog() {
    let _serial = SERIAL.lock().await;
    let a = Harness::new(Backend::RedisSet).await;
    a.active("good").await;
    a.replace("good", &[1]).await;
    let cli = |args: &[&str]| a.redis().cli(args);
    cli(&["SADD", "guestlist:campaigns", "bad"]);
    cli(&["HSET", "guestlist:{bad}:meta", "name", "x"]);
    let now = Utc::now().to_rfc3339();
    let ends = rfc3339_in(1);
    cli(&["SADD", "guestlist:campaigns", "bad-time"]);
    cli(&[
        "HSET",
        "guestlist:{bad-time}:meta",
        "name",
        "y",
        "starts_at",
        "yesterday-ish",
        "ends_at",
        &ends,
        "design",
        "set",
        "audience_size",
        "0",
        "version",
        "0",
        "created_at",
        &now,
        "updated_at",
        &now,
    ]);

    let mut problems = Problems::default();
    let (status, body) = a.get("/v1/campaigns").await;
    let listed: Vec<&str> = body["campaigns"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    problems.check(status == StatusCode::OK && listed.contains(&"good"), || {
        format!("GET /v1/campaigns answered {status}: {body}")
    });
    // May be an error, but must be an answer, and the service goes on.
    let (status, body) = a.get("/v1/campaigns/bad").await;
    problems.check(status.is_success() || body["error"].is_string(), || {
        format!("GET /v1/campaigns/bad answered {status} without an error code: {body}")
    });
    problems.check(a.get("/healthz").await.0 == StatusCode::OK, || {
        "healthz failed after reading a bad campaign".into()
    });

    let b = second_instance(&a, Backend::RedisSet).await;
    let (status, body) = b.get("/v1/campaigns/good/members/1").await;
    problems.check(status == StatusCode::OK && body["member"] == true, || {
        format!("instance B, member check of good/1: {status} {body}")
    });
    let (status, body) = b.get("/v1/users/1/campaigns").await;
    problems.check(
        status == StatusCode::OK && body["campaigns"] == json!(["good"]),
        || format!("instance B, campaigns of user 1: {status} {body}"),
    );

    a.active("fresh").await;
    a.replace("fresh", &[2]).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let seen = loop {
        let (status, body) = b.get("/v1/users/2/campaigns").await;
        if status == StatusCode::OK && body["campaigns"] == json!(["fresh"]) {
            break None;
        }
        if Instant::now() > deadline {
            break Some(format!(
                "instance B did not see campaign fresh within 3 s: {status} {body}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    problems.check(seen.is_none(), || seen.unwrap());
    problems.assert_none();
}

/// Scenario 7: a PATCH of the window moves the expiry of the meta hash and
/// of the live audience. If the audience's EXPIREAT runs after the meta
/// transaction, a failure in between (or a crash) leaves an audience that
/// expires at the old time while the campaign says it runs longer: its
/// members silently vanish mid-campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_patch_moves_the_audience_expiry_in_the_same_transaction_as_the_meta() {
    let _serial = SERIAL.lock().await;
    for backend in [Backend::RedisSet, Backend::RedisBitmap] {
        let h = Harness::new(backend).await;
        h.active("c").await;
        h.replace("c", &[1, 2, 3]).await;
        let live = live_key(backend, "c");
        let meta = "guestlist:{c}:meta";
        let m = Monitor::start(h.redis().port);
        let (status, body) = h
            .patch_json("/v1/campaigns/c", json!({"ends_at": rfc3339_in(30 * 24)}))
            .await;
        let commands = m.stop();
        assert_eq!(status, StatusCode::OK, "{body}");

        let groups = monitor::groups(&commands);
        for i in find(
            &commands,
            &["EXPIREAT", "PEXPIREAT", "EXPIRE", "PEXPIRE"],
            &live,
        ) {
            let with_meta = groups.iter().any(|g| {
                g.commands.contains(&i)
                    && g.commands.iter().any(|&j| {
                        ["HSET", "HMSET", "HSETNX"].contains(&commands[j].name().as_str())
                            && commands[j].arg(1) == meta
                    })
            });
            assert!(
                with_meta,
                "{}: {} {} … ran outside any transaction or script that writes {meta}",
                h.design(),
                commands[i].name(),
                live
            );
        }
        let expiretime =
            |key: &str| -> i64 { h.redis().cli(&["EXPIRETIME", key]).trim().parse().unwrap() };
        let (live_at, meta_at) = (expiretime(&live), expiretime(meta));
        assert_eq!(live_at, meta_at, "{live} and {meta} expire apart");
        assert!(live_at > (Utc::now() + Span::days(36)).timestamp());
    }
}

/// Scenario 8: a batch check reads the audience in several commands of at
/// most 1,000 ids. If a replace lands between them, one answer mixes the
/// old audience and the new one, which no admin ever uploaded. The stress
/// part alternates two disjoint audiences while checking; the MONITOR part
/// checks that the probes of one batch run as one unit.
async fn batch_checks_answer_from_one_version(backend: Backend) {
    let h = Arc::new(Harness::new(backend).await);
    h.active("c").await;
    let evens: Vec<u64> = (0..5_000).step_by(2).collect();
    let odds: Vec<u64> = (1..5_000).step_by(2).collect();
    let users: Vec<u64> = (0..5_000).collect();
    // At least 100 replaces, and more while fewer than 200 checks have
    // overlapped them (replaces can outpace checks), within a time bound.
    let checks = Arc::new(AtomicU64::new(0));
    let writer = {
        let (h, evens, odds, checks) = (h.clone(), evens.clone(), odds.clone(), checks.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut round = 0;
            while round < 100
                || (checks.load(Ordering::Relaxed) < 200
                    && start.elapsed() < Duration::from_secs(6))
            {
                h.replace("c", if round % 2 == 0 { &evens } else { &odds })
                    .await;
                round += 1;
            }
        })
    };
    let (a, b): (BTreeSet<u64>, BTreeSet<u64>) =
        (evens.into_iter().collect(), odds.into_iter().collect());
    let mut mixes = Vec::new();
    while !writer.is_finished() {
        let members = batch_members(&h, "c", &users).await;
        checks.fetch_add(1, Ordering::Relaxed);
        if !(members.is_empty() || members == a || members == b) {
            mixes.push(format!(
                "{} members: {} even, {} odd",
                members.len(),
                members.intersection(&a).count(),
                members.intersection(&b).count()
            ));
        }
    }
    writer.await.expect("the replace loop failed");
    assert!(
        mixes.is_empty(),
        "{}: {} of {} batch checks mixed two audiences, e.g. {:?}",
        h.design(),
        mixes.len(),
        checks.load(Ordering::Relaxed),
        &mixes[..mixes.len().min(5)]
    );

    let live = live_key(backend, "c");
    let m = Monitor::start(h.redis().port);
    batch_members(&h, "c", &users).await;
    let commands = m.stop();
    let probes = find(
        &commands,
        &[
            "SMISMEMBER",
            "SISMEMBER",
            "BITFIELD_RO",
            "GETBIT",
            "BITFIELD",
        ],
        &live,
    );
    assert!(!probes.is_empty(), "no probe of {live} was seen");
    let one_unit = probes.len() == 1
        || monitor::groups(&commands)
            .iter()
            .any(|g| probes.iter().all(|p| g.commands.contains(p)));
    assert!(
        one_unit,
        "{}: the {} probes of one batch check ran outside one MULTI/EXEC or script: {:?}",
        h.design(),
        probes.len(),
        probes
            .iter()
            .map(|&i| commands[i].summary())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_check_of_a_set_audience_answers_from_one_version() {
    let _serial = SERIAL.lock().await;
    batch_checks_answer_from_one_version(Backend::RedisSet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_check_of_a_bitmap_audience_answers_from_one_version() {
    let _serial = SERIAL.lock().await;
    batch_checks_answer_from_one_version(Backend::RedisBitmap).await;
}

/// The `used_memory` figure of `INFO memory`, in bytes.
fn used_memory(h: &Harness) -> u64 {
    let info = h.redis().cli(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .expect("INFO memory has used_memory")
        .trim()
        .parse()
        .unwrap()
}

/// Scenario 12, first half: a bitmap audience of the single id 4,000,000,000
/// makes Redis allocate and zero a 500 MB string in one command, stalling
/// every client, for one member. It must be refused before anything is
/// written, pointing the admin to the `set` design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_id_bitmap_upload_far_out_is_refused_before_it_stalls_redis() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new(Backend::RedisBitmap).await;
    h.active("c").await;
    h.redis()
        .cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    h.redis().cli(&["SLOWLOG", "RESET"]);
    let (status, body) = h
        .upload("c", "replace", "text/plain", lines(&[4_000_000_000]))
        .await;

    let mut problems = Problems::default();
    problems.check(status == StatusCode::BAD_REQUEST, || {
        format!("the upload answered {status}, not 400: {body}")
    });
    problems.check(body["error"] == "bitmap_too_sparse", || {
        format!("error code is {}, not bitmap_too_sparse", body["error"])
    });
    let message = body["message"].as_str().unwrap_or_default();
    let names_set = message
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .any(|w| w == "set");
    problems.check(names_set, || {
        format!("the message does not name the set design: {message:?}")
    });
    let version = h.campaign("c").await["version"].clone();
    problems.check(version == 0, || format!("version moved to {version}"));
    let exists = h.redis().cli(&["EXISTS", "guestlist:{c}:bitmap"]);
    problems.check(exists.trim() == "0", || {
        "guestlist:{c}:bitmap was written".into()
    });
    let memory = used_memory(&h);
    problems.check(memory < 100 << 20, || {
        format!("Redis uses {} MB", memory >> 20)
    });
    let slow = h.redis().cli(&["SLOWLOG", "GET", "10"]);
    problems.check(slow.trim().is_empty(), || {
        format!(
            "commands slower than 10 ms: {}",
            slow.split_whitespace()
                .take(12)
                .collect::<Vec<_>>()
                .join(" ")
        )
    });
    problems.assert_none();
}

/// Scenario 12, second half: the refusal above must not catch audiences
/// that are dense enough but jump once (ids 0..200,000 plus 60,000,000,
/// a 7.5 MB bitmap). They are accepted, and growing the string for the far
/// id never shows up as a slow command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_bitmap_audience_with_one_far_id_is_accepted_without_slow_commands() {
    let _serial = SERIAL.lock().await;
    let h = Harness::with_limit(Backend::RedisBitmap, 8 << 20).await;
    h.active("c").await;
    h.redis()
        .cli(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
    h.redis().cli(&["SLOWLOG", "RESET"]);
    let ids: Vec<u64> = (0..200_000).chain([60_000_000]).collect();
    let (status, body) = h.upload("c", "replace", "text/plain", lines(&ids)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["audience_size"], 200_001);
    let slow = h.redis().cli(&["SLOWLOG", "GET", "10"]);
    assert!(
        slow.trim().is_empty(),
        "commands slower than 10 ms: {}",
        slow.split_whitespace()
            .take(12)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(h.is_member("c", 199_999).await);
    assert!(h.is_member("c", 60_000_000).await);
    assert!(!h.is_member("c", 200_000).await);
}

/// Runs every kind of call the API has against campaign `w`, checking each
/// answers, so the commands behind them can be inspected.
async fn workload(h: &Harness) {
    let ok = |status: StatusCode, body: &Value, what: &str| {
        assert!(status.is_success(), "{what}: {status} {body}");
    };
    h.active("w").await;
    h.replace("w", &[1, 2, 3]).await;
    h.replace("w", &(0..3_000).collect::<Vec<_>>()).await;
    let (status, body) = h
        .upload("w", "add", "text/plain", lines(&[5_000, 5_001]))
        .await;
    ok(status, &body, "small add");
    let (status, body) = h.upload("w", "remove", "text/plain", lines(&[0, 1])).await;
    ok(status, &body, "small remove");
    let big_remove: Vec<u64> = (100..1_200).collect();
    let (status, body) = h
        .upload("w", "remove", "text/plain", lines(&big_remove))
        .await;
    ok(status, &body, "remove of 1,100 ids");
    let (status, body) = h
        .patch_json(
            "/v1/campaigns/w",
            json!({"name": "Renamed", "ends_at": rfc3339_in(48)}),
        )
        .await;
    ok(status, &body, "PATCH of name and window");
    let in_batch: Vec<u64> = (0..1_500).collect();
    batch_members(h, "w", &in_batch).await;
    let (status, body) = h.post_json("/v1/check", json!({"user_ids": [2, 3]})).await;
    ok(status, &body, "batch check of user campaigns");
    assert!(h.is_member("w", 2).await);
    assert_eq!(h.campaigns_of(2).await, ["w"]);
    h.export("w").await;
    let (status, body) = h.delete("/v1/campaigns/w").await;
    ok(status, &body, "delete");
    h.active("w").await;
    h.replace("w", &[9]).await;
    assert!(h.is_member("w", 9).await);
}

/// Acceptance: on Redis Cluster a transaction or script whose keys hash to
/// two slots fails with CROSSSLOT, so every one guestlist sends, for every
/// design and every kind of call, must stay within one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_or_script_spans_two_hash_slots() {
    let _serial = SERIAL.lock().await;
    let mut report = Vec::new();
    for backend in [
        Backend::RedisSet,
        Backend::RedisPerUser,
        Backend::RedisBitmap,
    ] {
        let h = Harness::new(backend).await;
        let m = Monitor::start(h.redis().port);
        workload(&h).await;
        let found = multi_slot_transactions(&m.stop());
        if !found.is_empty() {
            report.push(format!(
                "{}: {} groups span slots, e.g.:\n  {}",
                h.design(),
                found.len(),
                found
                    .iter()
                    .take(4)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
