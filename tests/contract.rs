//! One contract, every store and every ID type: integer campaigns on the
//! embedded store, Redis with the `set`, `per-user` and `bitmap` designs,
//! `set` again over TLS (`rediss://` to a server whose CA the test made), and
//! each design on a 3-master Redis Cluster; string and UUID campaigns on
//! every backend that holds them (embedded, `set`, `per-user`).
//!
//! Each case is written once against the HTTP API over test users numbered
//! `n`, which the [`Typed`] harness spells by the campaign's type (see
//! `common::typed`), and `suite!` instantiates it for each backend and type,
//! so neither can drift apart.

mod common;
#[path = "contract/history.rs"]
mod history;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::typed::{Ids, Typed};
use common::{ADMIN, Backend, Harness};
use history::*;
use serde_json::json;

/// One module of tests: every case on one backend and ID type.
macro_rules! backend {
    ($module:ident, $backend:ident, $ids:ident, [$($case:ident),*]) => {
        mod $module {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let h = super::Typed::new(super::Backend::$backend, super::Ids::$ids).await;
                super::$case(&h).await
            })*
        }
    };
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        backend!(embedded, Embedded, Integer, [$($case),*]);
        backend!(redis_set, RedisSet, Integer, [$($case),*]);
        backend!(redis_per_user, RedisPerUser, Integer, [$($case),*]);
        backend!(redis_bitmap, RedisBitmap, Integer, [$($case),*]);
        backend!(redis_tls, RedisTls, Integer, [$($case),*]);
        backend!(cluster_set, ClusterSet, Integer, [$($case),*]);
        backend!(cluster_per_user, ClusterPerUser, Integer, [$($case),*]);
        backend!(cluster_bitmap, ClusterBitmap, Integer, [$($case),*]);
        backend!(string_embedded, Embedded, String, [$($case),*]);
        backend!(string_redis_set, RedisSet, String, [$($case),*]);
        backend!(string_redis_per_user, RedisPerUser, String, [$($case),*]);
        backend!(uuid_embedded, Embedded, Uuid, [$($case),*]);
        backend!(uuid_redis_set, RedisSet, Uuid, [$($case),*]);
        backend!(uuid_redis_per_user, RedisPerUser, Uuid, [$($case),*]);
    };
}

suite!(
    creating_a_campaign_returns_it_with_its_status,
    campaigns_are_listed_and_fetched_by_id,
    status_follows_the_window_for_every_state,
    a_duplicate_id_is_a_conflict_and_changes_nothing,
    patch_moves_the_window_and_renames,
    an_invalid_patch_changes_nothing,
    delete_removes_the_campaign_and_its_audience,
    replace_counts_duplicates_and_answers_membership,
    replace_swaps_the_whole_audience,
    add_and_remove_report_what_changed,
    large_incremental_changes_are_applied_whole,
    json_bodies_are_accepted,
    an_empty_json_array_clears_the_audience,
    export_streams_the_audience_in_order,
    member_checks_report_whether_the_campaign_is_active,
    member_checks_on_unknown_campaigns_are_404,
    users_see_only_their_active_campaigns_sorted,
    batch_checks_answer_per_user,
    batch_checks_are_bounded,
    versions_increase_on_every_audience_change,
    health_and_readiness_answer,
    reads_need_the_check_token_when_one_is_set,
    ids_beyond_a_design_limit_are_refused_and_change_nothing,
    a_dry_run_reports_the_exact_change_and_changes_nothing,
    rollback_restores_a_kept_version_as_a_new_version,
    the_history_keeps_the_last_five_versions,
    a_rollback_never_reaches_a_deleted_incarnation,
    a_rollback_made_against_an_older_live_version_is_refused,
);

