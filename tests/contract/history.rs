//! The contract's cases for changes before and after they are made: a dry
//! run's preview, the kept versions of an audience, and rollback to one of
//! them (on every backend and ID type, by `suite!`).

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::common::ADMIN;
use super::common::typed::{Ids, Typed};

pub async fn a_dry_run_reports_the_exact_change_and_changes_nothing(h: &Typed) {
    h.active("c").await;
    h.replace("c", &(1..=30).collect::<Vec<u64>>()).await;
    let before = (
        h.campaign("c").await,
        h.export("c").await,
        h.get("/v1/audit?campaign=c").await,
    );
    let dry = |op: &'static str, body: String| async move {
        let (method, path) = match op {
            "replace" => (
                Method::PUT,
                "/v1/campaigns/c/audience?dry_run=true".to_string(),
            ),
            other => (
                Method::POST,
                format!("/v1/campaigns/c/audience/{other}?dry_run=true"),
            ),
        };
        h.send(method, &path, Some(ADMIN), Some("text/plain"), body)
            .await
    };

    // Replace with 28..=60: 30 new IDs (31..=60), 27 gone (1..=27).
    let ids = h.ids;
    let (status, r) = dry("replace", ids.lines(&(28..=60).collect::<Vec<u64>>())).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["version"], before.0["version"]);
    assert_eq!(
        [
            &r["would_add"],
            &r["would_remove"],
            &r["current_size"],
            &r["new_size"]
        ],
        [30, 27, 30, 33]
    );
    assert_eq!(r["would_add_sample"], ids.canonical(31..=50));
    assert_eq!(r["would_remove_sample"], ids.canonical(1..=20));

    let (status, r) = dry("add", ids.lines(&[5, 31, 32, 32])).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        [
            &r["would_add"],
            &r["would_remove"],
            &r["new_size"],
            &r["duplicates"]
        ],
        [2, 0, 32, 1]
    );
    assert_eq!(r["would_add_sample"], ids.canonical([31, 32]));

    let (status, r) = dry("remove", ids.lines(&[5, 6, 99])).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!([&r["would_remove"], &r["new_size"]], [2, 28]);
    assert_eq!(r["would_remove_sample"], ids.canonical([5, 6]));

    // A bad body or a bad flag is refused as it would be without the flag.
    let bad = match ids {
        Ids::String => "no\u{7}pe",
        _ => "nope",
    };
    let (status, r) = dry("add", format!("{}{bad}\n", ids.lines(&[5]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(
        (&r["error"], &r["line"]),
        (&json!("invalid_user_id"), &json!(2))
    );
    for (method, path, code, message) in [
        (
            Method::POST,
            "/v1/campaigns/c/audience/add?dry_run=yes",
            "invalid_dry_run",
            "dry_run must be true or false, not \"yes\"",
        ),
        // A misspelt flag must not publish what was meant as a preview.
        (
            Method::PUT,
            "/v1/campaigns/c/audience?dry-run=true",
            "invalid_query",
            "unknown query parameter \"dry-run\"",
        ),
    ] {
        let (status, r) = h
            .send(
                method,
                path,
                Some(ADMIN),
                Some("text/plain"),
                ids.lines(&[99]),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {r}");
        assert_eq!(r["error"], code, "{r}");
        let said = r["message"].as_str().unwrap_or("");
        assert!(said.starts_with(message), "{path}: {r}");
    }

    let after = (
        h.campaign("c").await,
        h.export("c").await,
        h.get("/v1/audit?campaign=c").await,
    );
    assert_eq!(
        after, before,
        "a dry run changes nothing and audits nothing"
    );
}

/// The kept versions as (version, audience_size, action, restored).
async fn versions(h: &Typed, id: &str) -> Vec<(u64, u64, String, Option<u64>)> {
    let (status, body) = h.get(&format!("/v1/campaigns/{id}/versions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["by"], "admin", "{v}");
            assert!(v["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
            (
                v["version"].as_u64().unwrap(),
                v["audience_size"].as_u64().unwrap(),
                v["action"].as_str().unwrap().to_string(),
                v["restored"].as_u64(),
            )
        })
        .collect()
}

async fn rollback(h: &Typed, id: &str, version: u64) -> (StatusCode, serde_json::Value) {
    h.post_json(
        &format!("/v1/campaigns/{id}/rollback"),
        json!({ "version": version }),
    )
    .await
}

pub async fn rollback_restores_a_kept_version_as_a_new_version(h: &Typed) {
    h.active("c").await;
    let (status, body) = h.get("/v1/campaigns/c/versions").await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"versions": []})));
    h.replace("c", &[1, 2, 3]).await;
    // 1,500 IDs: a rebuild; the add and remove below are in place.
    let big: Vec<u64> = (100..1_600).collect();
    h.replace("c", &big).await;
    let (status, r) = h.upload("c", "add", "text/plain", h.ids.lines(&[7])).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (status, r) = h
        .upload("c", "remove", "text/plain", h.ids.lines(&[100]))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let replaced = "replaced".to_string();
    assert_eq!(
        versions(h, "c").await,
        [
            (4, 1_500, "removed".into(), None),
            (3, 1_501, "added".into(), None),
            (2, 1_500, replaced.clone(), None),
            (1, 3, replaced.clone(), None),
        ]
    );

    let (status, r) = rollback(h, "c", 1).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r, json!({"audience_size": 3, "version": 5, "restored": 1}));
    assert_eq!(h.export("c").await, [1, 2, 3]);
    assert!(h.is_member("c", 2).await && !h.is_member("c", 7).await);
    assert_eq!(h.campaigns_of(1).await, ["c"]);
    assert!(h.campaigns_of(101).await.is_empty());
    let c = h.campaign("c").await;
    assert_eq!((&c["version"], &c["audience_size"]), (&json!(5), &json!(3)));
    assert_eq!(
        versions(h, "c").await[0],
        (5, 3, "rolled_back".into(), Some(1))
    );
    let (_, audit) = h.get("/v1/audit?campaign=c&limit=1").await;
    let event = &audit["events"][0];
    assert_eq!(event["action"], "audience_rolled_back", "{audit}");
    assert_eq!(event["version"], 5);
    assert_eq!(event["actor"], "admin");
    assert_eq!(
        event["summary"],
        "rolled back to version 1: 1,500 IDs -> 3 at version 5"
    );

    // Back again to the version in place: the history's copies are exact.
    let (status, r) = rollback(h, "c", 3).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let mut expected = big.clone();
    expected.insert(0, 7);
    assert_eq!(h.export("c").await, expected);
}

