//! Audience snapshots in Redis: held in bounded pieces of one hash, so no
//! audience reaches Redis's 512 MB string limit and no command moves more
//! than a mebibyte; read back exactly; and a snapshot written as one string
//! by an earlier version still reads.

mod common;

use axum::http::StatusCode;
use common::{Backend, Harness};

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
    let h = Harness::with_limit(Backend::RedisSet, 64 << 20).await;
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
    // 200,000 UUIDs: 3.2 MB, four pieces.
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

    // A piece gone (as when the key expires under a reader) is never read
    // as a shorter audience.
    let mut conn = redis::Client::open(h.redis().url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("HDEL")
        .arg(&key)
        .arg("2")
        .query(&mut conn)
        .unwrap();
    let (status, e) = h.get("/v1/campaigns/devices/audience").await;
    assert_ne!(status, StatusCode::OK, "{e}");

    // An earlier version's single-string snapshot still reads: rewrite a
    // fresh one as the string of its pieces.
    let (status, r) = h
        .upload("devices", "replace", "text/plain", body.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let key = snapshot_key(&h, "devices");
    let pieces: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            redis::cmd("HGET")
                .arg(&key)
                .arg(i)
                .query(&mut conn)
                .unwrap()
        })
        .collect();
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(pieces.concat())
        .arg("EX")
        .arg(ttl)
        .query(&mut conn)
        .unwrap();
    assert_eq!(export_lines(&h, "devices").await, expected);
}
