//! The embedded store keeps everything across restarts.

mod common;

use std::sync::Arc;

use common::{Backend, Harness};
use guestlist::store::embedded::EmbeddedStore;

/// Closes `h`'s database (every handle) and opens the same directory
/// again, keeping `keep_versions` audience versions.
async fn reopen(mut h: Harness, keep_versions: usize) -> Harness {
    let dir = h.data_dir.take().unwrap();
    drop(h);
    let store = EmbeddedStore::open_keeping(dir.path(), keep_versions)
        .await
        .unwrap();
    Harness {
        data_dir: Some(dir),
        ..Harness::over(Arc::new(store), Backend::Embedded)
    }
}

/// The kept versions of `id`, newest first.
async fn kept_versions(h: &Harness, id: &str) -> Vec<u64> {
    let (_, versions) = h.get(&format!("/v1/campaigns/{id}/versions")).await;
    versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_and_audiences_survive_a_restart() {
    let h = Harness::new(Backend::Embedded).await;
    h.active("kept").await;
    h.create("later", 1, 2).await;
    h.replace("kept", &[1, 2, 3]).await;
    h.upload("kept", "add", "text/plain", "4\n").await;
    h.upload("kept", "remove", "text/plain", "1\n").await;
    let before = h.campaign("kept").await;
    let (_, list_before) = h.get("/v1/campaigns").await;

    let h = reopen(h, 5).await;
    assert_eq!(h.campaign("kept").await, before);
    assert_eq!(h.get("/v1/campaigns").await.1, list_before);
    assert_eq!(h.export("kept").await, [2, 3, 4]);
    assert!(h.is_member("kept", 4).await);
    assert!(!h.is_member("kept", 1).await);
    assert_eq!(h.campaigns_of(2).await, ["kept"]);

    // The history came back too, and its copies roll back exactly.
    assert_eq!(kept_versions(&h, "kept").await, [3, 2, 1]);
    let (status, r) = h
        .post_json(
            "/v1/campaigns/kept/rollback",
            serde_json::json!({"version": 2}),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{r}");
    assert_eq!(h.export("kept").await, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_the_history_gets_its_live_version_recorded() {
    let mut h = Harness::new(Backend::Embedded).await;
    h.active("old").await;
    h.replace("old", &[5, 6]).await;
    let dir = h.data_dir.take().unwrap();
    drop(h);
    // What a data directory written before audience history holds: no
    // history tables at all.
    let file = dir.path().join(guestlist::store::embedded::DB_FILE);
    let db = redb::Database::open(&file).unwrap();
    let tx = db.begin_write().unwrap();
    let versions = redb::TableDefinition::<(&str, u64), &str>::new("versions");
    let copies = redb::TableDefinition::<(&str, u64), &[u8]>::new("version_audiences");
    assert!(tx.delete_table(versions).unwrap());
    assert!(tx.delete_table(copies).unwrap());
    tx.commit().unwrap();
    drop(db);

    let store = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let h = Harness {
        data_dir: Some(dir),
        ..Harness::over(store, Backend::Embedded)
    };
    let (_, versions) = h.get("/v1/campaigns/old/versions").await;
    assert_eq!(
        versions["versions"][0],
        serde_json::json!({"version": 1, "audience_size": 2, "by": "unknown",
            "action": "unrecorded", "at": versions["versions"][0]["at"]})
    );
    h.replace("old", &[7]).await;
    let (status, r) = h
        .post_json(
            "/v1/campaigns/old/rollback",
            serde_json::json!({"version": 1}),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{r}");
    assert_eq!(h.export("old").await, [5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_a_store_in_use() {
    let h = Harness::new(Backend::Embedded).await;
    let dir = h.data_dir.as_ref().unwrap().path();
    let err = EmbeddedStore::open(dir)
        .await
        .err()
        .expect("the file is locked");
    assert!(
        format!("{err:#}").contains("another guestlist process"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_keep_versions_trims_the_history_at_open() {
    let h = Harness::new(Backend::Embedded).await;
    h.active("c").await;
    for v in 1..=4u64 {
        h.replace("c", &[v]).await;
    }
    let h = reopen(h, 2).await;
    assert_eq!(kept_versions(&h, "c").await, [4, 3]);
    let (status, r) = h
        .post_json(
            "/v1/campaigns/c/rollback",
            serde_json::json!({"version": 2}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &r["error"]),
        (404, &"version_not_found".into()),
        "{r}"
    );
}