async fn creating_a_campaign_returns_it_with_its_status(h: &Typed) {
    let mut request = json!({
        "id": "spring-sale",
        "name": "  Spring sale ",
        "starts_at": "2020-01-01T02:00:00+02:00",
        "ends_at": "2099-01-01T00:00:00Z",
        "design": h.design(),
    });
    if h.ids != Ids::Integer {
        request["user_id_type"] = json!(h.ids.name());
    }
    let body = h.post_json("/v1/campaigns", request).await;
    assert_eq!(body.0, StatusCode::CREATED, "{}", body.1);
    let c = body.1;
    assert_eq!(c["id"], "spring-sale");
    assert_eq!(c["name"], "Spring sale");
    assert_eq!(c["starts_at"], "2020-01-01T00:00:00Z", "stored in UTC");
    assert_eq!(c["status"], "active");
    assert_eq!(c["design"], h.design());
    assert_eq!(c["user_id_type"], h.ids.name());
    assert_eq!(c["audience_size"], 0);
    assert_eq!(c["version"], 0);
    assert!(c["created_at"].is_string() && c["updated_at"].is_string());
    assert!(c.get("generation").is_none(), "internal field leaked: {c}");
}

async fn campaigns_are_listed_and_fetched_by_id(h: &Typed) {
    h.create("b", -1, 1).await;
    h.create("a", 1, 2).await;
    let (status, body) = h.get("/v1/campaigns").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = body["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(h.campaign("a").await["status"], "scheduled");
    let (status, body) = h.get("/v1/campaigns/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "campaign_not_found");
}

async fn status_follows_the_window_for_every_state(h: &Typed) {
    h.create("past", -3, -1).await;
    h.create("now", -1, 1).await;
    h.create("later", 1, 3).await;
    assert_eq!(h.campaign("past").await["status"], "ended");
    assert_eq!(h.campaign("now").await["status"], "active");
    assert_eq!(h.campaign("later").await["status"], "scheduled");
}

async fn a_duplicate_id_is_a_conflict_and_changes_nothing(h: &Typed) {
    let first = h.create("dup", -1, 1).await;
    let (status, body) = h
        .post_json(
            "/v1/campaigns",
            json!({"id": "dup", "name": "Other", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "campaign_exists");
    assert_eq!(h.campaign("dup").await, first);
}

async fn patch_moves_the_window_and_renames(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    let (status, body) = h
        .patch_json(
            "/v1/campaigns/c",
            json!({"name": "Renamed", "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-02-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Renamed");
    assert_eq!(body["status"], "ended");
    assert_eq!(
        body["audience_size"], 2,
        "a window change keeps the audience"
    );
    assert_eq!(h.campaign("c").await["ends_at"], "2020-02-01T00:00:00Z");
    assert!(
        h.campaigns_of(1).await.is_empty(),
        "ended campaigns do not match"
    );
    assert!(h.is_member("c", 1).await, "membership itself is unchanged");
}

async fn an_invalid_patch_changes_nothing(h: &Typed) {
    let before = h.active("c").await;
    for bad in [
        json!({"ends_at": "2000-01-01T00:00:00Z"}),
        json!({"starts_at": "yesterday"}),
        json!({"name": ""}),
        json!({"design": "per-user"}),
    ] {
        let (status, body) = h.patch_json("/v1/campaigns/c", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
        assert!(body["message"].is_string());
    }
    assert_eq!(h.campaign("c").await, before);
    let (status, _) = h
        .patch_json("/v1/campaigns/nope", json!({"name": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn delete_removes_the_campaign_and_its_audience(h: &Typed) {
    h.active("gone").await;
    h.replace("gone", &[5, 6]).await;
    let (status, _) = h.delete("/v1/campaigns/gone").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/v1/campaigns/gone").await.0, StatusCode::NOT_FOUND);
    let check = format!("/v1/campaigns/gone/members/{}", h.ids.path(5));
    assert_eq!(h.get(&check).await.0, StatusCode::NOT_FOUND);
    assert!(h.campaigns_of(5).await.is_empty());
    assert_eq!(
        h.delete("/v1/campaigns/gone").await.0,
        StatusCode::NOT_FOUND
    );
    // The id is free again, and the new campaign starts empty.
    h.active("gone").await;
    assert!(!h.is_member("gone", 5).await);
    assert_eq!(h.campaign("gone").await["audience_size"], 0);
}

async fn replace_counts_duplicates_and_answers_membership(h: &Typed) {
    h.active("c").await;
    // Repeats are spelled both ways (a UUID in upper and then lower case):
    // one user either way.
    let (id, again) = (|n| h.ids.uploaded(n), |n| h.ids.text(n));
    let body = format!(
        "\u{feff}user_id\r\n{}\r\n{}\r\n{}\r\n\r\n {} \r\n{}\r\n",
        id(10),
        id(20),
        again(20),
        id(30),
        again(10)
    );
    // Integer uploads keep the rule for an undeclared header (one
    // non-numeric first line); other types must declare it.
    let content_type = match h.ids {
        Ids::Integer => "text/csv",
        _ => "text/csv; header=present",
    };
    let (status, r) = h.upload("c", "replace", content_type, body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["received"], 5);
    assert_eq!(r["duplicates"], 2);
    assert_eq!(r["audience_size"], 3);
    assert_eq!(r["version"], 1);
    for (user, want) in [(10, true), (20, true), (30, true), (11, false), (0, false)] {
        assert_eq!(h.is_member("c", user).await, want, "user {user}");
    }
    assert_eq!(h.campaign("c").await["audience_size"], 3);
}

async fn replace_swaps_the_whole_audience(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2, 3]).await;
    h.replace("c", &[3, 4]).await;
    assert!(!h.is_member("c", 1).await);
    assert!(h.is_member("c", 3).await);
    assert!(h.is_member("c", 4).await);
    assert_eq!(h.export("c").await, [3, 4]);
    assert_eq!(h.campaigns_of(1).await, Vec::<String>::new());
    assert_eq!(h.campaigns_of(4).await, ["c"]);
}

async fn add_and_remove_report_what_changed(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    let (status, r) = h
        .upload("c", "add", "text/plain", h.ids.lines(&[2, 3, 4]))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].as_u64(), r["audience_size"].as_u64()),
        (Some(2), Some(4))
    );
    let (status, r) = h
        .upload("c", "remove", "text/plain", h.ids.lines(&[1, 9]))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["removed"].as_u64(), r["audience_size"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(h.export("c").await, [2, 3, 4]);
    assert!(!h.is_member("c", 1).await);
    assert!(h.is_member("c", 4).await);
    assert_eq!(h.campaigns_of(4).await, ["c"]);
    // A no-op change leaves the version alone.
    let version = h.campaign("c").await["version"].clone();
    let (_, r) = h.upload("c", "add", "text/plain", h.ids.lines(&[2])).await;
    assert_eq!(r["added"], 0);
    assert_eq!(r["version"], version);
}

async fn large_incremental_changes_are_applied_whole(h: &Typed) {
    h.active("c").await;
    let first: Vec<u64> = (0..3_000).collect();
    h.replace("c", &first).await;
    let more: Vec<u64> = (2_000..6_000).collect();
    let (status, r) = h.upload("c", "add", "text/plain", h.ids.lines(&more)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].as_u64(), r["audience_size"].as_u64()),
        (Some(3_000), Some(6_000))
    );
    let gone: Vec<u64> = (0..2_500).collect();
    let (status, r) = h
        .upload("c", "remove", "text/plain", h.ids.lines(&gone))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["removed"].as_u64(), r["audience_size"].as_u64()),
        (Some(2_500), Some(3_500))
    );
    assert!(!h.is_member("c", 100).await);
    assert!(h.is_member("c", 2_500).await);
    assert!(h.is_member("c", 5_999).await);
    assert_eq!(h.campaigns_of(5_999).await, ["c"]);
    assert_eq!(h.campaigns_of(100).await, Vec::<String>::new());
    assert_eq!(h.export("c").await, (2_500..6_000).collect::<Vec<u64>>());
}

async fn json_bodies_are_accepted(h: &Typed) {
    h.active("c").await;
    // A bitmap reaching 2^32 would cost 512 MiB for four IDs and is refused
    // as too sparse; 8,000,000 keeps it within the always-accepted 1 MiB.
    let top = if h.design() == "bitmap" {
        8_000_000
    } else {
        u64::MAX
    };
    let (status, r) = h
        .upload(
            "c",
            "replace",
            "application/json; charset=utf-8",
            h.ids.values([7, 8, 8, top]).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["received"].as_u64(), r["duplicates"].as_u64()),
        (Some(4), Some(1))
    );
    assert!(h.is_member("c", top).await);
    assert!(!h.is_member("c", top - 1).await);
}

async fn an_empty_json_array_clears_the_audience(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    let (status, r) = h.upload("c", "replace", "application/json", "[]").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["audience_size"], 0);
    assert!(!h.is_member("c", 1).await);
    assert_eq!(h.export("c").await, Vec::<u64>::new());
}

async fn export_streams_the_audience_in_order(h: &Typed) {
    h.active("c").await;
    let ids: Vec<u64> = (0..50_000u64).map(|i| i * 7_919 % 1_000_003).collect();
    h.replace("c", &ids).await;
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(h.export("c").await, want);
    let (status, body) = h
        .send(
            Method::GET,
            "/v1/campaigns/c/audience",
            None,
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "export needs the admin token: {body}"
    );
}

async fn member_checks_report_whether_the_campaign_is_active(h: &Typed) {
    for (id, start, end) in [("past", -3, -1), ("now", -1, 1), ("later", 1, 3)] {
        h.create(id, start, end).await;
        h.replace(id, &[42]).await;
    }
    for (id, active) in [("past", false), ("now", true), ("later", false)] {
        let path = format!("/v1/campaigns/{id}/members/{}", h.ids.path(42));
        let (status, body) = h.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({
                "campaign": id, "user_id": h.ids.value(42), "member": true, "active": active,
                "source": "store", "stale": false,
            })
        );
    }
    for (user, why) in not_a_user(h.ids) {
        let (status, body) = h.get(&format!("/v1/campaigns/now/members/{user}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{user}: {body}");
        assert_eq!(body["error"], "invalid_user_id");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{user}: {message}");
    }
}

/// Path segments that no user of the type can be, and what the refusal
/// says about each.
fn not_a_user(ids: Ids) -> [(String, &'static str); 2] {
    match ids {
        Ids::Integer => [
            ("abc".into(), "takes integer user ids"),
            ("-1".into(), "unsigned"),
        ],
        Ids::String => [
            ("bell%07".into(), "control character"),
            ("x".repeat(257), "at most 256"),
        ],
        Ids::Uuid => [
            ("abc".into(), "takes uuid user ids"),
            (format!("{}0", ids.text(42)), "is not a UUID"),
        ],
    }
}

async fn member_checks_on_unknown_campaigns_are_404(h: &Typed) {
    let (status, body) = h.get("/v1/campaigns/ghost/members/1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "campaign_not_found");
    let (status, _) = h.get("/v1/campaigns/Bad%20Slug/members/1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn users_see_only_their_active_campaigns_sorted(h: &Typed) {
    for (id, start, end) in [
        ("zeta", -1, 1),
        ("alpha", -1, 1),
        ("ended", -3, -1),
        ("scheduled", 1, 3),
        ("other", -1, 1),
    ] {
        h.create(id, start, end).await;
    }
    for id in ["zeta", "alpha", "ended", "scheduled"] {
        h.replace(id, &[7, 8]).await;
    }
    h.replace("other", &[8]).await;
    assert_eq!(h.campaigns_of(7).await, ["alpha", "zeta"]);
    assert_eq!(h.campaigns_of(8).await, ["alpha", "other", "zeta"]);
    assert_eq!(h.campaigns_of(9).await, Vec::<String>::new());
    // A user no campaign of the type can hold (or a string in none) is in
    // none of them; only a user no ID type can hold is refused.
    let (status, body) = h.get("/v1/users/x/campaigns").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["campaigns"], json!([]));
    let (status, body) = h.get("/v1/users/%07/campaigns").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_user_id");
}

async fn batch_checks_answer_per_user(h: &Typed) {
    h.active("a").await;
    h.active("b").await;
    h.create("ended", -3, -1).await;
    h.replace("a", &[1, 2]).await;
    h.replace("b", &[2]).await;
    h.replace("ended", &[1, 2, 3]).await;
    let (status, body) = h
        .post_json(
            "/v1/check",
            json!({"user_ids": h.ids.values([1, 2, 3]), "campaign": "a"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = |n| h.ids.value(n);
    assert_eq!(
        body,
        json!({"results": [
            {"user_id": user(1), "member": true},
            {"user_id": user(2), "member": true},
            {"user_id": user(3), "member": false},
        ], "source": "store", "stale": false})
    );
    let (status, body) = h
        .post_json("/v1/check", json!({"user_ids": h.ids.values([1, 2, 3])}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Each campaign reads the user as its own type, so the user is named
    // as sent.
    let sent = |n| h.ids.values([n])[0].clone();
    assert_eq!(
        body,
        json!({"results": [
            {"user_id": sent(1), "campaigns": ["a"]},
            {"user_id": sent(2), "campaigns": ["a", "b"]},
            {"user_id": sent(3), "campaigns": []},
        ], "source": "store", "stale": false})
    );
    let many = h.ids.values(0..2_500);
    let (status, body) = h
        .post_json("/v1/check", json!({"user_ids": many, "campaign": "a"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let hits = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["member"] == true)
        .count();
    assert_eq!(hits, 2);
    let (status, body) = h
        .post_json(
            "/v1/check",
            json!({"user_ids": h.ids.values([1]), "campaign": "ghost"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

async fn batch_checks_are_bounded(h: &Typed) {
    let too_many = h.ids.values(0..10_001);
    let (status, body) = h
        .post_json("/v1/check", json!({"user_ids": too_many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "too_many_user_ids");
    let (status, body) = h.post_json("/v1/check", json!({"user_ids": [true]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_json");
}

async fn versions_increase_on_every_audience_change(h: &Typed) {
    h.active("c").await;
    let mut last = 0;
    for (op, user) in [("replace", 1), ("add", 2), ("remove", 1), ("replace", 5)] {
        let (status, r) = h.upload("c", op, "text/plain", h.ids.lines(&[user])).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let v = r["version"].as_u64().unwrap();
        assert!(v > last, "{op}: version {v} after {last}");
        last = v;
    }
    assert_eq!(h.campaign("c").await["version"], last);
}

async fn health_and_readiness_answer(h: &Typed) {
    let (status, body) = h.get("/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = h.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    let (status, body) = h.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .unwrap()
            .contains("guestlist_http_requests_total")
    );
}

async fn reads_need_the_check_token_when_one_is_set(h: &Typed) {
    use guestlist::app::{AppState, Tokens};
    use guestlist::routes::router;
    let app = router(AppState::new(
        h.store.clone(),
        Tokens::single(ADMIN).with_check_token("reader-token"),
        1 << 20,
    ));
    let guarded = Typed {
        h: Harness {
            app,
            store: h.store.clone(),
            backend: h.backend,
            redis: None,
            data_dir: None,
        },
        ids: h.ids,
    };
    let check = format!("/v1/campaigns/c/members/{}", h.ids.path(1));
    guarded.active("c").await;
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        (Some("reader-token"), StatusCode::OK),
        (Some(ADMIN), StatusCode::OK),
    ] {
        let (status, body) = guarded
            .send(Method::GET, &check, token, None, Body::empty())
            .await;
        assert_eq!(status, want, "{token:?}: {body}");
    }
    // The check token is not an admin token.
    let (status, _) = guarded
        .send(
            Method::DELETE,
            "/v1/campaigns/c",
            Some("reader-token"),
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(guarded.campaign("c").await["id"], "c");
}

async fn ids_beyond_a_design_limit_are_refused_and_change_nothing(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    let before = h.campaign("c").await;
    let big = 1u64 << 32;
    for op in ["replace", "add"] {
        let (status, body) = h
            .upload("c", op, "text/plain", h.ids.lines(&[3, big]))
            .await;
        if h.design() == "bitmap" {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{op}: {body}");
            assert_eq!(body["error"], "user_id_out_of_range");
            let message = body["message"].as_str().unwrap();
            assert!(message.contains("4294967295"), "{message}");
            assert_eq!(h.campaign("c").await, before);
            assert_eq!(h.export("c").await, [1, 2]);
        } else {
            assert_eq!(status, StatusCode::OK, "{op}: {body}");
            assert!(h.is_member("c", big).await, "{op}");
        }
    }
    // A check for such a user is simply "not a member", never an error.
    if h.design() == "bitmap" {
        assert!(!h.is_member("c", big).await);
        assert!(!h.is_member("c", u64::MAX).await);
        let (status, body) = h
            .post_json(
                "/v1/check",
                json!({"user_ids": [1, big, 2], "campaign": "c"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let answers: Vec<bool> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["member"].as_bool().unwrap())
            .collect();
        assert_eq!(answers, [true, false, true]);
        assert_eq!(h.campaigns_of(big).await, Vec::<String>::new());
    }
}