pub async fn the_history_keeps_the_last_five_versions(h: &Typed) {
    h.active("c").await;
    for v in 1..=7u64 {
        h.replace("c", &[v, 100 + v]).await;
    }
    let kept: Vec<u64> = versions(h, "c").await.iter().map(|v| v.0).collect();
    assert_eq!(kept, [7, 6, 5, 4, 3]);
    let before = (h.campaign("c").await, h.get("/v1/audit?campaign=c").await);

    for (version, expected) in [
        (
            2,
            "campaign \"c\" keeps no version 2; the kept versions are 7, 6, 5, 4, 3; nothing was changed",
        ),
        (
            8,
            "campaign \"c\" keeps no version 8; the kept versions are 7, 6, 5, 4, 3; nothing was changed",
        ),
    ] {
        let (status, r) = rollback(h, "c", version).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{r}");
        assert_eq!(r["error"], "version_not_found");
        assert_eq!(r["message"], expected);
    }
    for bad in [
        json!({"version": "3"}),
        json!({"version": 3, "force": true}),
        json!({}),
    ] {
        let (status, r) = h.post_json("/v1/campaigns/c/rollback", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {r}");
        assert_eq!(r["error"], "invalid_json", "{r}");
    }
    let (status, r) = rollback(h, "nope", 1).await;
    assert_eq!(
        (status, &r["error"]),
        (StatusCode::NOT_FOUND, &json!("campaign_not_found"))
    );
    let after = (h.campaign("c").await, h.get("/v1/audit?campaign=c").await);
    assert_eq!(after, before, "a refused rollback changed something");
    assert_eq!(h.export("c").await, [7, 107]);

    let (status, r) = rollback(h, "c", 3).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(h.export("c").await, [3, 103]);
    let kept: Vec<u64> = versions(h, "c").await.iter().map(|v| v.0).collect();
    assert_eq!(kept, [8, 7, 6, 5, 4]);
}

pub async fn a_rollback_never_reaches_a_deleted_incarnation(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1, 2]).await;
    h.replace("c", &[3]).await;
    assert_eq!(h.delete("/v1/campaigns/c").await.0, StatusCode::NO_CONTENT);
    let (status, r) = rollback(h, "c", 1).await;
    assert_eq!(
        (status, &r["error"]),
        (StatusCode::NOT_FOUND, &json!("campaign_not_found"))
    );

    h.active("c").await;
    assert!(versions(h, "c").await.is_empty());
    let (status, r) = rollback(h, "c", 1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{r}");
    assert_eq!(r["error"], "version_not_found");
    h.replace("c", &[9]).await;
    assert_eq!(versions(h, "c").await, [(1, 1, "replaced".into(), None)]);
    let (status, r) = rollback(h, "c", 1).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        h.export("c").await,
        [9],
        "the old incarnation's version 1 came back"
    );
}

pub async fn a_rollback_made_against_an_older_live_version_is_refused(h: &Typed) {
    h.active("c").await;
    h.replace("c", &[1]).await;
    h.replace("c", &[2]).await;
    // The caller saw version 1 live; an upload has moved it on since.
    let before = (h.campaign("c").await, h.get("/v1/audit?campaign=c").await);
    let stale = json!({"version": 1, "expected_version": 1});
    let (status, r) = h.post_json("/v1/campaigns/c/rollback", stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{r}");
    assert_eq!(r["error"], "audience_changed");
    assert_eq!(
        r["message"],
        "campaign \"c\" is at version 2, not 1 as expected; nothing was changed"
    );
    let after = (h.campaign("c").await, h.get("/v1/audit?campaign=c").await);
    assert_eq!(after, before, "a refused rollback changed something");
    let current = json!({"version": 1, "expected_version": 2});
    let (status, r) = h.post_json("/v1/campaigns/c/rollback", current).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(h.export("c").await, [1]);
}
