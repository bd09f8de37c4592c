//! Audience snapshots in Redis: one string while small (as every earlier
//! version wrote them), a hash of bounded pieces past
//! `snapshot_string_max_bytes` (256 MiB by default, 1 MiB here), so no
//! audience reaches Redis's 512 MB string limit and no command moves more
//! than a mebibyte; both read back exactly.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{Backend, Harness, RedisServer, test_options};
use guestlist::store::StoreOptions;
use guestlist::store::redis::RedisStore;

/// A harness whose store writes snapshots past 1 MiB as hashes.
async fn harness() -> Harness {
    let server = RedisServer::start();
    let options = StoreOptions {
        snapshot_string_max_bytes: 1 << 20,
        ..test_options()
    };
    let store: Arc<dyn guestlist::store::Store> =
        Arc::new(RedisStore::connect(&server.url(), options).await.unwrap());
    Harness {
        app: common::app_for(store.clone(), 64 << 20),
        store,
        backend: Backend::RedisSet,
        redis: Some(server),
        data_dir: None,
    }
}

/// The live snapshot's key, found through the campaign's metadata.
fn snapshot_key(h: &Harness, id: &str) -> String {
    let meta = format!("guestlist:{{{id}}}:meta");
    let fields = h.redis().cli(&["HMGET", &meta, "incarnation", "snapshot"]);
    let mut lines = fields.lines();
    let (incarnation, snapshot) = (lines.next().unwrap(), lines.next().unwrap());
    format!("guestlist:{{{id}}}:snapshot:{incarnation}:{snapshot}")
}

fn uuids(n: u64) -> String {
    (0..n)
        .map(|i| {
            uuid::Uuid::from_u128(
                u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
            )
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn export_lines(h: &Harness, id: &str) -> Vec<String> {
    let (status, body) = h
        .send(
            axum::http::Method::GET,
            &format!("/v1/campaigns/{id}/audience"),
            Some(common::ADMIN),
            None,
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_str().unwrap().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_snapshot_is_held_in_pieces_of_at_most_a_mebibyte() {
    let h = harness().await;
    let now = chrono::Utc::now();
    let (status, body) = h
        .post_json(
            "/v1/campaigns",
            serde_json::json!({
                "id": "devices",
                "name": "devices",
                "starts_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "ends_at": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "user_id_type": "uuid",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Small: one string, which earlier versions read too.
    let small = uuids(1_000);
    let (status, r) = h
        .upload("devices", "replace", "text/plain", small.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let key = snapshot_key(&h, "devices");
    assert_eq!(h.redis().cli(&["TYPE", &key]).trim(), "string");
    let mut expected: Vec<String> = small.lines().map(str::to_string).collect();
    expected.sort();
    assert_eq!(export_lines(&h, "devices").await, expected);

    // 200,000 UUIDs: 3.2 MB, past the limit: four pieces.
    let body = uuids(200_000);
    let (status, r) = h
        .upload("devices", "replace", "text/plain", body.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let key = snapshot_key(&h, "devices");
    assert_eq!(h.redis().cli(&["TYPE", &key]).trim(), "hash");
    let bytes: usize = h
        .redis()
        .cli(&["HGET", &key, "bytes"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(bytes, 4 + 16 * 200_000);
    assert_eq!(h.redis().cli(&["HGET", &key, "pieces"]).trim(), "4");
    for piece in 0..4 {
        let len: usize = h
            .redis()
            .cli(&["HSTRLEN", &key, &piece.to_string()])
            .trim()
            .parse()
            .unwrap();
        assert!(len > 0 && len <= 1 << 20, "piece {piece}: {len} bytes");
    }
    let mut expected: Vec<String> = body.lines().map(str::to_string).collect();
    expected.sort();
    assert_eq!(export_lines(&h, "devices").await, expected);
    // An in-place change diffs against the hash, and the history keeps it.
    let extra = uuid::Uuid::from_u128(7).to_string();
    let (status, r) = h
        .upload("devices", "add", "text/plain", extra.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["audience_size"], 200_001, "{r}");
    let (status, r) = h
        .post_json(
            "/v1/campaigns/devices/rollback",
            serde_json::json!({"version": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(export_lines(&h, "devices").await, expected);

    // A piece gone (as when the key expires under a reader) is never read
    // as a shorter audience.
    let key = snapshot_key(&h, "devices");
    h.redis().cli(&["HDEL", &key, "2"]);
    let (status, e) = h.get("/v1/campaigns/devices/audience").await;
    assert_ne!(status, StatusCode::OK, "{e}");
}
